"""Group comparisons: how a group column (`model`, `source`, `language`, ...) spreads over each facet's hierarchy.

`count_groups` is a post-pass over the companion dataset: every node gets `group_counts`, its row count per group
value (summing to `size`). `compare_groups` then finds the nodes whose group mix differs most from the rest of the
facet, with a chi-square test of the node against everything outside it (a 2 x k table; Fisher's exact test where an
expected count is under 5), Benjamini-Hochberg q-values over all nodes tested, Cramer's V as the effect size, and, for the group the node over-represents most (the largest
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
from . import layout as L

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
    counts = node_counts(hierarchy, data, [group_value(v) for v in data[group_column]], column_prefix, "count_groups")
    return hierarchy.add_column(C.GROUP_COUNTS, [_as_list(c) for c in counts], feature=C.GROUP_COUNTS_FEATURE)


def node_counts(hierarchy: datasets.Dataset, data: datasets.Dataset, values: Sequence, column_prefix: str = "",
                stage: str = "node_counts") -> list[Counter]:
    """For each hierarchy node, in order, how many of its rows hold each of `values` (one per row of `data`).

    A base cluster counts the rows whose `<facet>_cluster` is its id (duplicates included, as in `size`); a parent
    sums its children, so every node's counts sum to its `size`.
    """
    nodes = hierarchy.select_columns(["facet", "node_id", "level", "parent_id"]).to_list()
    counts: dict[tuple[str, int], Counter] = {}
    for facet in dict.fromkeys(n["facet"] for n in nodes):
        cluster = L.cluster_column(facet, column_prefix)
        C.require_columns(data, [cluster], stage)
        for label, value in zip(data[cluster], values):
            if label is not None and label >= 0:
                counts.setdefault((facet, label), Counter())[value] += 1
    for node in sorted(nodes, key=lambda n: n["level"]):  # children before parents
        own = counts.setdefault((node["facet"], node["node_id"]), Counter())
        if node["parent_id"] is not None:
            counts.setdefault((node["facet"], node["parent_id"]), Counter()).update(own)
    return [counts[(n["facet"], n["node_id"])] for n in nodes]


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

    Returns one dict per tested node: facet, node_id, level, name, size, test ("chi2" or "fisher"), chi2, dof, p_value,
    q_value, cramers_v,
    group (the most over-represented group), share_in_node, share_overall, log_odds, z.
    """
    if C.GROUP_COUNTS not in hierarchy.column_names:
        raise ValueError("compare_groups: this result has no group_counts; annotate with group_column= "
                         "(CLI --group-column COL).")
    from scipy.stats import PermutationMethod, chi2_contingency, false_discovery_control, fisher_exact
    from scipy.stats.contingency import association, odds_ratio

    rows = []
    for facet in dict.fromkeys(hierarchy["facet"]):
        if facets and facet not in facets:
            continue
        whole = overall_counts(hierarchy, facet)
        names = [g for g in sorted(whole) if whole[g] > 0]
        total = np.array([whole[g] for g in names], dtype=np.int64)
        for node in hierarchy:
            if node["facet"] != facet:
                continue
            inside = np.array([{i["group"]: i["count"] for i in node[C.GROUP_COUNTS]}.get(g, 0) for g in names], np.int64)
            outside = total - inside
            if inside.sum() < min_count or outside.sum() < min_count or len(names) < 2:
                continue
            table = np.vstack([inside, outside])
            chi2 = chi2_contingency(table, correction=False)
            if (chi2.expected_freq < _MIN_EXPECTED).any():  # the chi-square approximation fails: Fisher's exact test
                seeded = None if table.shape == (2, 2) else PermutationMethod(n_resamples=_FISHER_RESAMPLES, rng=0)
                test, p_value = "fisher", float(fisher_exact(table, method=seeded).pvalue)
            else:
                test, p_value = "chi2", float(chi2.pvalue)
            # the group that drives the difference: the largest Pearson residual inside the node. (The log odds
            # alone would favour a rare group that is merely absent from a small node, through the 0.5 correction.)
            expected = chi2.expected_freq[0]
            top = int(np.argmax((inside - expected) / np.sqrt(expected)))
            one_vs_rest = np.array([[inside[top], inside.sum() - inside[top]], [outside[top], outside.sum() - outside[top]]])
            # Haldane-Anscombe: 0.5 added to every cell, so an empty cell gives a finite log odds ratio. Doubling the
            # table and adding 1 keeps its counts integers and its sample odds ratio exactly the corrected one.
            log_odds = math.log(odds_ratio(2 * one_vs_rest + 1, kind="sample").statistic)
            rows.append({
                "facet": facet, "node_id": node["node_id"], "level": node["level"], "name": node["name"],
                "size": node["size"], "test": test, "chi2": float(chi2.statistic), "dof": int(chi2.dof), "p_value": p_value,
                "cramers_v": float(association(table, method="cramer")), "group": names[top],
                "share_in_node": inside[top] / inside.sum(), "share_overall": total[top] / total.sum(),
                "log_odds": log_odds, "z": log_odds / math.sqrt((1 / (one_vs_rest + 0.5)).sum()),
            })
    q_values = false_discovery_control([r["p_value"] for r in rows], method="bh") if rows else []
    for row, q in zip(rows, q_values):
        row["q_value"] = float(q)
    return sorted(rows, key=lambda r: (r["p_value"], -r["cramers_v"], r["facet"], r["node_id"]))


_MIN_EXPECTED = 5  # the usual rule: a chi-square p-value is trusted when every expected count is at least 5
_FISHER_RESAMPLES = 9_999  # Fisher's test of a 2 x k table by seeded permutations (exact for 2 x 2)
