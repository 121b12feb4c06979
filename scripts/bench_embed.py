"""What sharing the user's words between facets saves: `embed_facets` on Request and Task at once (the user's turns
encoded once per row, `embed.UserVectors`) against each facet alone (encoded once per facet, as before session 12).

    python scripts/bench_embed.py --rows 1000

Real ShareGPT conversations, MiniLM; the facet values are fixed short answers, so the time is mostly the user's words.
"""

from __future__ import annotations

import argparse
import time

import datasets

from clio_hf.backends import load_embedder
from clio_hf.conversations import to_conversations
from clio_hf.embed import embed_facets
from clio_hf.facets import REQUEST, TASK
from clio_hf.sources import load_sharegpt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    rows = to_conversations(load_sharegpt().select(range(args.rows)), None)
    rows = rows.add_column("request", [REQUEST.prefill + " write something useful"] * len(rows))
    rows = rows.add_column("task", [TASK.prefill + " do a task"] * len(rows))
    embedder = load_embedder("minilm-l6")
    timed = {}
    for label, groups in (("shared (Request + Task at once)", [[REQUEST, TASK]]), ("once per facet", [[REQUEST], [TASK]])):
        fresh = datasets.Dataset.from_dict(rows.to_dict())  # in memory: nothing read back from a cache
        begin = time.perf_counter()
        for facets in groups:
            embed_facets(fresh, embedder, facets=facets)
        timed[label] = time.perf_counter() - begin
    print(f"| {args.rows:,} ShareGPT rows, MiniLM | seconds |\n|---|---|")
    for label, seconds in timed.items():
        print(f"| {label} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
