"""`clio-hf`: the command line. Side effects (saving, pushing, serving) live here, not in the compute functions."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .config import FacetConfig
from .layout import RUN_FILE
from .models import DEFAULT_LLM

logger = logging.getLogger("clio_hf.cli")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clio-hf", description="Clio-style facets, clusters and hierarchies for Hugging Face datasets.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"clio-hf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    annotate = commands.add_parser("annotate", help="extract facets, cluster them and build the hierarchy")
    annotate.add_argument("dataset", help="Hub dataset id, local path, or the built-in example 'sharegpt'")
    annotate.add_argument("--split", default="train")
    annotate.add_argument("--revision", help="a Hub dataset's branch, tag or commit sha (default: main, resolved to its "
                                             "commit now and recorded in the run record)")
    annotate.add_argument("--subset", help="the subset (configuration) of a dataset that has several")
    annotate.add_argument("--data-files", action="append", metavar="GLOB",
                          help="read only these files of a Hub dataset or local folder (a glob; repeat for several)")
    rows = annotate.add_mutually_exclusive_group()
    rows.add_argument("--limit", type=int, help="the first N rows in source order")
    rows.add_argument("--sample", type=int, help="a seeded random sample of N rows")
    annotate.add_argument("--seed", type=int, default=0, help="seed of --sample")
    annotate.add_argument("--facets", default="request,language,task,concerning",
                          help="comma-separated facet names, lenses included (textbook_quality, learning_value, "
                               "code_quality, instruction_following)")
    annotate.add_argument("--facet-column", action="append", default=[], metavar="FACET=COLUMN",
                          help="take a facet's values from an input column instead of the LLM (e.g. request=my_summary); "
                               "repeat for several")
    annotate.add_argument("--embedding-column", action="append", default=[], metavar="FACET=COLUMN",
                          help="a clustered facet's precomputed vectors (from the --embedder model); repeat for several")
    where = annotate.add_mutually_exclusive_group()
    where.add_argument("--conversation-column", help="a column of message lists (OpenAI or ShareGPT shape)")
    where.add_argument("--text-column", help="a plain text column, used as one user turn")
    where.add_argument("--columns", help="comma-separated text columns joined into one user turn")
    annotate.add_argument("--roles", help="extra message roles and what each becomes, e.g. tool=skip,function=assistant "
                                          "(user, assistant, system or skip)")
    annotate.add_argument("--rows-per-shard", type=int,
                          help="rows per cached facet shard: a killed run keeps every finished shard (default "
                               f"{FacetConfig.rows_per_shard}; smaller resumes sooner, larger has less overhead)")
    annotate.add_argument("--column-prefix", default="", help="prefix for every added column")
    annotate.add_argument("--group-column", help="count every hierarchy node's rows per value of this column "
                                                 "(an input column such as model, or a facet such as language)")
    annotate.add_argument("--time-column", help="count every hierarchy node's rows per hour, day, week or month of this "
                          "column (ISO text, dates or epoch numbers); see `clio-hf trends`")
    annotate.add_argument("--llm", default=DEFAULT_LLM, help=f"LLM spec ({DEFAULT_LLM}, smollm2-135m, transformers:PATH, "
                                                             "a bare org/name (= transformers:org/name), vllm:..., openai:...)")
    annotate.add_argument("--llm-opt", action="append", default=[], metavar="KEY=VALUE",
                          help="a backend option (values read as JSON where they parse, e.g. batch_size=8, "
                               "chat_template_kwargs.enable_thinking=false); repeat for several")
    annotate.add_argument("--config", metavar="FILE.yaml",
                          help="a YAML file of ClioConfig settings by section (conversation, facets, embed, cluster, "
                               "hierarchy, privacy, projection); options given on the command line win")
    annotate.add_argument("--embedder", default="minilm-l6", help="embedder spec (minilm-l6, sentence-transformers:PATH)")
    annotate.add_argument("--out", help="folder to save the result to (Hub layout)")
    annotate.add_argument("--overwrite", action="store_true",
                          help="write --out into a non-empty folder that holds no earlier result (its files are replaced)")
    annotate.add_argument("--push-to-hub", metavar="REPO", help="push the result to this dataset repo")
    annotate.add_argument("--public", action="store_true", help="with --push-to-hub: make the repo public")
    privacy = annotate.add_argument_group("privacy (a push publishes only nodes that pass every gate)")
    privacy.add_argument("--user-column", help="column naming each row's user or account; nodes then need --min-users")
    privacy.add_argument("--min-rows", type=int, help="rows a node needs to be published (default 5)")
    privacy.add_argument("--min-users", type=int, help="distinct users a node needs (default 3)")
    privacy.add_argument("--min-privacy-score", type=int, help="lowest auditor rating published, 1-5 (default 3)")
    privacy.add_argument("--no-audit", action="store_true", default=None, help="skip the LLM privacy auditor")
    privacy.add_argument("--no-pii-check", action="store_true", default=None, help="skip the pattern and name check for personal data")
    privacy.add_argument("--allow-names", help="comma-separated person names the personal-data check lets through (public figures)")
    privacy.add_argument("--include-text", action="store_true", help="with --push-to-hub: also publish the raw text columns")
    privacy.add_argument("--aggregates-only", action="store_true", help="with --push-to-hub: publish the hierarchy only")
    privacy.add_argument("--sensitive-columns", help="comma-separated columns never to publish")
    annotate.add_argument("--stream", action="store_true",
                          help="stream the source from the Hub: with --limit the first N rows, with --sample a seeded "
                               "shuffle of the stream; the whole dataset is never downloaded")
    annotate.add_argument("--cache-dir", help="where finished work is kept for resuming (default ~/.cache/clio_hf)")
    annotate.add_argument("--engine", choices=["local", "ray"], default="local",
                          help="where facet extraction and embedding run: this process, or Ray actors (one model each)")
    annotate.add_argument("--ray-address", help="with --engine ray: an existing cluster (ray://HOST:10001 or auto); default a local one")
    annotate.add_argument("--num-workers", type=int, help="with --engine ray: model actors per stage (default one per GPU, else per CPU)")
    annotate.add_argument("--dry-run", action="store_true",
                          help="print the prompts and prompt tokens each LLM stage will send and a time estimate, then stop")

    push = commands.add_parser("push", help="push a saved result (an --out folder) to a Hub dataset repo")
    push.add_argument("folder", help="a result folder written by annotate --out")
    push.add_argument("repo", help="the dataset repo, e.g. org/clio-run")
    push.add_argument("--public", action="store_true", help="make the repo public when it is created")
    push.add_argument("--include-text", action="store_true", help="also publish the raw text columns")
    push.add_argument("--aggregates-only", action="store_true", help="publish the hierarchy only")
    push.add_argument("--sensitive-columns", help="comma-separated columns never to publish")

    view = commands.add_parser("view", help="browse a result in the Gradio app")
    view.add_argument("dataset", help="result folder or Hub repo id")
    view.add_argument("--port", type=int)

    summary = commands.add_parser("summary", help="lens scores and quality bands, overall and per top-level cluster")
    summary.add_argument("dataset", help="result folder or Hub repo id")
    summary.add_argument("--facet", help="clustered facet whose top-level clusters break the table down (default: the first)")
    summary.add_argument("--csv", default="summary.csv", help="where to write the table as CSV (default summary.csv; '' for none)")

    assign = commands.add_parser("assign", help="place new rows under an existing result's tree (novel rows: cluster -2)")
    assign.add_argument("result", help="a result folder (or Hub repo id) made by annotate")
    assign.add_argument("dataset", help="the new rows: Hub dataset id or local path, with the result's input columns")
    assign.add_argument("--out", required=True, help="folder for the updated result")
    assign.add_argument("--overwrite", action="store_true", help="replace an earlier result in --out")
    assign.add_argument("--split", default="train")
    assign.add_argument("--limit", type=int, help="the first N new rows")
    assign.add_argument("--cache-dir", help="where finished work is kept for resuming (default ~/.cache/clio_hf)")
    assign.add_argument("--rebuild-novel", action="store_true",
                        help="then cluster and name the novel rows as new base nodes under their nearest parents")

    compare = commands.add_parser("compare", help="hierarchy nodes whose group mix differs most from the whole")
    compare.add_argument("dataset", help="result folder or Hub repo id")
    compare.add_argument("--group-column", help="the run's group column (checked against the run record)")
    _node_table_options(compare, min_count=10, why="skip nodes with fewer rows inside or outside")

    diff = commands.add_parser("diff", help="what changed between two results of the same tree (say, before and after assign)")
    diff.add_argument("old", help="the earlier result (folder or Hub repo id)")
    diff.add_argument("new", help="the later result")
    _node_table_options(diff, min_count=5, why="skip nodes with fewer rows in the two samples")

    trends = commands.add_parser("trends", help="nodes whose share grew or shrank most from the first period to the last")
    trends.add_argument("dataset", help="result folder or Hub repo id (annotated with --time-column)")
    _node_table_options(trends, min_count=5, why="skip nodes with fewer rows in the two periods")

    export = commands.add_parser("export", help="write one node's rows (or every row but some nodes') to a file")
    export.add_argument("dataset", help="result folder or Hub repo id")
    export.add_argument("--facet", required=True, help="the clustered facet whose tree holds the nodes")
    export.add_argument("--node", type=int, action="append", required=True, help="a node id; repeat for several")
    export.add_argument("--drop", action="store_true", help="write every row except those under the nodes")
    export.add_argument("--out", required=True, help="a .parquet, .jsonl or .csv file, or a folder (save_to_disk)")

    deploy = commands.add_parser("deploy-space", help="create a Gradio Space that shows a pushed result")
    deploy.add_argument("space", help="Space repo id, e.g. org/clio-viewer")
    deploy.add_argument("--dataset", required=True, help="the result's dataset repo id")
    deploy.add_argument("--public", action="store_true")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        commands = {"annotate": _annotate, "push": _push, "view": _view, "deploy-space": _deploy, "summary": _summary, "compare": _compare,
                    "assign": _assign, "export": _export, "trends": _trends, "diff": _diff}
        return commands[args.command](args)
    except KeyboardInterrupt:
        print(f"clio-hf {args.command}: interrupted; finished shards are cached, rerun the same command to resume.", file=sys.stderr)
        return 130
    except Exception as error:  # a user-facing message instead of a stack trace; -v shows the trace
        if args.verbose:
            raise
        print(f"clio-hf {args.command}: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2


def _node_table_options(command: argparse.ArgumentParser, *, min_count: int, why: str) -> None:
    """The options of a command that tests nodes and prints them as a table (compare, diff, trends)."""
    command.add_argument("--facet", help="only this clustered facet")
    command.add_argument("--min-count", type=int, default=min_count, help=why)
    command.add_argument("--top", type=int, default=15, help="rows to print")
    command.add_argument("--csv", help="also write every node to this CSV file")


def _print_node_table(rows: list[dict], columns: list[str], args) -> None:
    from .summary import format_table

    print(format_table(rows[: args.top], columns))
    if args.csv:
        _write_csv(rows, args.csv)


def _check_out(out: Path, dataset: str, *, overwrite: bool) -> None:
    from .result import check_output_folder

    source = Path(dataset).expanduser()
    if source.exists():
        out_abs, source_abs = out.expanduser().resolve(), source.resolve()
        if out_abs == source_abs or source_abs in out_abs.parents or out_abs in source_abs.parents:
            raise ValueError(f"--out {out} would write into the input {dataset} (or hold it): choose another folder.")
    check_output_folder(out.expanduser(), overwrite=overwrite)
    existing = next(p for p in (out.expanduser().absolute(), *out.expanduser().absolute().parents) if p.exists())
    if not existing.is_dir():
        raise NotADirectoryError(f"--out {out}: {existing} is a file, so no folder can be made there.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {out}: the folder {existing} is not writable by this user.")


def _facets(args) -> list:
    """--facets, with --facet-column and --embedding-column applied (a facet they name is added when missing)."""

    from .facets import column_name, from_column, resolve_facets

    facets = list(resolve_facets(args.facets))
    for option, pairs in (("--facet-column", args.facet_column), ("--embedding-column", args.embedding_column)):
        for pair in pairs:
            name, sep, column = pair.partition("=")
            if not sep or not name.strip() or not column.strip():
                raise ValueError(f"{option} {pair!r}: write FACET=COLUMN, e.g. request=my_summary.")
            key, column = column_name(name), column.strip()
            index = next((i for i, f in enumerate(facets) if f.column == key), None)
            if index is None:
                facets.append(resolve_facets(name)[0])
                index = len(facets) - 1
            facet = facets[index]
            facets[index] = (from_column(facet, column, embedding_column=facet.embedding_column) if option == "--facet-column"
                             else dataclasses.replace(facet, embedding_column=column))
    return facets


def _annotate(args) -> int:
    import clio_hf

    if args.dry_run:
        from .dry_run import plan_annotation

        from .backends import load_llm

        llm = load_llm(args.llm, **_llm_options(args.llm_opt)) if args.llm_opt else args.llm
        print(plan_annotation(args.dataset, llm=llm, facets=_facets(args), config=_config(args), column_prefix=args.column_prefix,
                              split=args.split, limit=args.limit, sample=args.sample, seed=args.seed, stream=args.stream,
                              revision=args.revision, name=args.subset, data_files=args.data_files,
                              conversation_column=args.conversation_column, text_column=args.text_column,
                              columns=args.columns.split(",") if args.columns else None))
        return 0
    if not args.out and not args.push_to_hub:
        raise ValueError("Say where the result goes: --out DIR and/or --push-to-hub REPO.")
    if (args.include_text or args.aggregates_only or args.sensitive_columns) and not args.push_to_hub:
        raise ValueError("--include-text, --aggregates-only and --sensitive-columns apply to --push-to-hub; --out keeps everything.")
    if args.out:  # before any model runs
        _check_out(Path(args.out), args.dataset, overwrite=args.overwrite)
    if args.push_to_hub:
        from .result import check_push_access

        logger.info("Pushing to %s as %s once the work is done", args.push_to_hub, check_push_access(args.push_to_hub))
    config = _config(args)
    result = clio_hf.annotate(
        args.dataset,
        split=args.split,
        limit=args.limit,
        sample=args.sample,
        seed=args.seed,
        facets=_facets(args),
        llm=args.llm,
        llm_options=_llm_options(args.llm_opt),
        embedder=args.embedder,
        config=config,
        user_column=args.user_column,
        conversation_column=args.conversation_column,
        text_column=args.text_column,
        columns=args.columns.split(",") if args.columns else None,
        column_prefix=args.column_prefix,
        group_column=args.group_column,
        time_column=args.time_column,
        stream=args.stream,
        revision=args.revision,
        subset=args.subset,
        data_files=args.data_files,
        cache_dir=args.cache_dir,
        engine=args.engine,
        ray_address=args.ray_address,
        num_workers=args.num_workers,
    )
    if args.out:
        result.save_to_disk(args.out, overwrite=args.overwrite)
        logger.info("Saved to %s", args.out)
    if args.push_to_hub:
        try:
            _push_result(result, args)
        except Exception as error:
            saved = Path(args.out) if args.out else _save_unpushed(result, args.push_to_hub)
            flags = " ".join(f for f, on in (("--public", args.public), ("--include-text", args.include_text),
                                             ("--aggregates-only", args.aggregates_only)) if on)
            flags += f" --sensitive-columns {args.sensitive_columns}" if args.sensitive_columns else ""
            raise RuntimeError(f"{error} The result is saved in {saved}; push it alone with: "
                               f"clio-hf push {saved} {args.push_to_hub}{' ' + flags if flags else ''}") from error
    print(_run_summary(result, out=args.out, pushed=args.push_to_hub))
    return 0


def _assign(args) -> int:
    from .assign import assign
    from .result import ClioResult

    result = ClioResult.load(args.result)
    _check_out(Path(args.out), args.dataset, overwrite=args.overwrite)
    updated = assign(result, args.dataset, split=args.split, limit=args.limit, cache_dir=args.cache_dir,
                     rebuild_novel=args.rebuild_novel)
    updated.save_to_disk(args.out, overwrite=args.overwrite)
    batch = next(b for b in reversed(updated.info["lineage"]) if b["run"] == "assign")
    novel = ", ".join(f"{facet} {count}" for facet, count in batch["novel"].items()) or "none"
    rebuilt = updated.info["lineage"][-1].get("new_nodes") if args.rebuild_novel else None
    new_nodes = f"; new base nodes from them: {', '.join(f'{f} {k}' for f, k in rebuilt.items())}" if rebuilt else ""
    print(f"Assigned {batch['rows']} new rows to the tree of {args.result} (novel: {novel}{new_nodes}); "
          f"{len(updated.data)} rows in all.\nSaved to {args.out}\nNext: clio-hf view {args.out}")
    return 0


def _push(args) -> int:
    from .result import ClioResult, check_push_access

    check_push_access(args.repo)
    _push_result(ClioResult.load(args.folder), args, repo=args.repo)
    return 0


def _push_result(result, args, *, repo: str | None = None) -> None:
    from huggingface_hub import constants

    repo = repo or args.push_to_hub
    try:
        url = result.push_to_hub(repo, private=not args.public, include_text=args.include_text,
                                 aggregates_only=args.aggregates_only,
                                 sensitive_columns=args.sensitive_columns.split(",") if args.sensitive_columns else ())
    except Exception as error:
        raise RuntimeError(f"Pushing to {repo!r} on {constants.ENDPOINT} failed ({type(error).__name__}: {error}).") from error
    logger.info("Pushed to %s", url)


def _save_unpushed(result, repo: str) -> Path:
    from .models import cache_root

    folder = cache_root() / "unpushed" / repo.replace("/", "--")
    result.save_to_disk(folder, overwrite=True)
    return folder


def _config(args):
    """The run's `ClioConfig`: the `--config` file (or the defaults), then every option given on the command line."""
    from .config import ClioConfig

    base = ClioConfig()
    if args.config:
        import yaml

        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"--config {args.config}: no such file.")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"--config {args.config} is not valid YAML: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"--config {args.config}: expected sections (conversation:, facets:, privacy:, ...); got {data!r}.")
        try:
            base = ClioConfig.from_dict(data)
        except (TypeError, ValueError) as error:
            raise ValueError(f"--config {args.config}: {error}") from error
    given = {
        "conversation": {"roles": _roles(args.roles)} if args.roles else {},
        "facets": {"rows_per_shard": args.rows_per_shard} if args.rows_per_shard is not None else {},
        "privacy": {k: v for k, v in {
            "min_rows": args.min_rows, "min_users": args.min_users, "min_privacy_score": args.min_privacy_score,
            "audit": False if args.no_audit else None, "detect_pii": False if args.no_pii_check else None,
            "allowed_names": tuple(n.strip() for n in args.allow_names.split(",") if n.strip()) if args.allow_names else None,
        }.items() if v is not None},
    }
    return dataclasses.replace(base, **{section: dataclasses.replace(getattr(base, section), **values)
                                        for section, values in given.items() if values})


