"""The shape of the package: old import paths keep working, no import cycles, no private names shared across modules.

See docs/architecture.md for the layers these tests keep in place.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clio_hf"

# Old paths and the names the code, the tests and the scripts import from them ("add, never rename").
OLD_PATHS = {
    "clio_hf.llm": ["LLM", "ChatPrompt", "Message", "LLM_SPEC_FORMS", "load_llm", "TransformersLLM", "compute_dtype",
                    "smollm2_checkpoint"],
    "clio_hf.embed": ["Embedder", "load_embedder", "SentenceTransformerEmbedder", "EMBEDDER_SPEC_FORMS",
                      "MINILM_INSTALL", "embed_facets", "embed_column", "embed_fingerprint", "normalise", "user_words"],
    "clio_hf.backends_openai": ["OpenAILLM", "parse_openai_spec", "OPENAI_INSTALL", "CHARS_PER_TOKEN"],
    "clio_hf.backends_vllm": ["VLLMLLM", "VLLM_INSTALL"],
    "clio_hf.chat_template": ["render", "render_head", "render_base", "token_ids", "count_tokens", "truncate_text",
                              "single_token_options", "cut_at_stop"],
    "clio_hf.backends": ["LLM", "Embedder", "ChatPrompt", "load_llm", "load_embedder"],
}
# Modules kept only so that old imports work; new code (the backends wing above all) imports the new paths.
SHIMS = {"clio_hf.llm", "clio_hf.backends_openai", "clio_hf.backends_vllm", "clio_hf.chat_template"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str) -> list[tuple[str, list[str], int]]:
    """(clio_hf module, names taken from it, line) for every import in a module, at any depth (functions and
    `if TYPE_CHECKING:` blocks included); relative imports resolved; `from . import x` counts as importing
    `clio_hf.x`."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names if alias.name.split(".")[0] == "clio_hf"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if source.split(".")[0] != "clio_hf":
                continue
            names = [alias.name for alias in node.names]
            submodules = [n for n in names if f"{source}.{n}" in MODULES]
            found += [(f"{source}.{n}", [], node.lineno) for n in submodules]
            rest = [n for n in names if n not in submodules]
            if rest or not submodules:
                found.append((source, rest, node.lineno))
    return [(target, names, line) for target, names, line in found if target in MODULES and target != name]


def import_graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in imported_modules(name)} for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


# docs/architecture.md's layers, lowest first. A module imports from its own layer or a lower one; among the stages,
# only from an earlier stage. A new module must be placed here (and in the doc).
LAYERS = [
    ["layout"],
    ["config", "facets", "models", "language", "pii", "sources"],
    ["backends", "backends.protocols", "backends.chat_template", "backends.transformers", "backends.vllm", "backends.openai",
     "backends.sentence_transformers", "llm", "backends_openai", "backends_vllm", "chat_template"],
    ["columns", "prompts", "keyphrases", "checkpoint", "tree_rows", "figures"],
    ["conversations", "lenses", "extract", "embed", "cluster", "hierarchy", "projection", "groups", "trends", "privacy",
     "summary"],  # the stages, in this order
    ["result", "engine", "distributed", "pipeline", "assign", "dry_run", "diff"],
    ["cli", "space"],
]
STAGES = 4


def test_every_import_points_down_the_layers():
    rank = {f"clio_hf.{m}": (layer, position if layer == STAGES else 0)
            for layer, modules in enumerate(LAYERS) for position, m in enumerate(modules)}
    unplaced = sorted(set(MODULES) - set(rank) - {"clio_hf"})
    assert not unplaced, f"modules in no layer of docs/architecture.md (add them to LAYERS and the doc): {unplaced}"
    upward = [f"{name} -> {target}" for name, targets in import_graph().items() if name in rank
              for target in targets if target in rank and rank[target] > rank[name]]
    assert not upward, f"imports that point up the layers: {upward}"


@pytest.mark.parametrize("module", sorted(OLD_PATHS))
def test_old_import_paths_keep_their_names(module):
    imported = importlib.import_module(module)
    missing = [name for name in OLD_PATHS[module] if not hasattr(imported, name)]
    assert not missing, f"{module} lost {missing}"


