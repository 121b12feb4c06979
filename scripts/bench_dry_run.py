"""How close `annotate --dry-run`'s time estimate comes to a real run of the same rows; prints a table.

    python scripts/bench_dry_run.py --limit 24

The dry run calibrates on a few real facet prompts and estimates each LLM stage; then `annotate` runs the same rows
with the same (already loaded) model in a fresh cache, and its stage timings are compared with the estimates. The
estimate assumes every answer uses its whole token budget, so it should sit above the real time, and within 2x.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import clio_hf
from clio_hf.dry_run import estimate_annotation
from clio_hf.llm import load_llm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--source", default="sharegpt")
    parser.add_argument("--llm", default="smollm2-135m")
    parser.add_argument("--facets", default="request,language,task,concerning")
    args = parser.parse_args()

    llm = load_llm(args.llm)
    config = clio_hf.ClioConfig()
    start = time.perf_counter()
    plans, rate, rows, unique = estimate_annotation(args.source, llm=llm, facets=args.facets, config=config, limit=args.limit)
    dry_s = time.perf_counter() - start
    getattr(llm, "_prefixes", {}).clear()  # the real run starts with a cold prefix cache, as it would
    with tempfile.TemporaryDirectory(prefix="clio-bench-dry-run-") as cache:
        result = clio_hf.annotate(args.source, limit=args.limit, facets=args.facets, llm=llm, config=config, cache_dir=cache)
    timings = result.info["timings"]

    print(f"{args.llm}, {rows} rows ({unique} unique), facets {args.facets}; dry run itself {dry_s:.1f}s; measured "
          f"{rate.prefill_tokens_per_s:.0f} prefill tok/s, {rate.generated_tokens_per_s:.1f} generated tok/s")
    print(f"{'stage':<16} {'prompts':>8} {'prefill tok':>12} {'max new tok':>12} {'estimate s':>11} {'real s':>8} {'real/est':>9}")
    total_estimate = total_real = 0.0
    for plan in plans:
        estimate, real = rate.seconds(plan), timings.get(plan.stage, 0.0)
        total_estimate, total_real = total_estimate + estimate, total_real + real
        print(f"{plan.stage:<16} {plan.prompts:>8} {plan.prefill_tokens:>12} {plan.max_new_tokens:>12} {estimate:>11.1f} "
              f"{real:>8.1f} {real / estimate:>9.2f}")
    ratio = total_real / total_estimate
    print(f"{'total':<16} {'':>8} {'':>12} {'':>12} {total_estimate:>11.1f} {total_real:>8.1f} {ratio:>9.2f}")
    print(f"within 2x: {'yes' if 0.5 <= ratio <= 2.0 else 'NO'}")


if __name__ == "__main__":
    main()