def _llm_options(pairs: list[str]) -> dict:
    """`--llm-opt KEY=VALUE` pairs as backend options: values parsed as JSON where they parse (numbers, true, false,
    objects), else kept as text; a dotted key sets a nested option (`chat_template_kwargs.enable_thinking=false`)."""
    import json

    options: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--llm-opt {pair!r}: write KEY=VALUE, e.g. batch_size=8.")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        *parents, leaf = key.strip().split(".")
        target = options
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise ValueError(f"--llm-opt {pair!r}: {parent!r} is already set to a value, not options.")
        target[leaf] = value
    return options


def _roles(text: str | None) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, sep, kind = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--roles {text!r}: write NAME=KIND pairs separated by commas, e.g. tool=skip,function=assistant.")
        pairs.append((name, kind))
    return tuple(pairs)


def _run_summary(result, *, out: str | None, pushed: str | None) -> str:
    """What `annotate` prints last: where the result is, what it holds, what went wrong, and the next command."""
    info = result.info
    rows, seconds = info.get("rows") or {}, sum((info.get("timings") or {}).values())
    lines = [f"Done in {seconds / 60:.1f} min: {rows.get('input', len(result.data))} rows ({rows.get('unique', '?')} unique, "
             f"{rows.get('empty', 0)} empty conversations)."]
    lines += [f"Saved to {out}"] if out else []
    lines += [f"Pushed to {pushed} (only published nodes; see {RUN_FILE})"] if pushed else []
    failures = {k: v for k, v in (info.get("parse_failures") or {}).items() if v}
    lines.append("Parse failures (null values): " + (", ".join(f"{k} {v}" for k, v in failures.items()) or "none"))
    tree, withheld = result.hierarchy, (info.get("privacy") or {}).get("withheld") or {}
    for facet in sorted(set(tree["facet"])):
        nodes = [n for n in tree if n["facet"] == facet]
        top = [n for n in nodes if n["parent_id"] is None]
        fallback = (info.get("fallback_names") or {}).get(facet, 0)
        lines.append(f"{facet}: {len(top)} top-level clusters, {len(nodes)} nodes, {fallback} fallback names, "
                     f"{(withheld.get(facet) or {}).get('total', 0)} withheld from a push")
        for node in sorted(top, key=lambda n: -n["size"])[:10]:
            lines.append(f"  {node['size']:>6}  {node['name']}")
    where = out or pushed
    if where:
        lines.append(f"Next: clio-hf view {where}   (or: clio-hf summary {where})")
    return "\n".join(lines)