def test_old_paths_are_the_new_objects():
    import clio_hf
    from clio_hf import backends, backends_openai, backends_vllm, chat_template, embed, llm
    from clio_hf.backends import openai, sentence_transformers, transformers, vllm

    assert llm.load_llm is backends.load_llm and llm.TransformersLLM is transformers.TransformersLLM
    assert embed.load_embedder is backends.load_embedder and embed.Embedder is backends.Embedder
    assert embed.SentenceTransformerEmbedder is sentence_transformers.SentenceTransformerEmbedder
    assert backends_openai.OpenAILLM is openai.OpenAILLM and backends_vllm.VLLMLLM is vllm.VLLMLLM
    assert chat_template.render is backends.chat_template.render
    assert clio_hf.LLM is backends.LLM and clio_hf.load_embedder is backends.load_embedder


# vllm lives in its own virtualenv (.venv-vllm): tests/test_vllm.py runs clio_hf.backends.vllm against it there.
@pytest.mark.parametrize("library", ["transformers", "sentence_transformers", "openai"])
def test_a_backend_module_imports_the_real_library_not_itself(library):
    """`import transformers` inside `clio_hf/backends/transformers.py` is the library: Python 3 imports are absolute."""
    backend = importlib.import_module(f"clio_hf.backends.{library}")
    namespace = {"__name__": backend.__name__, "__package__": backend.__package__}
    exec(f"import {library} as imported", namespace)  # what the backend's own lazy import runs
    assert namespace["imported"].__name__ == library and namespace["imported"] is not backend
    assert "clio_hf" not in Path(namespace["imported"].__file__).parts


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_backends_never_import_the_old_paths():
    graph = import_graph()
    wrong = {name: sorted(graph[name] & SHIMS) for name in MODULES if name.startswith("clio_hf.backends")}
    assert not any(wrong.values()), f"backends import the old-path shims: {wrong}"


def test_no_module_imports_a_private_name_from_another():
    private = [
        f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {n} from {target}"
        for name in MODULES
        for target, names, line in imported_modules(name)
        for n in names
        if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))
    ]
    assert not private, "\n".join(private)


def test_the_protocols_import_nothing_heavy():
    source = (PACKAGE / "backends" / "protocols.py").read_text()
    tree = ast.parse(source)
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in top if isinstance(n, ast.ImportFrom) and not n.level]
    heavy = [m for m in modules if m.split(".")[0] in {"torch", "transformers", "datasets", "numpy", "vllm", "openai",
                                                        "sentence_transformers", "clio_hf"}]
    assert not heavy and not any(isinstance(n, ast.ImportFrom) and n.level for n in top), heavy


# ---- the names a result is written with, shared with the Space ------------------------------------------------------
SHARED_WITH_SPACE = ("layout.py", "tree_rows.py", "figures.py")  # spaces_app/ links to these; deploy-space uploads them


def test_layout_imports_only_the_standard_library():
    """The Space runs `layout.py` with only its own requirements installed, and every clio_hf module may import it."""
    import sys

    tree = ast.parse((PACKAGE / "layout.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not [n for n in imports if isinstance(n, ast.ImportFrom) and n.level], "layout.py imports a clio_hf module"
    modules = [a.name for n in imports if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module for n in imports if isinstance(n, ast.ImportFrom)]
    outside = [m for m in modules if m.split(".")[0] not in sys.stdlib_module_names]
    assert not outside, f"layout.py imports {outside}, not the standard library"


@pytest.mark.parametrize("name", SHARED_WITH_SPACE)
def test_the_space_deploys_the_packages_own_copy(name):
    """What deploy-space uploads from spaces_app/ (and a wheel ships in clio_hf/_space_app/) is the package's file."""
    from clio_hf import space

    root = PACKAGE.parent
    assert (root / "spaces_app" / name).read_bytes() == (PACKAGE / name).read_bytes()
    assert name in space.APP_FILES
    assert f'"{name}"' in (root / "pyproject.toml").read_text().split('"clio_hf._space_app" = [')[-1].split("]")[0]
