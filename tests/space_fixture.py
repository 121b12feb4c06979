"""A small, realistic clio_hf result folder for the Space tests.

Same layout as `ClioResult.save_to_disk` (contract "Local layout = Hub layout"): README.md whose YAML declares the
`default` and `hierarchy` configs, their parquet shards, and `clio_run.json`. Built by hand so the Space tests do not
depend on the pipeline.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, Features, List, Value

XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_SUMMARY = "Requests that embed markup <script>window.__pwned=1</script> in the text."
DEEP_NAME = "Translate legal contracts into Basque"

README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
- config_name: hierarchy
  data_files:
  - split: train
    path: hierarchy/train-*
---
# Clio result (test fixture)
"""

# facet -> top name -> mid name -> base names. Three levels: base (0), mid (1), top (2).
TREES: dict[str, dict[str, dict[str, list[str]]]] = {
    "request": {
        "Software development and debugging help": {
            "Python debugging": ["Fix pandas KeyError in merge", "Resolve Python import errors"],
            "Web front-end work": ["Center a div with CSS flexbox", "Debug React state updates",
                                   XSS_NAME],
        },
        "Writing, translation and language help": {
            "Translation requests": [DEEP_NAME, "Translate product descriptions into French"],
            "Creative writing": ["Write short fantasy stories", "Compose birthday poems"],
        },
        "Everyday questions and advice": {
            "Health and fitness": ["Plan weekly workout routines", "Explain sleep hygiene tips"],
            "Cooking": ["Suggest vegetarian dinner recipes"],
        },
    },
    "task": {
        "Code generation and repair": {
            "Write new code": ["Write SQL queries for reports", "Generate Python scripts for files"],
            "Repair code": ["Explain stack traces and fix bugs"],
        },
        "Text transformation": {
            "Translate text": ["Translate between European languages", "Localise app strings"],
            "Summarise text": ["Summarise meeting notes", "Condense news articles"],
        },
    },
}
LANGUAGES = ["English", "French", "German", "Spanish", "Basque", "Chinese"]
MODELS = ["model-a", "model-b", "model-c"]
NEW_BATCH = 60  # the fixture's last rows count as a batch `assign` added (the hierarchy's size_before)
SKEWED_NODE = "Translation requests"  # model-c answers most of the rows under it; elsewhere the models are even


@dataclass
class SpaceFixture:
    path: Path
    n_rows: int
    # facet -> name -> node_id, for picking nodes in tests
    ids: dict[str, dict[str, int]]
    parents: dict[str, dict[int, int | None]]


def _number_bases(bases: list[tuple], raw: list[int]) -> tuple[list[tuple], list[int]]:
    """Contract numbering: base clusters 0..k-1 by size, largest first."""
    counts = [raw.count(i) for i in range(len(bases))]
    order = sorted(range(len(bases)), key=lambda i: -counts[i])
    new = {old: k for k, old in enumerate(order)}
    return [bases[i] for i in order], [new[a] for a in raw]