def _summary(args) -> int:
    from .result import ClioResult
    from .summary import facets_from_info, format_table, summarize

    result = ClioResult.load(args.dataset)
    rows = summarize(result.data, result.hierarchy, facets=facets_from_info(result.info), cluster_facet=args.facet,
                     column_prefix=result.info.get("column_prefix") or "")
    print(format_table(rows, ["cluster", "facet", "rows", "mean", "Poor", "Low", "Medium", "Good"]))
    if args.csv:
        _write_csv(rows, args.csv)
    return 0


def _compare(args) -> int:
    from .groups import compare_groups
    from .result import ClioResult

    result = ClioResult.load(args.dataset)
    recorded = result.info.get("group_column")
    if args.group_column and recorded and args.group_column != recorded:
        raise ValueError(f"{args.dataset} counts groups of {recorded!r}, not {args.group_column!r}; rerun annotate "
                         f"with --group-column {args.group_column}.")
    rows = compare_groups(result.hierarchy, facets=[args.facet] if args.facet else None, min_count=args.min_count)
    print(f"{len(rows)} nodes tested (>= {args.min_count} rows inside and outside); group column "
          f"{recorded or args.group_column!r}; most significant first")
    _print_node_table(rows, ["facet", "node_id", "level", "name", "size", "group", "share_in_node",
                      "share_overall", "log_odds", "test", "chi2", "dof", "p_value", "q_value", "cramers_v"], args)
    return 0


