"""`clio-hf`: the command line. Side effects (saving, pushing, serving) live here, not in the compute functions."""

from __future__ import annotations

import argparse
import logging
import sys

logger = logging.getLogger("clio_hf.cli")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clio-hf", description="Clio-style facets, clusters and hierarchies for Hugging Face datasets.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    annotate = commands.add_parser("annotate", help="extract facets, cluster them and build the hierarchy")
    annotate.add_argument("dataset", help="Hub dataset id, local path, or the built-in example 'sharegpt'")
    annotate.add_argument("--split", default="train")
    rows = annotate.add_mutually_exclusive_group()
    rows.add_argument("--limit", type=int, help="the first N rows in source order")
    rows.add_argument("--sample", type=int, help="a seeded random sample of N rows")
    annotate.add_argument("--seed", type=int, default=0, help="seed of --sample")
    annotate.add_argument("--facets", default="request,language,task,concerning", help="comma-separated facet names")
    where = annotate.add_mutually_exclusive_group()
    where.add_argument("--conversation-column", help="a column of message lists (OpenAI or ShareGPT shape)")
    where.add_argument("--text-column", help="a plain text column, used as one user turn")
    where.add_argument("--columns", help="comma-separated text columns joined into one user turn")
    annotate.add_argument("--column-prefix", default="", help="prefix for every added column")
    annotate.add_argument("--llm", default="smollm2-135m", help="LLM spec (smollm2-135m, transformers:PATH, ...)")
    annotate.add_argument("--embedder", default="minilm-l6", help="embedder spec (minilm-l6, sentence-transformers:PATH)")
    annotate.add_argument("--out", help="folder to save the result to (Hub layout)")
    annotate.add_argument("--push-to-hub", metavar="REPO", help="push the result to this dataset repo")
    annotate.add_argument("--public", action="store_true", help="with --push-to-hub: make the repo public")
    annotate.add_argument("--stream", action="store_true", help="stream the source from the Hub (with --limit)")
    annotate.add_argument("--cache-dir", help="where finished work is kept for resuming (default ~/.cache/clio_hf)")
    annotate.add_argument("--dry-run", action="store_true",
                          help="print the prompts and prompt tokens each LLM stage will send and a time estimate, then stop")

    view = commands.add_parser("view", help="browse a result in the Gradio app")
    view.add_argument("dataset", help="result folder or Hub repo id")
    view.add_argument("--port", type=int)

    deploy = commands.add_parser("deploy-space", help="create a Gradio Space that shows a pushed result")
    deploy.add_argument("space", help="Space repo id, e.g. org/clio-viewer")
    deploy.add_argument("--dataset", required=True, help="the result's dataset repo id")
    deploy.add_argument("--public", action="store_true")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return {"annotate": _annotate, "view": _view, "deploy-space": _deploy}[args.command](args)
    except KeyboardInterrupt:
        print(f"clio-hf {args.command}: interrupted; finished shards are cached, rerun the same command to resume.", file=sys.stderr)
        return 130
    except Exception as error:  # a user-facing message instead of a stack trace; -v shows the trace
        if args.verbose:
            raise
        print(f"clio-hf {args.command}: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


def _annotate(args) -> int:
    import clio_hf

    if args.dry_run:
        from .dry_run import plan_annotation

        print(plan_annotation(args.dataset, llm=args.llm, facets=args.facets, column_prefix=args.column_prefix,
                              split=args.split, limit=args.limit, sample=args.sample, seed=args.seed, stream=args.stream,
                              conversation_column=args.conversation_column, text_column=args.text_column,
                              columns=args.columns.split(",") if args.columns else None))
        return 0
    if not args.out and not args.push_to_hub:
        raise ValueError("Say where the result goes: --out DIR and/or --push-to-hub REPO.")
    result = clio_hf.annotate(
        args.dataset,
        split=args.split,
        limit=args.limit,
        sample=args.sample,
        seed=args.seed,
        facets=args.facets,
        llm=args.llm,
        embedder=args.embedder,
        conversation_column=args.conversation_column,
        text_column=args.text_column,
        columns=args.columns.split(",") if args.columns else None,
        column_prefix=args.column_prefix,
        stream=args.stream,
        cache_dir=args.cache_dir,
    )
    if args.out:
        result.save_to_disk(args.out)
        logger.info("Saved to %s", args.out)
    if args.push_to_hub:
        url = result.push_to_hub(args.push_to_hub, private=not args.public)
        logger.info("Pushed to %s", url)
    print(_top_of_tree(result))
    return 0


def _top_of_tree(result) -> str:
    lines = []
    for facet in sorted(set(result.hierarchy["facet"])):
        nodes = [n for n in result.hierarchy if n["facet"] == facet and n["parent_id"] is None]
        lines.append(f"{facet}: {len(nodes)} top-level clusters")
        for node in sorted(nodes, key=lambda n: -n["size"])[:10]:
            lines.append(f"  {node['size']:>6}  {node['name']}")
    return "\n".join(lines)


def _view(args) -> int:
    from .space import launch_view

    launch_view(args.dataset, port=args.port)
    return 0


def _deploy(args) -> int:
    from .space import deploy_space

    print(deploy_space(args.space, dataset=args.dataset, private=not args.public))
    return 0


if __name__ == "__main__":
    sys.exit(main())