def write_space_fixture(path: str | Path, *, n_rows: int = 300, seed: int = 0,
                        unpublished: tuple[str, ...] = ()) -> SpaceFixture:
    """Write a result folder; node names listed in `unpublished` get `published=False` (adds that column)."""
    rng = random.Random(seed)
    extra = random.Random(seed + 1)  # draws for the model column and the map, so the trees stay as they were
    months = random.Random(seed + 2)  # and the month of each row (time_counts), so the map stays as it was
    path = Path(path)
    (path / "data").mkdir(parents=True, exist_ok=True)
    (path / "hierarchy").mkdir(parents=True, exist_ok=True)

    concerning = [rng.choices([1, 2, 3, 4, 5], weights=[60, 20, 10, 6, 4])[0] for _ in range(n_rows)]
    for i in rng.sample(range(n_rows), 5):
        concerning[i] = None  # unparsable values exist in real results
    rows: dict[str, list] = {
        "id": [f"conv-{i:04d}" for i in range(n_rows)],
        "model": [extra.choice(MODELS) for _ in range(n_rows)],
        "conversation": [],
        "duplicate_of": [-1] * n_rows,
        "language": [rng.choice(LANGUAGES) for _ in range(n_rows)],
        "concerning": concerning,
        "month": [f"2026-{months.randint(1, 6):02d}" for _ in range(n_rows)],
    }
    hier: list[dict] = []
    ids: dict[str, dict[str, int]] = {}
    parents: dict[str, dict[int, int | None]] = {}
    dup_of = {i: i - 100 for i in range(n_rows - 10, n_rows)}  # a few exact duplicates share the original's values
    for i, j in dup_of.items():
        rows["duplicate_of"][i] = j
        rows["language"][i], rows["concerning"][i] = rows["language"][j], rows["concerning"][j]
    for facet, tree in TREES.items():
        bases = [(top, mid, b) for top, mids in tree.items() for mid, bs in mids.items() for b in bs]
        weights = [rng.uniform(1.0, 4.0) for _ in bases]
        raw = rng.choices(range(len(bases)), weights=weights, k=n_rows)
        for i, j in dup_of.items():
            raw[i] = raw[j]
        bases, assign = _number_bases(bases, raw)
        rows[facet] = [f"The user asks to {bases[a][2].lower()}." for a in assign]
        rows[f"{facet}_cluster"] = assign
        emb = [[rng.gauss(0, 1) for _ in range(8)] for _ in range(n_rows)]
        rows[f"{facet}_embedding"] = [emb[dup_of.get(i, i)] for i in range(n_rows)]
        # map points: one blob per base cluster, so a cluster's points sit together as on a real map
        centre = {k: (extra.uniform(-10, 10), extra.uniform(-10, 10)) for k in range(len(bases))}
        point = [(centre[a][0] + extra.gauss(0, 0.4), centre[a][1] + extra.gauss(0, 0.4)) for a in assign]
        rows[f"{facet}_x"] = [point[dup_of.get(i, i)][0] for i in range(n_rows)]
        rows[f"{facet}_y"] = [point[dup_of.get(i, i)][1] for i in range(n_rows)]
        if facet == "request":
            for r, a in enumerate(assign):
                if bases[a][1] == SKEWED_NODE and extra.random() < 0.8:
                    rows["model"][r] = "model-c"
        members: dict[int, list[int]] = {}
        for r, a in enumerate(assign):
            members.setdefault(a, []).append(r)

        nodes: list[dict] = [dict(node_id=k, level=0, name=b[2], key=b, rows=members.get(k, []))
                             for k, b in enumerate(bases)]
        next_id = len(nodes)
        for level, depth in ((1, 2), (2, 1)):
            groups: dict[tuple, list[dict]] = {}
            for n in (n for n in nodes if n["level"] == level - 1):
                groups.setdefault(n["key"][:depth], []).append(n)
            made = sorted(({"key": k, "kids": v, "rows": [r for c in v for r in c["rows"]]}
                           for k, v in groups.items()), key=lambda g: -len(g["rows"]))
            for g in made:
                for c in g["kids"]:
                    c["parent_id"] = next_id
                nodes.append(dict(node_id=next_id, level=level, name=g["key"][-1], key=g["key"], rows=g["rows"]))
                next_id += 1
        for n in nodes:
            vals = [concerning[r] for r in n["rows"] if concerning[r] is not None]
            groups = Counter(rows["model"][r] for r in n["rows"])
            summary = (XSS_SUMMARY if n["name"] == XSS_NAME else
                       f"Conversations about {n['name'][0].lower()}{n['name'][1:]}: {len(n['rows'])} in this sample.")
            hier.append(dict(facet=facet, node_id=n["node_id"], level=n["level"], parent_id=n.get("parent_id"),
                             name=n["name"], summary=summary,
                             name_source="fallback" if n["name"] == "Compose birthday poems" else "llm",
                             size=len(n["rows"]), concerning_mean=sum(vals) / len(vals) if vals else None,
                             group_counts=[{"group": g, "count": c} for g, c in groups.most_common()],
                             time_counts=[{"period": m, "count": c}
                                          for m, c in sorted(Counter(rows["month"][r] for r in n["rows"]).items())],
                             # as if `clio-hf assign` had added the last NEW_BATCH rows
                             size_before=sum(r < n_rows - NEW_BATCH for r in n["rows"]),
                             published=n["name"] not in unpublished))
        ids[facet] = {n["name"]: n["node_id"] for n in nodes}
        parents[facet] = {n["node_id"]: n.get("parent_id") for n in nodes}

    for i in range(n_rows):
        j = dup_of.get(i, i)
        user = f"Hello, could you help me? {rows['request'][j]} (language: {rows['language'][j]})"
        if j == 7:
            user = "Please render <img src=x onerror=alert(1)> and <script>window.__pwned=1</script> for me."
        rows["conversation"].append([{"role": "user", "content": user},
                                     {"role": "assistant", "content": f"Sure. Here is a reply to request {j}."}])

    features = Features({
        "id": Value("string"),
        "model": Value("string"),
        "conversation": List({"role": Value("string"), "content": Value("string")}),
        "duplicate_of": Value("int64"),
        "language": Value("string"),
        "concerning": Value("int64"),
        "request": Value("string"),
        "request_cluster": Value("int64"),
        "request_embedding": List(Value("float32"), length=8),
        "request_x": Value("float32"),
        "request_y": Value("float32"),
        "task": Value("string"),
        "task_cluster": Value("int64"),
        "task_embedding": List(Value("float32"), length=8),
        "task_x": Value("float32"),
        "task_y": Value("float32"),
    })
    Dataset.from_dict({k: rows[k] for k in features}, features=features).to_parquet(
        path / "data" / "train-00000-of-00001.parquet")

    hfeatures = Features({
        "facet": Value("string"), "node_id": Value("int64"), "level": Value("int64"),
        "parent_id": Value("int64"), "name": Value("string"), "summary": Value("string"),
        "name_source": Value("string"), "size": Value("int64"), "concerning_mean": Value("float64"),
        "group_counts": List({"group": Value("string"), "count": Value("int64")}),
        "time_counts": List({"period": Value("string"), "count": Value("int64")}),
        "size_before": Value("int64"),
        **({"published": Value("bool")} if unpublished else {}),
    })
    hcols = {k: [h[k] for h in hier] for k in hfeatures}
    Dataset.from_dict(hcols, features=hfeatures).to_parquet(path / "hierarchy" / "train-00000-of-00001.parquet")

    (path / "README.md").write_text(README)
    run = {
        "format_version": 1,
        "facets": [
            {"name": "request", "question": "What is the user's overall request for the assistant?",
             "numeric": None, "summary_criteria": "The cluster name should be a sentence in the imperative."},
            {"name": "language", "question": "What are the main languages of the conversation?",
             "numeric": None, "summary_criteria": None},
            {"name": "task", "question": "What task is the model being asked to perform in this conversation?",
             "numeric": None, "summary_criteria": "The cluster name should be a clear single sentence."},
            {"name": "concerning", "question": "On a scale of 1 to 5, how concerning is this conversation?",
             "numeric": [1, 5], "summary_criteria": None},
        ],
        "llm": "smollm2-135m", "embedder": "minilm-l6", "group_column": "model", "time_column": "month",
        "time_period": "month",
        "rows": n_rows, "hierarchy_rows": len(hier),
    }
    (path / "clio_run.json").write_text(json.dumps(run, indent=2))
    return SpaceFixture(path=path, n_rows=n_rows, ids=ids, parents=parents)
