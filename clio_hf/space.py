"""Launch the Gradio tree viewer (`spaces_app/app.py`) locally, or deploy it as a Hugging Face Space.

The app lives in `spaces_app/` rather than in the package because it must run on a Space with only its own
`requirements.txt` installed (clio_hf is not on PyPI). An installed (non-editable) clio_hf carries the same files as
package data in `clio_hf/_space_app/`; `_app_dir` takes that copy when it exists and the checkout's `spaces_app/`
otherwise (an editable install, or running from the source tree).

`deploy_space` uploads `app.py`, `requirements.txt`, the Space card and `clio_space.json`, a one-line config naming
the dataset. The app reads `CLIO_DATASET` first and falls back to that file: a file in the repo works with any
Hub-compatible server and survives a Space duplication, where a Space variable needs an extra API call and is not
copied with the files.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .layout import RUN_FILE, SPACE_CONFIG_FILE

logger = logging.getLogger(__name__)

PACKAGED_APP_DIR = Path(__file__).resolve().parent / "_space_app"  # a wheel's copy (package data)
SOURCE_APP_DIR = Path(__file__).resolve().parent.parent / "spaces_app"  # the checkout's copy
APP_DIRS = (PACKAGED_APP_DIR, SOURCE_APP_DIR)
APP_FILES = ("app.py", "requirements.txt", "tree_rows.py", "figures.py", "layout.py")  # the last three: links into clio_hf/
CONFIG_FILE = SPACE_CONFIG_FILE
_MODULE = "clio_hf_space_app"


def _app_dir() -> Path:
    """The folder holding the Space app (`app.py`, `requirements.txt`, `README.md`): packaged copy first."""
    for folder in APP_DIRS:
        if all((folder / name).is_file() for name in (*APP_FILES, "README.md")):
            return folder
    raise FileNotFoundError(
        f"The Space app is in neither {PACKAGED_APP_DIR} (an installed clio_hf) nor {SOURCE_APP_DIR} (a checkout). "
        "Reinstall clio_hf, or install it from a checkout with `pip install -e .`."
    )


def _load_app() -> ModuleType:
    """Import the app's `app.py` by file path (it is not imported as a package module)."""
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    missing = [m for m in ("gradio", "plotly") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"The viewer needs {', '.join(missing)}: pip install 'gradio>=6.31,<7' plotly")
    spec = importlib.util.spec_from_file_location(_MODULE, _app_dir() / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module  # dataclasses look the module up while the file runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_MODULE]
        raise
    return module


def _dataset_ref(path_or_repo: str) -> str:
    path = Path(path_or_repo).expanduser()
    return str(path.resolve()) if path.exists() else path_or_repo


def launch_view(path_or_repo: str, *, port: int | None = None, block: bool = True) -> Any:
    """Serve the viewer for a result folder or Hub dataset repo on http://127.0.0.1:PORT.

    Nodes the privacy gates withhold are shown, marked, since only this machine can reach the viewer.
    `port=None` lets Gradio pick (7860 or the next free one). With `block=False` it returns the running
    `gr.Blocks` at once; call `.close()` on it to stop.
    """
    dataset = _dataset_ref(path_or_repo)
    os.environ["CLIO_DATASET"] = dataset
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    # loopback only: the owner sees what a push leaves out, searches rows by meaning and downloads a node's rows
    demo = _load_app().build_demo(dataset, show_withheld=True, encode=_query_encoder(dataset),
                                  search_cache=_search_cache(dataset), allow_export=True)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True,
                            quiet=True)
    logger.info("Viewer for %s at %s", dataset, url)
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo


def _query_encoder(dataset: str):
    """texts -> vectors with the run's own embedder (clio_hf resolves its packaged models; a Space cannot), loaded
    on the first search so the viewer starts as fast as before; None when the run names no embedder."""
    path = Path(dataset) / RUN_FILE
    spec = json.loads(path.read_text(encoding="utf-8")).get("embedder") if path.exists() else None
    if not spec:
        return None
    loaded: list = []

    def encode(texts):
        if not loaded:
            from .backends import load_embedder

            loaded.append(load_embedder(spec))
        return loaded[0].encode(list(texts))

    return encode


def _search_cache(dataset: str) -> Path:
    """Where the row search index is kept: beside a local result (a hidden folder no loader reads), else under the
    clio_hf cache."""
    from .models import cache_root

    if Path(dataset).is_dir():
        return Path(dataset) / ".clio-search"
    return cache_root() / "search" / dataset.replace("/", "--")


def space_readme(dataset: str) -> str:
    """The Space card: spaces_app/README.md with `datasets: [<dataset>]` added, so the Hub links the two."""
    from huggingface_hub import SpaceCard

    card = SpaceCard((_app_dir() / "README.md").read_text(encoding="utf-8"))
    card.data.datasets = [dataset]
    return str(card)


def deploy_space(space_repo: str, *, dataset: str, token: str | None = None, private: bool = False) -> str:
    """Create (or update) a Gradio Space showing `dataset` (a Hub dataset repo id); returns the Space URL.

    A private dataset also needs an `HF_TOKEN` secret in the Space settings, which this does not set.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    app_dir = _app_dir()
    api = HfApi(token=token)
    url = api.create_repo(space_repo, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    config = json.dumps({"dataset": dataset}, indent=2) + "\n"
    operations = [CommitOperationAdd(name, str(app_dir / name)) for name in APP_FILES]
    operations += [
        CommitOperationAdd("README.md", space_readme(dataset).encode("utf-8")),
        CommitOperationAdd(CONFIG_FILE, config.encode("utf-8")),
    ]
    api.create_commit(url.repo_id, operations=operations, repo_type="space",
                      commit_message=f"Deploy the Clio viewer for {dataset}")
    logger.info("Deployed %s showing %s", url, dataset)
    return str(url)
