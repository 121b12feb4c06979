"""Throughput of the LLM backends on the facet stage, for N real ShareGPT conversations; prints a table.

    python scripts/bench_llm.py --rows 24 --llm smollm2-135m
    /work/vllm-venv/bin/python scripts/bench_llm.py --rows 24 --llm vllm:smollm2-135m --engine enforce_eager=True
    python scripts/bench_llm.py --rows 24 --llm openai:clio@http://127.0.0.1:8000/v1 --engine tokenizer=PATH

Each backend runs `extract_facets` (Request, Task, Concerning; greedy, no re-samples, so parse failures are first
answers) on the same conversations, once with prefix reuse on and once off (backends with a switch). Columns:
conversations/s, prompt tokens/s (as sent), prefill tokens (computed after reuse), generated tokens/s, parse-failure
rate. Nothing is cached between runs (the rows are an in-memory dataset).
"""

from __future__ import annotations

import argparse
import ast
import time


def _engine_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return options


def _run(llm, conversations, facets, config) -> dict:
    from clio_hf.extract import extract_facets

    before = dict(getattr(llm, "usage", {}))
    start = time.perf_counter()
    out = extract_facets(conversations, llm, facets=facets, config=config)
    wall = time.perf_counter() - start
    spent = {k: v - before.get(k, 0) for k, v in getattr(llm, "usage", {}).items()}
    values = [v for f in facets for v in out[f.column]]
    return {"wall": wall, "spent": spent, "failures": sum(v is None for v in values), "values": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--llm", action="append", help="backend spec; repeat for several (default smollm2-135m)")
    parser.add_argument("--engine", action="append", default=[], help="KEY=VALUE option for the backend constructor")
    parser.add_argument("--max-tokens", type=int, default=256, help="conversation token budget")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--reuse", choices=["both", "on", "off"], default="both")
    args = parser.parse_args()

    import clio_hf
    from clio_hf.conversations import to_conversations
    from clio_hf.facets import CONCERNING, REQUEST, TASK
    from clio_hf.llm import load_llm
    from clio_hf.sources import load_source

    facets = [REQUEST, TASK, CONCERNING]
    config = clio_hf.FacetConfig(max_new_tokens=args.max_new_tokens, max_retries=0, batch_size=args.rows * 4,
                                 rows_per_shard=args.rows)
    raw = load_source("sharegpt", limit=args.rows)
    rows = []
    for spec in args.llm or ["smollm2-135m"]:
        modes = {"both": [True, False], "on": [True], "off": [False]}[args.reuse]
        llm = None
        for reuse in modes:
            options = _engine_options(args.engine)
            if spec.startswith("openai:"):
                label = "server"
            else:
                options["prefix_reuse"] = reuse
                label = "on" if reuse else "off"
            if llm is None or not spec.startswith(("smollm2", "transformers:")):
                if llm is not None and hasattr(llm, "close"):
                    llm.close()
                load_start = time.perf_counter()
                llm = load_llm(spec, **options)
                load_s = time.perf_counter() - load_start
            else:
                llm.prefix_reuse = reuse
                load_s = 0.0
            conversations = to_conversations(raw, llm, config=clio_hf.ConversationConfig(max_tokens=args.max_tokens))
            conversations = conversations.select_columns(["conversation", "duplicate_of"])
            result = _run(llm, conversations, facets, config)
            spent, wall = result["spent"], result["wall"]
            rows.append((spec, label, args.rows, load_s, wall, args.rows / wall, spent.get("prompt_tokens", 0) / wall,
                         spent.get("prefill_tokens", 0), spent.get("generated_tokens", 0) / wall,
                         result["failures"] / result["values"]))
            if spec.startswith("openai:"):
                break
    print(f"\nfacet stage: {', '.join(f.name for f in facets)}; {args.rows} ShareGPT conversations of at most "
          f"{args.max_tokens} tokens; {args.max_new_tokens} new tokens; greedy, no re-samples")
    header = ("backend", "reuse", "convs", "load s", "wall s", "conv/s", "prompt tok/s", "prefill tok", "gen tok/s", "parse fail")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for spec, label, n, load_s, wall, cps, pts, prefill, gts, fail in rows:
        print(f"| {spec} | {label} | {n} | {load_s:.1f} | {wall:.1f} | {cps:.3f} | {pts:.0f} | {prefill} | {gts:.1f} | {fail:.1%} |")


if __name__ == "__main__":
    main()
