"""What changed between two results of the same tree (`clio-hf diff OLD NEW`).

Nodes are matched by facet, node id and name (an `assign` keeps all three). For a matched node the shares of its facet's
rows are compared with `trends.share_test` and Benjamini-Hochberg q-values over every node tested. When NEW extends
OLD (as `assign` makes it: no node smaller, more rows in all), the rows NEW added are compared with OLD's, since
NEW's rows include OLD's and a sample is not independent of itself; otherwise OLD's rows are compared with NEW's.
Nodes only one result has are listed as `new` or `vanished`, untested.
"""

from __future__ import annotations

from collections.abc import Sequence

from .result import ClioResult
from .trends import share_test


def diff_results(old: ClioResult, new: ClioResult, *, facets: Sequence[str] | None = None, min_count: int = 5) -> list[dict]:
    """One dict per node of either result: facet, node_id, level, name, status (`kept`, `new`, `vanished`),
    size_before, size_after, compared (`added rows` or `all rows`), share_before, share_after, change, test, p_value,
    q_value (the last five None for an untested node). Tested nodes first, most significant first."""
    from scipy.stats import false_discovery_control

    before, after = _nodes(old, facets), _nodes(new, facets)
    rows = []
    for facet in dict.fromkeys([k[0] for k in [*before, *after]]):
        mine_before = {k: n for k, n in before.items() if k[0] == facet}
        mine_after = {k: n for k, n in after.items() if k[0] == facet}
        total_before, total_after = _total(mine_before), _total(mine_after)
        kept = [k for k in mine_before if k in mine_after]
        extends = total_after > total_before and all(mine_after[k]["size"] >= mine_before[k]["size"] for k in kept)
        added = total_after - total_before
        for key in [*mine_before, *(k for k in mine_after if k not in mine_before)]:
            b, a = mine_before.get(key), mine_after.get(key)
            node = a or b
            row = {"facet": facet, "node_id": key[1], "level": node["level"], "name": key[2],
                   "status": "kept" if a and b else "new" if a else "vanished",
                   "size_before": b["size"] if b else 0, "size_after": a["size"] if a else 0,
                   "compared": None, "share_before": None, "share_after": None, "change": None, "test": None,
                   "p_value": None, "q_value": None}
            if a and b:
                count, total = (a["size"] - b["size"], added) if extends else (a["size"], total_after)
                if b["size"] + count >= min_count and total > 0 and total_before > 0:
                    test, p_value = share_test(b["size"], total_before, count, total)
                    row.update(compared="added rows" if extends else "all rows", share_before=b["size"] / total_before,
                               share_after=count / total, test=test, p_value=p_value)
                    row["change"] = row["share_after"] - row["share_before"]
            rows.append(row)
    tested = [r for r in rows if r["p_value"] is not None]
    for row, q in zip(tested, false_discovery_control([r["p_value"] for r in tested], method="bh") if tested else []):
        row["q_value"] = float(q)
    return sorted(rows, key=lambda r: (r["p_value"] is None, r["p_value"] or 0, -abs(r["change"] or 0), r["facet"], r["node_id"]))


def _nodes(result: ClioResult, facets: Sequence[str] | None) -> dict[tuple[str, int, str], dict]:
    return {(n["facet"], n["node_id"], n["name"]): n for n in result.hierarchy.to_list()
            if not facets or n["facet"] in facets}


def _total(nodes: dict) -> int:
    return sum(n["size"] for n in nodes.values() if n["parent_id"] is None)