def _diff(args) -> int:
    from .diff import diff_results
    from .result import ClioResult

    rows = diff_results(ClioResult.load(args.old), ClioResult.load(args.new), facets=[args.facet] if args.facet else None,
                        min_count=args.min_count)
    status = {s: sum(r["status"] == s for r in rows) for s in ("kept", "new", "vanished")}
    tested = [r for r in rows if r["p_value"] is not None]
    how = tested[0]["compared"] if tested else "nothing"
    print(f"{status['kept']} nodes in both, {status['new']} new, {status['vanished']} vanished; {len(tested)} tested "
          f"(the old rows against the new result's {how}); most significant first")
    _print_node_table(rows, ["facet", "node_id", "level", "name", "status", "size_before", "size_after",
                      "share_before", "share_after", "change", "test", "p_value", "q_value"], args)
    return 0


def _trends(args) -> int:
    from .result import ClioResult
    from .trends import trends

    result = ClioResult.load(args.dataset)
    rows = trends(result.hierarchy, facets=[args.facet] if args.facet else None, min_count=args.min_count)
    first, last = (rows[0]["first"], rows[0]["last"]) if rows else ("?", "?")
    print(f"{len(rows)} nodes tested (>= {args.min_count} rows in the two periods); time column "
          f"{result.info.get('time_column')!r} by {result.info.get('time_period')}: {first} against {last}; most significant first")
    _print_node_table(rows, ["facet", "node_id", "level", "name", "count_first", "count_last", "share_first",
                      "share_last", "change", "test", "p_value", "q_value"], args)
    return 0


def _export(args) -> int:
    from .result import ClioResult

    result = ClioResult.load(args.dataset)
    rows = (result.drop_nodes if args.drop else result.select_nodes)(args.facet, args.node)
    out = Path(args.out)
    writers = {".parquet": rows.to_parquet, ".jsonl": lambda p: rows.to_json(p, lines=True), ".csv": rows.to_csv}
    if out.suffix in writers:
        writers[out.suffix](str(out))
    else:
        rows.save_to_disk(str(out))
    what = "without" if args.drop else "under"
    print(f"{len(rows):,} rows {what} {args.facet} node(s) {', '.join(map(str, args.node))} -> {out}")
    return 0


def _write_csv(rows: list[dict], path: str) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["empty"])
        writer.writeheader()
        writer.writerows(rows)
    logger.info("Wrote %d rows to %s", len(rows), path)


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
