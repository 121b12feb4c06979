"""Benchmark `annotate` on real ShareGPT conversations with the packaged models; prints a table.

    python scripts/bench_pipeline.py --limit 100

Per stage: wall time, rows/s, LLM calls, prompt tokens (as sent), prefill tokens (computed, after prefix reuse),
generated tokens, and peak memory (RSS of this process). Then parse failures, fallback names and the distribution of
each numeric facet. A fresh cache directory is used, so nothing is reused from an earlier run.
"""

from __future__ import annotations

import argparse
import collections
import resource
import tempfile
import time

import clio_hf
from clio_hf.embed import load_embedder
from clio_hf.llm import load_llm


class _Metered:
    """Wraps an LLM and records, per pipeline stage, how much work each call did."""

    def __init__(self, llm):
        self.llm, self.model_id = llm, llm.model_id
        self.stage = "load"
        self.per_stage = collections.defaultdict(collections.Counter)

    def _record(self, before):
        usage = getattr(self.llm, "usage", {})
        self.per_stage[self.stage].update({k: usage.get(k, 0) - before.get(k, 0) for k in usage})

    def generate(self, prompts, **kwargs):
        before = dict(getattr(self.llm, "usage", {}))
        out = self.llm.generate(prompts, **kwargs)
        self._record(before)
        return out

    def choose(self, prompts, options):
        before = dict(getattr(self.llm, "usage", {}))
        out = self.llm.choose(prompts, options)
        self._record(before)
        return out

    def count_tokens(self, text):
        return self.llm.count_tokens(text)

    def truncate_text(self, text, max_tokens):
        return self.llm.truncate_text(text, max_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--source", default="sharegpt")
    parser.add_argument("--llm", default="smollm2-135m")
    parser.add_argument("--max-tokens", type=int, default=clio_hf.ConversationConfig().max_tokens)
    args = parser.parse_args()

    start = time.perf_counter()
    llm = _Metered(load_llm(args.llm))
    embedder = load_embedder("minilm-l6")
    load_seconds = time.perf_counter() - start

    # The pipeline's own stage timer tells which stage is running; the meter follows it through the stage names.
    import clio_hf.pipeline as pipeline

    original_timed = pipeline._timed

    def timed(timings, stage):
        llm.stage = stage
        return original_timed(timings, stage)

    pipeline._timed = timed
    config = clio_hf.ClioConfig(conversation=clio_hf.ConversationConfig(max_tokens=args.max_tokens))
    with tempfile.TemporaryDirectory() as cache:
        result = clio_hf.annotate(args.source, limit=args.limit, llm=llm, embedder=embedder, config=config, cache_dir=cache)
    total = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    rows = len(result.data)
    print(f"\nclio_hf pipeline benchmark: {args.source}, {rows} rows, llm={args.llm}, max_tokens={args.max_tokens}")
    print(f"{'stage':<16}{'wall s':>9}{'rows/s':>9}{'calls':>7}{'prompts':>9}{'prompt tok':>12}{'prefill tok':>13}{'gen tok':>9}")
    timings = {"load_models": load_seconds, **{k: v for k, v in result.info["timings"].items() if k != "load_models"}}
    for stage, seconds in timings.items():
        used = llm.per_stage.get(stage, {})
        print(f"{stage:<16}{seconds:>9.1f}{rows / seconds if seconds else 0:>9.1f}{used.get('calls', 0):>7}{used.get('prompts', 0):>9}"
              f"{used.get('prompt_tokens', 0):>12}{used.get('prefill_tokens', 0):>13}{used.get('generated_tokens', 0):>9}")
    print(f"{'total':<16}{total:>9.1f}{rows / total:>9.2f}")
    print(f"peak RSS: {peak_mb:.0f} MB")
    print(f"parse failures (null values): {result.info['parse_failures']}")
    tree = result.hierarchy
    for facet in sorted(set(tree["facet"])):
        nodes = [n for n in tree if n["facet"] == facet]
        base = [n for n in nodes if n["level"] == 0]
        llm_named = sum(n["name_source"] == "llm" for n in base)
        print(f"{facet}: {len(base)} base clusters, {len(nodes)} nodes, {max(n['level'] for n in nodes)} levels above base; "
              f"base names by LLM {llm_named}/{len(base)} ({100 * llm_named / max(len(base), 1):.0f}%), "
              f"fallback names overall {sum(n['name_source'] == 'fallback' for n in nodes)}")
    for facet in result.info["facets"]:
        if facet["numeric"]:
            column = clio_hf.facets.column_name(facet["name"])
            values = result.data[column]
            counts = collections.Counter(values)
            parsed = sum(v is not None for v in values)
            print(f"{column}: parsed {parsed}/{len(values)} ({100 * parsed / len(values):.0f}%), distribution "
                  + ", ".join(f"{k}: {counts[k]}" for k in sorted(counts, key=lambda k: (k is None, k))))
    print("top of the tree:")
    for facet in sorted(set(tree["facet"])):
        for node in sorted((n for n in tree if n["facet"] == facet and n["parent_id"] is None), key=lambda n: -n["size"])[:8]:
            print(f"  {facet:<8}{node['size']:>5}  [{node['name_source']}] {node['name']}")


if __name__ == "__main__":
    main()
