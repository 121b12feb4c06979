"""`annotate`: the whole pipeline, from a dataset id to a `ClioResult`, resumable through the datasets cache."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Literal

import datasets
from datasets.fingerprint import Hasher

from . import columns as C
from .assign import with_centroids
from .backends import LLM, Embedder, load_embedder, load_llm
from .checkpoint import JournaledLLM, materialise, without_journal
from .cluster import cluster_facets, clustering_path, present_mask
from .config import ClioConfig
from .conversations import broadcast_to_duplicates, source_columns, to_conversations, unique_rows
from .distributed import RayEngine
from .engine import Engine, LocalEngine
from .extract import given_value
from .facets import MAIN_FACETS, Facet, resolve_facets
from .groups import check_group_column, count_groups
from .trends import count_periods, parse_times
from .hierarchy import NAMING_VERSION, build_hierarchy
from .lenses import check_lens_inputs
from .models import DEFAULT_LLM, cache_root
from .pii import PII_VERSION
from .privacy import AUDIT_PROMPT_VERSION, apply_privacy_gates
from .projection import project_facets
from .prompts import PROMPT_VERSION
from .result import ClioResult, run_info
from .sources import load_source, resolve_revision, source_identity

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
    engine: Literal["local", "ray"] | Engine = "local",
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
            with `num_workers` actors. Same columns and the same cache either way. Any object with the methods of
            `clio_hf.engine.Engine` may run them instead.

    Returns:
        A `ClioResult`: `.data` (the input rows, row-aligned, plus the added columns) and `.hierarchy`.

    Example:
        >>> result = clio_hf.annotate("sharegpt", limit=100)
        >>> result.hierarchy.filter(lambda n: n["parent_id"] is None)["name"]
    """
    facets = resolve_facets(facets)
    engine = _engine(engine, ray_address, num_workers)
    timings: dict[str, float] = {}
    source_revision = resolve_revision(source, revision) if isinstance(source, str) else None
    workdir = _workdir(cache_dir, source, source_revision, split, limit, sample, seed, stream, subset, data_files)

    with _timed(timings, "load"):
        raw = materialise(workdir / "source", lambda: load_source(source, split=split, limit=limit, sample=sample, seed=seed,
                                                                   stream=stream, revision=source_revision,
                                                                   name=subset, data_files=data_files))
        text_columns, times = _check_inputs(raw, facets, column_prefix, conversation_column, text_column, columns,
                                            user_column=user_column, group_column=group_column, time_column=time_column)
    with _timed(timings, "load_models"):
        llm_model = load_llm(llm, **(llm_options or {})) if any(f.method == "llm" or f.clustered for f in facets) else None
        embedder_model = load_embedder(embedder) if any(f.clustered for f in facets) else None

    with _timed(timings, "conversations"):
        conversations = _conversations(raw, workdir, llm_model, config, column_prefix, conversation_column, text_column, columns)
        unique, duplicate_of, originals = unique_rows(conversations, column_prefix)
        check_lens_inputs(conversations, facets, columns=columns, column_prefix=column_prefix)
    with _timed(timings, "extract_facets"):
        unique = engine.extract_facets(unique, llm, model=llm_model, llm_options=llm_options, facets=facets,
                                       config=config.facets, column_prefix=column_prefix)
    with _timed(timings, "embed_facets"):
        if embedder_model is not None:
            unique = engine.embed_facets(unique, embedder, model=embedder_model, facets=facets, config=config.embed,
                                         column_prefix=column_prefix)
    with _timed(timings, "cluster_facets"):
        data = broadcast_to_duplicates(conversations, unique, duplicate_of, originals)
        data = cluster_facets(data, facets=facets, config=config.cluster, column_prefix=column_prefix)
        clustering = _clustering(data, facets, config, column_prefix)
    with _timed(timings, "project_facets"):
        data = _project(data, workdir, conversations, facets, llm_model, embedder_model, config, column_prefix)
    with _timed(timings, "build_hierarchy"):
        tree_key = _tree_key(conversations, facets, llm_model, embedder_model, config, column_prefix)
        hierarchy, time_period = _tree(data, workdir, tree_key, facets, llm_model, embedder_model, config, column_prefix,
                                       group_column=group_column, time_column=time_column, times=times)
    with _timed(timings, "privacy"):
        hierarchy, audit_usage = _privacy(hierarchy, data, workdir, tree_key, llm_model, config, column_prefix,
                                          user_column=user_column)

    info = run_info(raw, unique, hierarchy, facets=facets, config=config, llm=llm_model, embedder=embedder_model,
                    engine=engine.record(), source=source, source_revision=source_revision, subset=subset,
                    data_files=data_files, split=split, seed=seed, column_prefix=column_prefix, user_column=user_column,
                    group_column=group_column, time_column=time_column, time_period=time_period,
                    text_columns=text_columns, timings=timings, clustering=clustering, audit_usage=audit_usage)
    logger.info("annotate: done in %.1f s (%s)", sum(timings.values()), ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return ClioResult(data=data, hierarchy=hierarchy, info=info)


def _workdir(cache_dir, source, revision: str | None, split: str, limit: int | None, sample: int | None, seed: int,
             stream: bool, subset: str | None, data_files) -> Path:
    """The run's folder in the cache, keyed by what is read (the source at its resolved revision and which of its
    rows), so that a rerun on the same input resumes there whatever else changed."""
    run_key = Hasher.hash([source_identity(source, revision), split, limit, sample, seed, stream]
                          + ([subset, data_files] if subset is not None or data_files is not None else []))
    return Path(cache_dir or cache_root()) / "runs" / run_key


def _check_inputs(raw: datasets.Dataset, facets: Sequence[Facet], column_prefix: str, conversation_column: str | None,
                  text_column: str | None, columns: Sequence[str] | None, *, user_column: str | None,
                  group_column: str | None, time_column: str | None) -> tuple[list[str], list | None]:
    """Every check on the input that can fail before a model is loaded: added columns that would collide, the given
    facet columns and their values, the user, group and time columns. Returns (the raw text columns, the parsed times)."""
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
    return text_columns, times


def _conversations(raw: datasets.Dataset, workdir: Path, llm, config: ClioConfig, prefix: str, conversation_column: str | None,
                   text_column: str | None, columns: Sequence[str] | None) -> datasets.Dataset:
    """`to_conversations`, kept under the run's folder."""
    key = Hasher.hash([raw._fingerprint, config.conversation, llm.model_id if llm else None, conversation_column, text_column, columns, prefix])
    return materialise(
        workdir / f"conversations-{key}",
        lambda: to_conversations(raw, llm, config=config.conversation, conversation_column=conversation_column,
                                 text_column=text_column, columns=columns, column_prefix=prefix),
    )


def _clustering(data: datasets.Dataset, facets: Sequence[Facet], config: ClioConfig, prefix: str) -> dict[str, str]:
    """Per clustered facet, how its base clusters were found (`cluster.clustering_path`), for the run record."""
    return {f.column: clustering_path(int(present_mask(data, C.embedding_column(f, prefix)).sum()), config.cluster)
            for f in facets if f.clustered}


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


def _tree_key(conversations: datasets.Dataset, facets: Sequence[Facet], llm, embedder, config: ClioConfig, prefix: str) -> str:
    """Everything the tree depends on is a function of these, so they key its cache (and the privacy gates')."""
    tree_config = [config.conversation, config.facets, config.embed, config.cluster, config.hierarchy]
    return Hasher.hash([conversations._fingerprint, [f.to_dict() for f in facets], llm.model_id if llm else None,
                        embedder.model_id if embedder else None, PROMPT_VERSION, NAMING_VERSION, tree_config,
                        config.privacy.min_rows, prefix])


def _tree(data: datasets.Dataset, workdir: Path, tree_key: str, facets: Sequence[Facet], llm, embedder, config: ClioConfig,
          prefix: str, *, group_column: str | None, time_column: str | None, times) -> tuple[datasets.Dataset, str | None]:
    """`build_hierarchy`, kept under the run's folder, with each node's centroid (what `assign` places new rows by)
    and, when asked, its rows per group and per time period. Returns (the hierarchy, the time period chosen)."""
    # Finished naming calls are journaled as they return, so a run killed while naming resumes where it stopped.
    journal = workdir / f"naming-{tree_key}.jsonl"
    hierarchy = materialise(
        workdir / f"hierarchy-{tree_key}",
        lambda: build_hierarchy(data, JournaledLLM(llm, journal) if llm else llm, embedder, facets=facets,
                                config=config.hierarchy, column_prefix=prefix, min_rows=config.privacy.min_rows),
    )
    without_journal(journal)
    hierarchy = with_centroids(hierarchy, data, facets, prefix)
    if group_column is not None:
        hierarchy = count_groups(hierarchy, data, group_column=group_column, column_prefix=prefix)
    if time_column is None:
        return hierarchy, None
    return count_periods(hierarchy, data, time_column=time_column, column_prefix=prefix,
                         times=times)  # the rows are the input's, in its order


def _privacy(hierarchy: datasets.Dataset, data: datasets.Dataset, workdir: Path, tree_key: str, llm, config: ClioConfig,
             prefix: str, *, user_column: str | None) -> tuple[datasets.Dataset, dict[str, int]]:
    """`apply_privacy_gates`, kept under the run's folder; returns (the gated hierarchy, the audit's LLM usage)."""
    audit = config.privacy.audit and len(hierarchy) > 0
    usage_before = dict(getattr(llm, "usage", None) or {})
    gates_key = Hasher.hash([tree_key, config.privacy, user_column, llm.model_id if llm and audit else None,
                             AUDIT_PROMPT_VERSION, PII_VERSION])
    hierarchy = materialise(
        workdir / f"privacy-{gates_key}",
        lambda: apply_privacy_gates(hierarchy, data, llm if audit else None, config=replace(config.privacy, audit=audit),
                                    user_column=user_column, column_prefix=prefix),
    )
    return hierarchy, {k: v - usage_before.get(k, 0) for k, v in (getattr(llm, "usage", None) or {}).items()}


def _engine(engine, address: str | None, num_workers: int | None) -> Engine:
    """The engine named (`"local"`, `"ray"`) or given."""
    if isinstance(engine, Engine):
        return engine
    if engine == "ray":
        return RayEngine(address=address, num_workers=num_workers)
    if engine != "local":
        raise ValueError(f"engine={engine!r}: use 'local' or 'ray' (or a clio_hf.distributed.RayEngine or another "
                         "clio_hf.engine.Engine).")
    if address or num_workers:
        raise ValueError("ray_address= and num_workers= need engine='ray'.")
    return LocalEngine()


@contextmanager
def _timed(timings: dict, stage: str):
    start = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
