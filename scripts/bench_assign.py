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
from clio_hf.facets import REQUEST, from_column

ROOT = Path(__file__).resolve().parents[1]


class _NamingStandIn:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=480)
    parser.add_argument("--hold-out", action="append", help="labels to hold out, one run each (default: every label)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    datasets.disable_progress_bars()
    quality = _load("eval_quality")
    sample = quality.sharegpt_sample(args.rows, seed=0)
    openings = [" ".join(quality.first_user_message(t).split()[:60]) for t in sample["conversations"]]
    rows = datasets.Dataset.from_dict({"text": openings, "label": sample["label"]}).shuffle(seed=0).flatten_indices()
    half = len(rows) // 2
    facet = from_column(REQUEST, "text")
    config = clio_hf.ClioConfig(privacy=clio_hf.PrivacyConfig(min_rows=1, audit=False, detect_pii=False))
    options = {"facets": [facet], "llm": _NamingStandIn(), "text_column": "text", "config": config}
    cache = Path(tempfile.mkdtemp(prefix="clio-assign-"))
    scratch = clio_hf.annotate(rows, embedder="minilm-l6", cache_dir=cache, **options)
    labels = np.array(rows["label"])
    scratch_purity = _purity(np.array(scratch.data["request_cluster"][half:]), labels[half:])
    print(f"{len(rows)} labelled ShareGPT rows, halves of {half} and {len(rows) - half}; from-scratch base purity of the "
          f"second half {scratch_purity:.2f}")
    print(f"{'held out':<22} {'novel: held-out':>16} {'novel: others':>14} {'purity':>7} {'assign s':>9} {'ms/row':>7}")
    for held in args.hold_out or sorted(set(labels)):
        first = rows.select([i for i in range(half) if labels[i] != held])
        tree = clio_hf.annotate(first, embedder="minilm-l6", cache_dir=cache, **options)
        begin = time.perf_counter()
        updated = assign(tree, rows.select(range(half, len(rows))), llm=options["llm"], text_column="text",
                         cache_dir=cache)
        seconds = time.perf_counter() - begin
        clusters = np.array(updated.data["request_cluster"][len(first):])
        second = labels[half:]
        is_held = second == held
        print(f"{held:<22} {np.mean(clusters[is_held] == NOVEL):>16.2f} {np.mean(clusters[~is_held] == NOVEL):>14.2f} "
              f"{_purity(clusters[~is_held], second[~is_held]):>7.2f} {seconds:>9.1f} {1000 * seconds / len(clusters):>7.1f}")
    print("assign s: the whole call (conversations, the given facet, MiniLM embeddings, placement, the tree's counts); "
          "an LLM facet adds its extraction time per row.")


def _purity(clusters: np.ndarray, labels: np.ndarray) -> float:
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
