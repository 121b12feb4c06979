"""Lens summaries: per numeric facet, the mean score and (for lenses) the share of rows in each quality band, over
all rows and per top-level cluster of a clustered facet, so that a user sees *which kinds* of data score low.

Shares count rows (duplicates included, as the dataset has them) that have a score; rows whose score is null are
left out of both the mean and the shares, and `rows` says how many were counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import numpy as np

from . import columns as C
from . import layout as L
from .facets import BANDS, Facet, Lens, band

ALL = "(all rows)"


def facets_from_info(info: dict) -> list[Facet]:
    """The run's facets, rebuilt from the run record (`clio_run.json`)."""
    return [Lens.from_dict(f) if f.get("lens") else Facet.from_dict(f) for f in info.get("facets") or [] if isinstance(f, dict)]


def summarize(
    data: datasets.Dataset,
    hierarchy: datasets.Dataset,
    *,
    facets: Sequence[Facet],
    cluster_facet: str | None = None,
    column_prefix: str = "",
) -> list[dict]:
    """Rows of the summary table: one per (scope, numeric facet), the overall scope first.

    Args:
        data: the row-level dataset with the numeric facet columns (and `<cluster_facet>_cluster`).
        hierarchy: the companion dataset; its top-level nodes of `cluster_facet` are the per-cluster scopes.
        facets: the run's facets (see `facets_from_info`); numeric ones are summarised, lenses get bands.
        cluster_facet: the clustered facet whose top-level clusters break the table down; default the first one in
            the hierarchy; no breakdown when the run has no clustered facet.

    Returns:
        dicts with `cluster` (`"(all rows)"` or the top-level name), `node_id` (None overall), `facet`, `rows`,
        `mean`, and `Poor`, `Low`, `Medium`, `Good` (shares of `rows`; None for a numeric facet that is no lens).
    """
    numeric = [f for f in facets if f.numeric and C.facet_column(f, column_prefix) in data.column_names]
    if not numeric:
        raise ValueError(f"summarize: the result has no numeric facet or lens columns. Facets: {[f.column for f in facets]}.")
    scores = {f.column: np.array([np.nan if v is None else v for v in data[C.facet_column(f, column_prefix)]], dtype=np.float64)
              for f in numeric}
    scopes = [(ALL, None, np.ones(len(data), dtype=bool))]
    facet_names = list(dict.fromkeys(hierarchy["facet"])) if len(hierarchy) else []
    if cluster_facet is not None and cluster_facet not in facet_names:
        raise ValueError(f"summarize: {cluster_facet!r} has no hierarchy in this result; clustered facets: {facet_names}.")
    cluster_facet = cluster_facet or (facet_names[0] if facet_names else None)
    if cluster_facet is not None:
        scopes += _top_level_scopes(data, hierarchy, cluster_facet, column_prefix)
    rows = []
    for name, node_id, mask in scopes:
        for facet in numeric:
            values = scores[facet.column][mask]
            values = values[~np.isnan(values)]
            row = {"cluster": name, "node_id": node_id, "facet": facet.column, "rows": int(len(values)),
                   "mean": float(values.mean()) if len(values) else None}
            bands = [band(int(v), facet.numeric) for v in values] if isinstance(facet, Lens) else None
            for label in BANDS:
                row[label] = (bands.count(label) / len(bands) if bands else 0.0) if bands is not None else None
            rows.append(row)
    return rows


def _top_level_scopes(data, hierarchy, facet: str, prefix: str) -> list[tuple[str, int, np.ndarray]]:
    nodes = [n for n in hierarchy.select_columns(["facet", "node_id", "parent_id", "name", "size"]) if n["facet"] == facet]
    parent = {n["node_id"]: n["parent_id"] for n in nodes}

    def top(node_id: int) -> int:
        while parent[node_id] is not None:
            node_id = parent[node_id]
        return node_id

    labels = np.array([-1 if v is None else v for v in data[L.cluster_column(facet, prefix)]], dtype=np.int64)
    top_of_row = np.array([top(int(label)) if label in parent else -1 for label in labels], dtype=np.int64)
    tops = sorted((n for n in nodes if n["parent_id"] is None), key=lambda n: (-n["size"], n["node_id"]))
    return [(n["name"], n["node_id"], top_of_row == n["node_id"]) for n in tops]


def format_table(rows: Sequence[dict], columns: Sequence[str], *, width: int = 48) -> str:
    """A plain-text table: numbers right-aligned (shares as percentages), long text cut to `width`."""
    def cell(key, value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.1%}" if key in BANDS or key.startswith("share") else f"{value:.3g}" if key in ("p_value", "q_value") else f"{value:.2f}"
        text = " ".join(str(value).split())
        return text if len(text) <= width else text[: width - 1] + "…"

    table = [list(columns)] + [[cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    numeric = [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows) for c in columns]
    lines = []
    for k, line in enumerate(table):
        lines.append("  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(line, widths, numeric)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
