"""Group comparisons: how a group column (`model`, `source`, `language`, ...) spreads over each facet's hierarchy.

`count_groups` is a post-pass over the companion dataset: every node gets `group_counts`, its row count per group
value (summing to `size`). `compare_groups` then finds the nodes whose group mix differs most from the rest of the
facet, with a chi-square test of the node against everything outside it (a 2 x k table), Benjamini-Hochberg q-values
over all nodes tested, Cramer's V as the effect size, and, for the group the node over-represents most (the largest
Pearson residual inside the node), a log odds ratio with a 0.5 continuity correction and its z score. Nodes with
fewer than `min_count` rows inside, or outside, are not tested: their counts are too small for any statistic to mean
much.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import datasets
import numpy as np

from . import columns as C

MISSING_GROUP = "(none)"


def check_group_column(group_column: str, available: Iterable[str]) -> None:
    """Stop before any model runs if the group column is neither an input column nor a facet of the run."""
    available = list(available)
    if group_column not in available:
        raise ValueError(f"group_column={group_column!r} is neither an input column nor a facet column of this run. "
                         f"Available: {available}.")


def group_value(value) -> str:
    return MISSING_GROUP if value is None else str(value)


def count_groups(
    hierarchy: datasets.Dataset,
    data: datasets.Dataset,
    *,
    group_column: str,
    column_prefix: str = "",
) -> datasets.Dataset:
    """Add `group_counts` (list of {group, count}, largest first) to every node: its rows per value of `group_column`.

    A base cluster counts the rows whose `<facet>_cluster` is its node id (duplicates included, as in `size`); a
    parent sums its children, so every node's counts sum to its `size`. A null group value counts as `"(none)"`.

    Args:
        hierarchy: the companion dataset (see `build_hierarchy`).
        data: the row-level dataset with the `<facet>_cluster` columns and `group_column`.
        group_column: the column whose values are counted (an input column or a facet column such as `language`).
        column_prefix: prefix of the cluster columns.
    """
    C.require_columns(data, [group_column], "count_groups")
    groups = [group_value(v) for v in data[group_column]]
    nodes = hierarchy.select_columns(["facet", "node_id", "level", "parent_id"]).to_list()
    counts: dict[tuple[str, int], Counter] = {}
    for facet in dict.fromkeys(n["facet"] for n in nodes):
        cluster = f"{column_prefix}{facet}_cluster"
        C.require_columns(data, [cluster], "count_groups")
        for label, group in zip(data[cluster], groups):
            if label is not None and label >= 0:
                counts.setdefault((facet, label), Counter())[group] += 1
    for node in sorted(nodes, key=lambda n: n["level"]):  # children before parents
        own = counts.setdefault((node["facet"], node["node_id"]), Counter())
        if node["parent_id"] is not None:
            counts.setdefault((node["facet"], node["parent_id"]), Counter()).update(own)
    column = [_as_list(counts[(n["facet"], n["node_id"])]) for n in nodes]
    return hierarchy.add_column(C.GROUP_COUNTS, column, feature=C.GROUP_COUNTS_FEATURE)


def _as_list(counter: Counter) -> list[dict]:
    return [{"group": g, "count": c} for g, c in sorted(counter.items(), key=lambda item: (-item[1], item[0]))]


def overall_counts(hierarchy: datasets.Dataset, facet: str) -> dict[str, int]:
    """Rows per group over a facet's whole tree (the sum of its top-level nodes)."""
    total: Counter = Counter()
    for node in hierarchy:
        if node["facet"] == facet and node["parent_id"] is None:
            total.update({item["group"]: item["count"] for item in node[C.GROUP_COUNTS]})
    return dict(total)


def compare_groups(hierarchy: datasets.Dataset, *, facets: Sequence[str] | None = None, min_count: int = 10) -> list[dict]:
    """Every node tested against the rest of its facet, most significant first (see the module docstring).

    Returns one dict per tested node: facet, node_id, level, name, size, chi2, dof, p_value, q_value, cramers_v,
    group (the most over-represented group), share_in_node, share_overall, log_odds, z.
    """
    if C.GROUP_COUNTS not in hierarchy.column_names:
        raise ValueError("compare_groups: this result has no group_counts; annotate with group_column= "
                         "(CLI --group-column COL).")
    from scipy.stats import chi2 as chi2_distribution

    rows = []
    for facet in dict.fromkeys(hierarchy["facet"]):
        if facets and facet not in facets:
            continue
        whole = overall_counts(hierarchy, facet)
        names = sorted(whole)
        total = np.array([whole[g] for g in names], dtype=np.float64)
        for node in hierarchy:
            if node["facet"] != facet:
                continue
            inside = np.array([{i["group"]: i["count"] for i in node[C.GROUP_COUNTS]}.get(g, 0) for g in names], np.float64)
            outside = total - inside
            if inside.sum() < min_count or outside.sum() < min_count or len(names) < 2:
                continue
            chi2, dof = _chi_square(np.vstack([inside, outside]))
            odds = np.log((inside + 0.5) / (inside.sum() - inside + 0.5)) - np.log((outside + 0.5) / (outside.sum() - outside + 0.5))
            se = np.sqrt(1 / (inside + 0.5) + 1 / (inside.sum() - inside + 0.5) + 1 / (outside + 0.5) + 1 / (outside.sum() - outside + 0.5))
            # the group that drives the difference: the largest Pearson residual inside the node. (The log odds
            # alone would favour a rare group that is merely absent from a small node, through the 0.5 correction.)
            expected = inside.sum() * total / total.sum()
            top = int(np.argmax(np.where(total > 0, (inside - expected) / np.sqrt(np.maximum(expected, 1e-12)), -np.inf)))
            rows.append({
                "facet": facet, "node_id": node["node_id"], "level": node["level"], "name": node["name"],
                "size": node["size"], "chi2": chi2, "dof": dof, "p_value": float(chi2_distribution.sf(chi2, dof)),
                "cramers_v": math.sqrt(chi2 / total.sum()), "group": names[top],
                "share_in_node": inside[top] / inside.sum(), "share_overall": total[top] / total.sum(),
                "log_odds": float(odds[top]), "z": float(odds[top] / se[top]),
            })
    for row, q in zip(rows, _benjamini_hochberg([r["p_value"] for r in rows])):
        row["q_value"] = q
    return sorted(rows, key=lambda r: (r["p_value"], -r["cramers_v"], r["facet"], r["node_id"]))


def _chi_square(table: np.ndarray) -> tuple[float, int]:
    """Pearson's chi-square statistic and degrees of freedom of a contingency table (empty columns dropped)."""
    table = table[:, table.sum(axis=0) > 0]
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum()), (table.shape[0] - 1) * (table.shape[1] - 1)


def _benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """False-discovery-rate q-values, in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    if len(p) == 0:
        return []
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    out = np.empty_like(q)
    out[order] = q
    return out.tolist()
