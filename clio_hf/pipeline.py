"""`annotate`: the whole pipeline, from a dataset id to a `ClioResult`, resumable through the datasets cache."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Literal

import datasets
import numpy as np
from datasets.fingerprint import Hasher

from . import __version__
from . import columns as C
from . import prompts
from .assign import with_centroids
from .backends import LLM, Embedder, load_embedder, load_llm
from .checkpoint import JournaledLLM, materialise, without_journal
from .cluster import cluster_facets, clustering_path, present_mask
from .config import ClioConfig
from .conversations import source_columns, to_conversations
from .distributed import RayEngine
from .embed import embed_facets
from .extract import extract_facets, given_value
from .facets import MAIN_FACETS, Facet, resolve_facets
from .groups import check_group_column, count_groups
from .trends import count_periods, parse_times
from .hierarchy import NAMING_VERSION, build_hierarchy
from .lenses import check_lens_inputs
from .models import DEFAULT_LLM, cache_root
from .pii import PII_VERSION
from .privacy import AUDIT_PROMPT_VERSION, apply_privacy_gates, withheld_counts
from .projection import project_facets
from .prompts import PROMPT_VERSION
from .result import FORMAT_VERSION, ClioResult
from .sources import load_source, resolve_revision, source_license

logger = logging.getLogger(__name__)


def annotate(
    source: str | datasets.Dataset,
    split: str = "train",
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    facets: Sequence[Facet] | str = MAIN_FACETS,
    llm: str | LLM = DEFAULT_LLM,
    embedder: str | Embedder = "minilm-l6",
    config: ClioConfig = ClioConfig(),
    *,
    llm_options: dict | None = None,
    conversation_column: str | None = None,
    text_column: str | None = None,
    columns: Sequence[str] | None = None,
    column_prefix: str = "",
    user_column: str | None = None,
    group_column: str | None = None,
    time_column: str | None = None,
    stream: bool = False,
    revision: str | None = None,
    subset: str | None = None,
    data_files: str | Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    engine: Literal["local", "ray"] | RayEngine = "local",
    ray_address: str | None = None,
    num_workers: int | None = None,
) -> ClioResult:
    """Facets, embeddings, base clusters and a named hierarchy for every row of a dataset.

    Args:
        source: a Hub dataset id, a local dataset path, the built-in example `"sharegpt"`, or a `datasets.Dataset`.
        split: the split to read.
        limit: the first N rows in source order (streamed from the Hub when set).
        sample: or a seeded random sample of N rows (`seed`).
        facets: `clio_hf.Facet`s or built-in names (`"request,task"`).
        llm, embedder: spec strings (see the README) or objects satisfying `clio_hf.LLM` / `clio_hf.Embedder`.
        llm_options: backend options for a spec string (`load_llm`'s keyword arguments, CLI `--llm-opt`), e.g.
            `{"chat_template_kwargs": {"enable_thinking": False}}`; those that change answers join the model's id.
        config: every size, budget, seed and threshold.
        conversation_column, text_column, columns: where the conversation is, when it is not detected.
        column_prefix: prefix for every added column, for inputs that already use clio_hf's names.
        user_column: an input column naming each row's user or account; every node then also needs
            `config.privacy.min_users` distinct users to be published.
        group_column: an input column (`model`, `source`, ...) or a facet column (`language`): every hierarchy node
            gets `group_counts`, its rows per value (see `clio_hf.groups`).
        time_column: an input column of times (ISO 8601 text, dates, epoch seconds or milliseconds): every hierarchy
            node gets `time_counts`, its rows per hour, day, week or month (chosen from the span; `clio_hf.trends`).
            It stays local on a push unless `include_text`, like the user column.
        stream: stream a Hub source instead of downloading it (with `limit`, or with `sample`: a seeded shuffle).
        revision: a Hub source's branch, tag or commit sha (default: main). The run is keyed by the commit sha it
            resolves to now, recorded as `info["source_revision"]`, so a changed Hub dataset is analysed afresh.
        subset, data_files: a subset (configuration) of a Hub dataset or local dataset folder that has several, and
            only some of its files (a glob or a list); see `load_source`'s `name` and `data_files`.
        cache_dir: where finished work is kept so that a rerun resumes (default `$CLIO_HF_CACHE` or
            `~/.cache/clio_hf`).
        engine: `"local"` runs every stage in this process; `"ray"` (or a `clio_hf.distributed.RayEngine`) runs facet
            extraction and embedding on Ray actors, one model each, at `ray_address` (default: a local Ray cluster)
            with `num_workers` actors. Same columns and the same cache either way.

    Returns:
        A `ClioResult`: `.data` (the input rows, row-aligned, plus the added columns) and `.hierarchy`.

    Example:
        >>> result = clio_hf.annotate("sharegpt", limit=100)
        >>> result.hierarchy.filter(lambda n: n["parent_id"] is None)["name"]
    """
    facets = resolve_facets(facets)
    ray_engine = _ray_engine(engine, ray_address, num_workers)
    llm_spec, embedder_spec = llm, embedder
    timings: dict[str, float] = {}
    source_revision = resolve_revision(source, revision) if isinstance(source, str) else None
    run_key = Hasher.hash([_source_identity(source, source_revision), split, limit, sample, seed, stream]
                          + ([subset, data_files] if subset is not None or data_files is not None else []))
    workdir = Path(cache_dir or cache_root()) / "runs" / run_key

    with _timed(timings, "load"):
        raw = materialise(workdir / "source", lambda: load_source(source, split=split, limit=limit, sample=sample, seed=seed,
                                                                   stream=stream, revision=source_revision,
                                                                   name=subset, data_files=data_files))
        C.check_no_collisions(raw.column_names, facets, column_prefix)
        C.require_columns(raw, [c for f in facets for c in (f.source_column, f.embedding_column) if c], "annotate (a facet's given column)")
        for facet in (f for f in facets if f.method == "column"):  # checked here, where a row number is the input's
            for row, value in enumerate(raw[facet.source_column]):
                given_value(facet, value, row)
        if user_column is not None and user_column not in raw.column_names:
            raise ValueError(f"user_column={user_column!r} is not a column of the input. Available columns: {raw.column_names}.")
        text_columns = source_columns(raw, conversation_column, text_column, columns)
        if group_column is not None:
            check_group_column(group_column, [*raw.column_names, *(C.facet_column(f, column_prefix) for f in facets)])
        times = None
        if time_column is not None:  # a bad time stops the run here, before any model, naming its row and value
            C.require_columns(raw, [time_column], "annotate (time_column)")
            times = parse_times(raw[time_column], time_column)
    needs_llm = any(f.method == "llm" for f in facets) or any(f.clustered for f in facets)
    with _timed(timings, "load_models"):
        llm = load_llm(llm, **(llm_options or {})) if needs_llm else None
        embedder = load_embedder(embedder) if any(f.clustered for f in facets) else None

    with _timed(timings, "conversations"):
        conv_key = Hasher.hash([raw._fingerprint, config.conversation, llm.model_id if llm else None, conversation_column, text_column, columns, column_prefix])
        conversations = materialise(
            workdir / f"conversations-{conv_key}",
            lambda: to_conversations(raw, llm, config=config.conversation, conversation_column=conversation_column,
                                     text_column=text_column, columns=columns, column_prefix=column_prefix),
        )
        duplicate_of = np.asarray(conversations[column_prefix + C.DUPLICATE_OF])
        originals = np.flatnonzero(duplicate_of < 0)
        unique = conversations.select(originals, new_fingerprint=Hasher.hash([conversations._fingerprint, "originals"]))
        check_lens_inputs(conversations, facets, columns=columns, column_prefix=column_prefix)

    with _timed(timings, "extract_facets"):
        if ray_engine is not None and llm is not None:
            unique = ray_engine.extract_facets(unique, llm_spec, model_id=llm.model_id, llm_options=llm_options, facets=facets, config=config.facets, column_prefix=column_prefix)
        else:
            unique = extract_facets(unique, llm, facets=facets, config=config.facets, column_prefix=column_prefix)
    with _timed(timings, "embed_facets"):
        if embedder is not None and ray_engine is not None:
            unique = ray_engine.embed_facets(unique, embedder_spec, dimension=int(embedder.encode(["dimension probe"]).shape[1]),
                                             model_id=embedder.model_id, facets=facets, config=config.embed, column_prefix=column_prefix)
        elif embedder is not None:
            unique = embed_facets(unique, embedder, facets=facets, config=config.embed, column_prefix=column_prefix)

    with _timed(timings, "cluster_facets"):
        data = _broadcast_to_duplicates(conversations, unique, duplicate_of, originals)
        data = cluster_facets(data, facets=facets, config=config.cluster, column_prefix=column_prefix)
        clustering = {f.column: clustering_path(int(present_mask(data, C.embedding_column(f, column_prefix)).sum()), config.cluster)
                      for f in facets if f.clustered}

    with _timed(timings, "project_facets"):
        data = _project(data, workdir, conversations, facets, llm, embedder, config, column_prefix)

    with _timed(timings, "build_hierarchy"):
        # Everything the tree depends on is a function of these, so they key its cache.
        tree_config = [config.conversation, config.facets, config.embed, config.cluster, config.hierarchy]
        tree_key = Hasher.hash([conversations._fingerprint, [f.to_dict() for f in facets], llm.model_id if llm else None,
                                embedder.model_id if embedder else None, PROMPT_VERSION, NAMING_VERSION, tree_config,
                                config.privacy.min_rows, column_prefix])
        # Finished naming calls are journaled as they return, so a run killed while naming resumes where it stopped.
        journal = workdir / f"naming-{tree_key}.jsonl"
        hierarchy = materialise(
            workdir / f"hierarchy-{tree_key}",
            lambda: build_hierarchy(data, JournaledLLM(llm, journal) if llm else llm, embedder, facets=facets,
                                    config=config.hierarchy, column_prefix=column_prefix, min_rows=config.privacy.min_rows),
        )
        without_journal(journal)
        hierarchy = with_centroids(hierarchy, data, facets, column_prefix)  # what `assign` places new rows by
        if group_column is not None:
            hierarchy = count_groups(hierarchy, data, group_column=group_column, column_prefix=column_prefix)
        time_period = None
        if time_column is not None:
            hierarchy, time_period = count_periods(hierarchy, data, time_column=time_column, column_prefix=column_prefix,
                                                   times=times)  # the rows are the input's, in its order

    with _timed(timings, "privacy"):
        audit = config.privacy.audit and len(hierarchy) > 0
        usage_before = dict(getattr(llm, "usage", None) or {})
        gates_key = Hasher.hash([tree_key, config.privacy, user_column, llm.model_id if llm and audit else None,
                                 AUDIT_PROMPT_VERSION, PII_VERSION])
        hierarchy = materialise(
            workdir / f"privacy-{gates_key}",
            lambda: apply_privacy_gates(hierarchy, data, llm if audit else None, config=replace(config.privacy, audit=audit),
                                        user_column=user_column, column_prefix=column_prefix),
        )

    empty = [C.is_empty_conversation(c) for batch in unique.select_columns([column_prefix + C.CONVERSATION]).iter(batch_size=4096)
             for c in batch[column_prefix + C.CONVERSATION]]  # null in every facet, counted apart from parse failures
    audit_usage = {k: v - usage_before.get(k, 0) for k, v in (getattr(llm, "usage", None) or {}).items()}
    names = _name_record(hierarchy, [f.column for f in facets if f.clustered])
    info = {
        "format_version": FORMAT_VERSION,
        "clio_hf_version": __version__,
        "llm": llm.model_id if llm else None,
        "embedder": embedder.model_id if embedder else None,
        "facets": [f.to_dict() for f in facets],
        "prompt_version": PROMPT_VERSION,
        "config": config.to_dict(),
        "seed": seed,
        "source": _source_identity(source) if isinstance(source, str) else "datasets.Dataset",
        "source_revision": source_revision,
        "source_license": source_license(source, source_revision) if source_revision else None,
        "source_subset": subset,
        "source_data_files": data_files,
        "input_columns": raw.column_names,
        "split": split,
        "column_prefix": column_prefix,
        "group_column": group_column,
        "time_column": time_column,
        "time_period": time_period,
        "rows": {"input": len(raw), "unique": len(originals), "duplicates": int(len(raw) - len(originals)), "empty": sum(empty)},
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "parse_failures": {f.column: sum(v is None and not e for v, e in zip(unique[C.facet_column(f, column_prefix)], empty))
                           for f in facets},
        "fallback_names": {facet: sources.get("fallback", 0) for facet, sources in names["name_sources"].items()},
        "users_words_fallbacks": {f.column: sum(1 for v in unique[C.facet_column(f, column_prefix)] if isinstance(v, str) and prompts.USERS_WORDS in v)
                                  for f in facets if not f.numeric},
        **names,
        "privacy": {"user_column": user_column, "time_column": time_column, "text_columns": text_columns, "audit_prompt_version": AUDIT_PROMPT_VERSION,
                    "pii_version": PII_VERSION, "withheld": withheld_counts(hierarchy), "audit_usage": audit_usage},
        "clustering": clustering,
        "engine": "local" if ray_engine is None else {"name": "ray", "address": ray_engine.address, "num_workers": ray_engine.num_workers,
                                                       "shards_computed": sum(w["stage"] == "extract_facets" for w in ray_engine.work),
                                                       "workers": len({(w["host"], w["pid"]) for w in ray_engine.work})},
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    logger.info("annotate: done in %.1f s (%s)", sum(timings.values()), ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return ClioResult(data=data, hierarchy=hierarchy, info=info)


def _name_record(hierarchy: datasets.Dataset, facets: list[str]) -> dict:
    """Per clustered facet, where its names came from and how well they fit (the median `name_score`)."""
    nodes = hierarchy.select_columns(["facet", "name_source", "name_score"]).to_list()
    scores = {f: [n["name_score"] for n in nodes if n["facet"] == f and n["name_score"] is not None] for f in facets}
    return {
        "name_sources": {f: dict(sorted(Counter(n["name_source"] for n in nodes if n["facet"] == f).items())) for f in facets},
        "median_name_score": {f: round(float(np.median(scores[f])), 4) if scores[f] else None for f in facets},
    }


def _project(data, workdir: Path, conversations, facets, llm, embedder, config: ClioConfig, prefix: str) -> datasets.Dataset:
    """`project_facets`, kept under the run's folder: UMAP over many rows is worth not recomputing on a rerun."""
    columns = [c for f in facets if f.clustered for c in C.projection_columns(f, prefix)]
    if not columns or config.projection.method == "none":
        return data
    key = Hasher.hash([conversations._fingerprint, [f.to_dict() for f in facets], llm.model_id if llm else None,
                       embedder.model_id if embedder else None, PROMPT_VERSION, config.facets, config.embed,
                       config.projection, prefix])
    coordinates = materialise(
        workdir / f"projection-{key}",
        lambda: project_facets(data, facets=facets, config=config.projection, column_prefix=prefix).select_columns(columns),
    )
    return datasets.concatenate_datasets([data, coordinates], axis=1)


def _ray_engine(engine, address: str | None, num_workers: int | None) -> RayEngine | None:
    if isinstance(engine, RayEngine):
        return engine
    if engine == "ray":
        return RayEngine(address=address, num_workers=num_workers)
    if engine != "local":
        raise ValueError(f"engine={engine!r}: use 'local' or 'ray' (or a clio_hf.distributed.RayEngine).")
    if address or num_workers:
        raise ValueError("ray_address= and num_workers= need engine='ray'.")
    return None


def _broadcast_to_duplicates(conversations: datasets.Dataset, unique: datasets.Dataset, duplicate_of: np.ndarray, originals: np.ndarray) -> datasets.Dataset:
    """Every row gets its original's added values: duplicates are computed once and share them."""
    added = [c for c in unique.column_names if c not in conversations.column_names]
    position = np.full(len(duplicate_of), -1, dtype=np.int64)
    position[originals] = np.arange(len(originals))
    source_rows = np.where(duplicate_of < 0, np.arange(len(duplicate_of)), duplicate_of)
    values = unique.select_columns(added).select(position[source_rows]).flatten_indices()
    return datasets.concatenate_datasets([conversations, values], axis=1)


def _source_identity(source, revision: str | None = None) -> str:
    if isinstance(source, datasets.Dataset):
        return f"dataset:{source._fingerprint}"
    path = Path(str(source))
    if path.exists():
        stat = path.stat()
        return f"path:{path.resolve()}:{stat.st_mtime_ns}"
    return f"id:{source}@{revision}" if revision else f"id:{source}"


@contextmanager
def _timed(timings: dict, stage: str):
    start = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
