"""Clio tree viewer: browse a clio_hf result (a Hub dataset repo or a local folder) in Gradio.

The result is named by the CLIO_DATASET environment variable, or by `clio_space.json` beside this file (which
`clio-hf deploy-space` uploads). Runs with only requirements.txt installed, so it must not import clio_hf.
Deep links: `?facet=<facet>&node=<node_id>`.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

# Before gradio is imported: this also turns off its version check, the only other request that leaves the machine.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the modules shared with clio_hf lie beside app.py
import fsspec  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from datasets import load_dataset, load_dataset_builder  # noqa: E402

import figures  # noqa: E402  (beside app.py too: the drawings ClioResult.visualize_* makes)
import layout as L  # noqa: E402  (the result's file, folder and column names, as clio_hf writes them)
import tree_rows  # noqa: E402

SAMPLE_ROWS = 8
PAGE_ROWS = 20  # rows per page of the row table
ROW_HITS = 10  # rows a search lists
ANY = "(any)"
MAX_HITS = 50
OPEN_HITS = 10  # search hits whose paths the tree opens
CONVERSATION_CHARS = 2000
CONFIG_FILE = Path(__file__).with_name(L.SPACE_CONFIG_FILE)
MAP_POINTS = 6000  # points the topic map draws at most: a seeded sample, stratified by top-level cluster
MAP_MIN_PER_CLUSTER = 40  # every top-level cluster keeps at least this many (or all of its) points
MAP_VALUE_CHARS = 140
MAX_GROUPS = 12  # groups listed in the detail panel; the rest are summed as "other"
TOP_COLOUR = "Top-level cluster"
LEVEL_COLOUR = "Tree level "  # + the level: colour by each row's ancestor there (0: its base cluster)
DIMMED = 0.12  # opacity of the points outside the selected node


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


snake = L.column_name  # a facet's column name, as clio_hf derives it: `Request` -> `request`


@dataclass
class Node:
    id: int
    level: int
    parent: int | None
    name: str
    summary: str
    source: str
    size: int
    means: dict[str, float]
    withheld_by: str | None = None  # only in a local result: the push drops these nodes
    kids: list[int] = field(default_factory=list)
    score: float | None = None  # name_score; results before it have none
    keyphrases: list[str] = field(default_factory=list)  # top terms of its rows' values; results before them have none
    time_counts: dict[str, int] = field(default_factory=dict)  # rows per period, with a time column
    size_before: int | None = None  # rows before the last batch `clio-hf assign` added


def _run_info(dataset: str) -> dict:
    try:
        if Path(dataset).is_dir():
            path = Path(dataset) / L.RUN_FILE
            return json.loads(path.read_text()) if path.exists() else {}
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(dataset, L.RUN_FILE, repo_type="dataset")).read_text())
    except Exception:  # the run file only adds facet order and model names; the tree works without it
        return {}


def _load(dataset: str, config: str = L.DEFAULT_CONFIG, **kwargs):
    """One config of a result as a `Dataset`. A local folder is read from its parquet files by name, since
    `load_dataset(folder)` keys its Arrow cache on the folder's name and would serve an overwritten result stale."""
    if Path(dataset).is_dir():
        files = sorted(str(p) for p in Path(dataset).glob(L.config_glob(config)))
        return load_dataset("parquet", data_files={L.SPLIT: files}, split=L.SPLIT, **kwargs)
    return load_dataset(dataset, config, split=L.SPLIT, **kwargs)


def _row_files(dataset: str) -> list[str]:
    """The row level's parquet files, local paths or hf:// URLs, in order."""
    if Path(dataset).is_dir():
        return sorted(str(p) for p in Path(dataset).glob(L.config_glob(L.DEFAULT_CONFIG)))
    return list(load_dataset_builder(dataset).config.data_files[L.SPLIT])


def _row_columns(dataset: str) -> list[str]:
    """Column names of the row level, read from the first parquet footer (a few KB, also from the Hub)."""
    with fsspec.open(_row_files(dataset)[0], "rb") as f:
        return pq.read_schema(f).names


class ResultData:
    """A loaded result: the run record, each facet's tree, and the row columns the viewer shows, memory-mapped (a
    million rows are never copied into Python). Renderers read it; nothing here draws."""

    def __init__(self, dataset: str, show_withheld: bool = False):
        """`show_withheld` shows (and marks) the nodes the privacy gates keep out of a push: for a local result
        viewed on loopback. A Space shows published nodes only, whatever the files hold."""
        self.dataset = dataset
        self.run = _run_info(dataset)
        hier = _load(dataset, L.HIERARCHY_CONFIG)
        mean_cols = [c for c in hier.column_names if L.mean_of(c) is not None]
        self.trees: dict[str, dict[int, Node]] = {}
        self.group_column = self.run.get("group_column") if L.GROUP_COUNTS in hier.column_names else None
        self.group_counts: dict[str, dict[int, dict[str, int]]] = {}
        for r in hier.to_list():
            if r.get("published") is False and not show_withheld:
                continue
            if self.group_column:
                self.group_counts.setdefault(r["facet"], {})[int(r["node_id"])] = {
                    g["group"]: int(g["count"]) for g in r[L.GROUP_COUNTS] or []}
            means = {L.mean_of(c): r[c] for c in mean_cols if r[c] is not None and r[c] == r[c]}
            parent = None if r["parent_id"] is None else int(r["parent_id"])
            self.trees.setdefault(r["facet"], {})[int(r["node_id"])] = Node(
                int(r["node_id"]), int(r["level"]), parent, r["name"] or "", r["summary"] or "",
                r.get("name_source") or "", int(r["size"]), means,
                (r.get("withheld_by") or "gates") if r.get("published") is False else None,
                score=r.get("name_score"), keyphrases=list(r.get("keyphrases") or []),
                time_counts={t["period"]: int(t["count"]) for t in r.get(L.TIME_COUNTS) or []},
                size_before=r.get("size_before"))
        self.tops: dict[str, list[int]] = {}
        for facet, nodes in self.trees.items():
            for n in nodes.values():
                if n.parent in nodes:
                    nodes[n.parent].kids.append(n.id)
            tops = [n.id for n in nodes.values() if n.parent is None]
            reachable = self._subtree(nodes, tops)
            # A node whose parent is missing from the file (say, a hand-filtered tree) is left out with it.
            self.trees[facet] = nodes = {i: n for i, n in nodes.items() if i in reachable}
            for n in nodes.values():
                n.kids.sort(key=lambda k: -nodes[k].size)
            self.tops[facet] = sorted(tops, key=lambda k: -nodes[k].size)
        order = [snake(f.get("name", "") if isinstance(f, dict) else str(f)) for f in self.run.get("facets") or []]
        self.facets = sorted(self.trees, key=lambda f: order.index(f) if f in order else len(order))

        prefix = self.run.get("column_prefix") or ""  # `annotate --column-prefix` renames the added columns
        available = set(_row_columns(dataset))
        self.prefix, self.available = prefix, available
        numeric = [L.mean_of(c) for c in mean_cols]
        self.value_cols = [c for c in dict.fromkeys(order or [*self.facets, *numeric]) if prefix + c in available]
        self.numeric = numeric
        mapped = [f for f in self.facets if all(c in available for c in L.projection_columns(f, prefix))]
        extra = [c for c in (L.CONVERSATION, L.DUPLICATE_OF, *(L.cluster_column(f) for f in self.facets),
                             *(xy for f in mapped for xy in L.projection_columns(f))) if prefix + c in available]
        # Loaded as named here: the added columns without the prefix, an input column (the group) as it is.
        shown = {prefix + c: c for c in self.value_cols + extra}
        if self.group_column and self.group_column in shown:
            self.group_column = shown[self.group_column]  # a facet's column, given with its prefix
        elif self.group_column and self.group_column not in shown.values():
            group = next((a for a in (prefix + self.group_column, self.group_column) if a in available), None)
            if group is not None:
                shown[group] = self.group_column
        # Only the columns shown: embeddings are most of a result's bytes and the viewer never needs them.
        data = _load(dataset, columns=list(shown))
        data = data.rename_columns({a: c for a, c in shown.items() if a != c})
        self.n_rows = len(data)
        cols = data.column_names
        self.has_conversation = L.CONVERSATION in cols
        self.clusters = {f: data.data.column(L.cluster_column(f)).fill_null(L.NO_CLUSTER).to_numpy()
                         for f in self.facets if L.cluster_column(f) in cols}
        # Duplicates share the original's values, so samples skip them.
        self.original = (data.data.column(L.DUPLICATE_OF).fill_null(-1).to_numpy() < 0
                         if L.DUPLICATE_OF in cols else np.ones(len(data), bool))
        self.rows = data.select_columns(self.value_cols + ([L.CONVERSATION] if self.has_conversation else []))
        self.xy = {f: np.column_stack([data.data.column(c).to_numpy(zero_copy_only=False) for c in L.projection_columns(f)])
                   .astype(np.float32) for f in mapped}
        self.numeric_values = {c: data.data.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                               for c in numeric if c in cols}
        self.overall_means = {c: float(np.nanmean(v)) for c, v in self.numeric_values.items() if np.isfinite(v).any()}
        self.group_values = (data.data.column(self.group_column).to_pylist()
                             if self.group_column and self.group_column in cols else None)
        self._row_tops: dict[str, np.ndarray] = {}
        self._all = None  # every row column, loaded by the first export

    def row_files(self) -> list[str]:
        return _row_files(self.dataset)

    def all_columns(self):
        """Every row column (embeddings too), memory-mapped: what an export writes; loaded on first use."""
        if self._all is None:
            self._all = _load(self.dataset)
        return self._all

    @staticmethod
    def _subtree(nodes: dict[int, Node], roots: list[int]) -> set[int]:
        return tree_rows.subtree({i: n.kids for i, n in nodes.items()}, roots)

    def rows_under(self, facet: str, node_id: int | None) -> np.ndarray:
        """A mask of the rows under a node (every row with a cluster when `node_id` is None)."""
        clusters = self.clusters[facet]
        if node_id is None:
            return clusters >= 0
        return tree_rows.rows_under(clusters, {i: n.kids for i, n in self.trees[facet].items()}, [node_id])

    def node(self, facet: str, node_id: object) -> Node | None:
        try:
            return self.trees.get(facet, {}).get(int(node_id))
        except (TypeError, ValueError):
            return None

    def path(self, facet: str, node_id: int) -> list[int]:
        nodes, out = self.trees[facet], [node_id]
        while nodes[out[-1]].parent is not None:
            out.append(nodes[out[-1]].parent)
        return out[::-1]

    def share(self, facet: str, n: Node) -> float:
        nodes = self.trees[facet]
        whole = nodes[n.parent].size if n.parent is not None else sum(nodes[t].size for t in self.tops[facet])
        return n.size / whole if whole else 0.0

    def meta(self, facet: str, n: Node) -> str:
        of = "parent" if n.parent is not None else "all"
        parts = [f"{n.size:,} rows", f"{self.share(facet, n):.1%} of {of}"]
        parts += [f"{esc(k)} {v:.2f}" for k, v in n.means.items()]
        if n.withheld_by:
            parts.append(f'<span class="withheld" title="kept locally, left out of a push">withheld: {esc(n.withheld_by)}</span>')
        return " · ".join(parts)

    def top_of(self, facet: str) -> dict[int, int]:
        """node id -> its top-level ancestor's id."""
        return {i: self.path(facet, i)[0] for i in self.trees[facet]}

    def row_tops(self, facet: str) -> np.ndarray:
        """Each row's top-level node id (-1 without a cluster), computed once per facet."""
        if facet not in self._row_tops:
            labels = self.clusters[facet]
            lookup = np.full(max(self.trees[facet], default=0) + 2, -1, dtype=np.int64)
            for i, t in self.top_of(facet).items():
                lookup[i] = t
            self._row_tops[facet] = np.where((labels >= 0) & (labels < len(lookup) - 1), lookup[np.clip(labels, 0, len(lookup) - 1)], -1)
        return self._row_tops[facet]


class TreeView(ResultData):
    """The tree: top nodes first, children fetched one level at a time, paths opened for search hits and deep links."""

    def _li(self, facet: str, node_id: int, open_ids: set[int], selected: int | None) -> str:
        n = self.trees[facet][node_id]
        is_open = bool(n.kids) and node_id in open_ids
        toggle = '<button class="tog" title="Show children">▸</button>' if n.kids else '<span class="tog"></span>'
        kids = "".join(self._li(facet, k, open_ids, selected) for k in n.kids) if is_open else ""
        return (
            f'<li class="cn{" open" if is_open else ""}" data-node="{n.id}">'
            f'<div class="row{" sel" if n.id == selected else ""}">{toggle}'
            f'<span class="nm">{esc(n.name)}</span>'
            + (f'<span class="kp" title="keyphrases: top terms of its rows">{esc(" · ".join(n.keyphrases))}</span>'
               if n.keyphrases else "")
            + f'<span class="bar"><span style="width:{self.share(facet, n) * 100:.1f}%"></span></span>'
            f'<span class="meta">{self.meta(facet, n)}</span><div class="sm">{esc(n.summary)}</div></div>'
            + (f'<ul class="kids">{kids}</ul>' if is_open else "") + "</li>"
        )

    def tree_html(self, facet: str, open_ids: set[int] | None = None, selected: int | None = None) -> str:
        if facet not in self.trees:
            return '<div class="clio-tree">No clustered facet in this result.</div>'
        items = "".join(self._li(facet, t, open_ids or set(), selected) for t in self.tops[facet])
        return f'<div class="clio-tree" data-facet="{esc(facet)}"><ul class="top">{items}</ul></div>'

    def kids_html(self, facet: str, node_id: object) -> str:
        """Server function behind the tree's expand button: one level of children, rendered on demand."""
        n = self.node(facet, node_id)
        return "".join(self._li(facet, k, set(), None) for k in n.kids) if n else ""

    def open_tree(self, facet: str, targets: list[int], selected: int | None) -> str:
        open_ids = {p for t in targets for p in self.path(facet, t)[:-1]}
        return self.tree_html(facet, open_ids, selected)

    def node_dict(self, facet: str, n: Node) -> dict:
        return dict(node_id=n.id, level=n.level, parent_id=n.parent, name=n.name, summary=n.summary,
                    size=n.size, share_of_parent=self.share(facet, n), means=n.means, n_children=len(n.kids))


class DetailView(ResultData):
    """The detail panel of one node: breadcrumbs, children, numeric means, the group mix and sample rows."""

    def samples(self, facet: str, node_id: int) -> list[dict]:
        if facet not in self.clusters:
            return []
        idx = np.flatnonzero(self.rows_under(facet, node_id) & self.original)
        if len(idx) > SAMPLE_ROWS:  # spread over the node rather than the first few rows of the file
            idx = idx[np.linspace(0, len(idx) - 1, SAMPLE_ROWS).astype(int)]
        rows = self.rows.select(idx.tolist()).to_list()
        return [dict(r, _row=int(i)) for i, r in zip(idx, rows, strict=True)]

    def _sample_html(self, row: dict) -> str:
        values = "".join(f"<dt>{esc(c)}</dt><dd>{esc(row[c])}</dd>" for c in self.value_cols)
        conv = ""
        conversation = row.get(L.CONVERSATION)
        if self.has_conversation and conversation:
            turns = "".join(
                f'<div class="turn"><b>{esc(t.get("role"))}</b> {esc((t.get("content") or "")[:CONVERSATION_CHARS])}'
                "</div>" for t in conversation)
            conv = f'<details><summary>Conversation ({len(conversation)} turns)</summary>{turns}</details>'
        return f'<div class="sample"><div class="rowid">row {row["_row"]}</div><dl>{values}</dl>{conv}</div>'

    def detail_html(self, facet: str, node_id: object) -> str:
        n = self.node(facet, node_id)
        if n is None:
            return '<div class="clio-detail empty">Click a cluster to see its details and sample rows.</div>'
        crumbs = " › ".join(f'<a href="#" data-goto="{p}">{esc(self.trees[facet][p].name)}</a>'
                            for p in self.path(facet, n.id)[:-1])
        kids = "".join(f'<li><a href="#" data-goto="{k}">{esc(self.trees[facet][k].name)}</a> '
                       f'<span class="meta">{self.trees[facet][k].size:,} rows</span></li>' for k in n.kids)
        samples = self.samples(facet, n.id)
        provenance = {"fallback": ' · <span title="the LLM gave no usable name: named by its keyphrases">keyphrase name (fallback)</span>',
                    "keyphrase": ' · <span title="its keyphrases fit its rows better than the LLM\'s names">keyphrase name</span>',
                    "shared_value": ' · <span title="a value many of its rows share word for word">shared value</span>',
                    }.get(n.source, "")
        if n.score is not None:
            provenance += (f' · <span title="how much closer the name sits to this node\'s rows than to its nearest siblings\' '
                         f'rows (embedding similarity)">name fit {n.score:.2f}</span>')
        return (
            f'<div class="clio-detail" data-node="{n.id}"><div class="crumbs">{crumbs}</div>'
            f"<h3>{esc(n.name)}</h3><div class=\"meta\">{esc(facet)} · node {n.id} · level {n.level} · "
            f"{self.meta(facet, n)}{provenance}</div><p>{esc(n.summary)}</p>"
            + (f'<div class="meta kps">Keyphrases: {esc(", ".join(n.keyphrases))}</div>' if n.keyphrases else "")
            + self.means_html(facet, n) + self.groups_html(facet, n) + self.time_html(facet, n)
            + (f"<h4>Children ({len(n.kids)})</h4><ul>{kids}</ul>" if kids else "")
            + f"<h4>Sample rows ({len(samples)} of {n.size:,})</h4>"
            + ("".join(self._sample_html(s) for s in samples) or "<p>No rows available.</p>")
            + "</div>"
        )

    def means_html(self, facet: str, n: Node) -> str:
        """Every numeric facet's mean over the node's rows against its mean over all rows."""
        cells = []
        for col, mean in n.means.items():
            overall = self.overall_means.get(col)
            delta = "" if overall is None else f'<td class="num">{mean - overall:+.2f}</td>'
            cells.append(f'<tr><td>{esc(col)}</td><td class="num">{mean:.2f}</td>'
                         f'<td class="num">{"" if overall is None else f"{overall:.2f}"}</td>{delta}</tr>')
        if not cells:
            return ""
        return ('<h4>Numeric facets</h4><table class="clio-means"><tr><th></th><th>this node</th><th>all rows</th>'
                f'<th>difference</th></tr>{"".join(cells)}</table>')

    def overall_groups(self, facet: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tops.get(facet, []):
            for g, c in self.group_counts.get(facet, {}).get(t, {}).items():
                counts[g] = counts.get(g, 0) + c
        return counts

    def time_html(self, facet: str, n: Node) -> str:
        """The node's share of each period's rows (a time column's `time_counts`), as a small bar chart."""
        if not n.time_counts:
            return ""
        whole: dict[str, int] = {}
        for t in self.tops.get(facet, []):
            for period, count in self.trees[facet][t].time_counts.items():
                whole[period] = whole.get(period, 0) + count
        periods = sorted(p for p in whole if p != "(none)")
        shares = [n.time_counts.get(p, 0) / whole[p] if whole[p] else 0.0 for p in periods]
        peak = max(shares, default=0) or 1
        bars = "".join(
            f'<span class="tbar" data-period="{esc(p)}" title="{esc(p)}: {n.time_counts.get(p, 0):,} of {whole[p]:,} rows '
            f'({share:.0%})"><span style="height:{share / peak * 100:.0f}%"></span></span>'
            for p, share in zip(periods, shares, strict=True))
        by = self.run.get("time_period") or "period"
        return (f'<h4>Over time: share of each {esc(by)}\'s rows ({esc(self.run.get("time_column") or "")})</h4>'
                f'<div class="clio-time">{bars}</div><div class="meta">{esc(periods[0] if periods else "")} … '
                f'{esc(periods[-1] if periods else "")}</div>')

    def groups_html(self, facet: str, n: Node) -> str:
        """The node's distribution over the group column against the facet's whole distribution."""
        mine = self.group_counts.get(facet, {}).get(n.id)
        if not mine:
            return ""
        whole = self.overall_groups(facet)
        here_total, whole_total = sum(mine.values()) or 1, sum(whole.values()) or 1
        order = sorted(whole, key=lambda g: (-mine.get(g, 0), -whole[g], g))
        shown, rest = order[:MAX_GROUPS], order[MAX_GROUPS:]
        rows = [(g, mine.get(g, 0), whole[g]) for g in shown]
        if rest:
            rows.append((f"other ({len(rest)})", sum(mine.get(g, 0) for g in rest), sum(whole[g] for g in rest)))
        body = "".join(
            f'<tr data-group="{esc(g)}"><td>{esc(g)}</td><td class="num">{c:,}</td>'
            f'<td class="num">{c / here_total:.1%}</td><td class="num">{w / whole_total:.1%}</td>'
            f'<td><span class="gbar here" style="width:{c / here_total * 100:.1f}%"></span>'
            f'<span class="gbar all" style="width:{w / whole_total * 100:.1f}%"></span></td></tr>' for g, c, w in rows)
        return (f'<h4>Groups: {esc(self.group_column)}</h4><table class="clio-groups"><tr><th>group</th><th>rows</th>'
                '<th>share here</th><th>share overall</th><th><span class="gbar here key"></span> here '
                f'<span class="gbar all key"></span> overall</th></tr>{body}</table>')


class NodeSearch(ResultData):
    """Search over node names and summaries (every word must match; name matches first)."""

    def search(self, facet: str, query: str) -> list[int]:
        terms = (query or "").lower().split()
        if not terms or facet not in self.trees:
            return []
        nodes = self.trees[facet].values()
        hits = [n for n in nodes if all(t in f"{n.name} {n.summary} {' '.join(n.keyphrases)}".lower() for t in terms)]
        hits.sort(key=lambda n: (not all(t in n.name.lower() for t in terms), -n.size))
        return [n.id for n in hits[:MAX_HITS]]

    def hits_html(self, facet: str, query: str, hits: list[int]) -> str:
        if not (query or "").strip():
            return ""
        if not hits:
            return f'<div class="clio-hits">No cluster matches “{esc(query)}”.</div>'
        items = "".join(
            f'<li><a href="#" data-goto="{h}">'
            + " › ".join(esc(self.trees[facet][p].name) for p in self.path(facet, h))
            + f'</a> <span class="meta">{self.trees[facet][h].size:,} rows</span></li>' for h in hits)
        more = f" (the tree opens the first {OPEN_HITS})" if len(hits) > OPEN_HITS else ""
        count = f'{len(hits)} match{"es" if len(hits) != 1 else ""}'
        return f'<div class="clio-hits"><b>{count}</b>{more}<ol>{items}</ol></div>'


class MapView(ResultData):
    """The treemap overview and the topic map (a bounded, stratified sample of the rows' points)."""

    def treemap(self, facet: str) -> go.Figure:
        nodes = list(self.trees.get(facet, {}).values())
        return figures.treemap([n.id for n in nodes], [n.parent for n in nodes], [n.name for n in nodes],
                               [n.size for n in nodes], [n.summary for n in nodes])

    def colour_options(self, facet: str | None = None) -> list[str]:
        """Top-level cluster, each lower tree level of `facet` (down to the base clusters), the group, each score."""
        options = [TOP_COLOUR]
        levels = sorted({n.level for n in self.trees.get(facet, {}).values()}, reverse=True)[1:]
        options += [f"{LEVEL_COLOUR}{level}" for level in levels]
        if self.group_values is not None or (self.group_column and self.group_column in self.value_cols):
            options.append(f"Group: {self.group_column}")
        return options + [f"Score: {c}" for c in self.numeric_values]

    def ancestor(self, facet: str, node_id: int, level: int) -> int:
        """The node's ancestor at `level` (itself at or below it; the top when the tree is shallower)."""
        path = self.path(facet, node_id)
        return next((p for p in path if self.trees[facet][p].level <= level), path[-1])

    def selection_html(self, facet: str, rows: list[int]) -> str:
        """What a box or lasso on the map caught: how many rows, the base clusters they fall in, and the rows."""
        rows = sorted({int(r) for r in rows if 0 <= int(r) < self.n_rows})
        labels = self.clusters[facet][rows] if rows else np.array([], np.int64)
        found, counts = np.unique(labels[labels >= 0], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        nodes = "".join(f'<li><a href="#" data-goto="{int(found[i])}">'
                        + " › ".join(esc(self.trees[facet][p].name) for p in self.path(facet, int(found[i])))
                        + f'</a> <span class="meta">{int(counts[i]):,} of the rows</span></li>'
                        for i in order if int(found[i]) in self.trees[facet])
        values = self.rows.select_columns([facet]).select(rows[:ROW_HITS])[facet] if facet in self.value_cols and rows else []
        listed = "".join(f'<li data-row="{r}"><span class="meta">row {r}</span> {esc(str(v or "")[:MAP_VALUE_CHARS])}</li>'
                         for r, v in zip(rows, values))
        return (f'<div class="clio-lasso" data-rows="{len(rows)}"><b>{len(rows):,} rows selected on the map</b>, in '
                f"{len(found)} base cluster(s)<ol>{nodes}</ol><b>Rows</b><ol>{listed}</ol></div>")

    def map_sample(self, facet: str) -> np.ndarray:
        """Rows the map draws: originals with a point, at most MAP_POINTS, spread over the top-level clusters."""
        xy, tops = self.xy[facet], self.row_tops(facet)
        usable = np.flatnonzero(self.original & np.isfinite(xy).all(axis=1) & (tops >= 0))
        if len(usable) <= MAP_POINTS:
            return usable
        rng = np.random.default_rng(0)
        picked = []
        for t in np.unique(tops[usable]):
            members = usable[tops[usable] == t]
            quota = max(min(len(members), MAP_MIN_PER_CLUSTER), round(MAP_POINTS * len(members) / len(usable)))
            picked.append(rng.choice(members, size=min(quota, len(members)), replace=False))
        return np.sort(np.concatenate(picked))

    def map_caption(self, facet: str) -> str:
        if facet not in self.xy:
            return '<div class="meta">No topic map in this result (no <code>_x</code>/<code>_y</code> columns).</div>'
        total = int((self.original & np.isfinite(self.xy[facet]).all(axis=1)).sum())
        drawn = len(self.map_sample(facet))
        how = "all points" if drawn == total else f"a seeded sample of {drawn:,} of {total:,} points, stratified by cluster"
        return (f'<div class="meta" data-drawn="{drawn}" data-total="{total}">Topic map of {esc(facet)}: {how}; '
                "large circles are the top-level clusters (all rows). Click a point or a circle to open it in the "
                "tree; draw a lasso around points to list their rows.</div>")

    def scatter(self, facet: str, colour: str = TOP_COLOUR, selected: int | None = None) -> go.Figure:
        """The map; with a `selected` node, its rows' points drawn as usual and every other point dimmed."""
        if facet not in self.xy:
            return figures.topic_map(np.zeros((0, 2)), [])
        nodes, xy, labels = self.trees[facet], self.xy[facet], self.clusters[facet]
        rows = self.map_sample(facet)
        top_of = self.top_of(facet)
        values = self.rows.select_columns([facet]).select(rows.tolist())[facet] if facet in self.value_cols else [""] * len(rows)
        custom = [[int(labels[r]), esc(f"{nodes[top_of[int(labels[r])]].name} › {nodes[int(labels[r])].name}"),
                   esc(str(v or "")[:MAP_VALUE_CHARS]), int(r)] for r, v in zip(rows, values)]
        shown = self.node(facet, selected)
        opacity = np.where(self.rows_under(facet, shown.id)[rows], 0.85, DIMMED) if shown else None
        kind = colour.split(": ", 1)
        score = category = None
        if kind[0] == "Score" and kind[1] in self.numeric_values:
            score = self.numeric_values[kind[1]][rows]
        elif kind[0] == "Group":
            source = self.group_values if self.group_values is not None else self.rows[self.group_column]
            category = np.array(["(none)" if source[r] is None else str(source[r]) for r in rows], dtype=object)
        elif colour.startswith(LEVEL_COLOUR):
            level = int(colour[len(LEVEL_COLOUR):])
            at = {b: self.ancestor(facet, b, level) for b in {int(labels[r]) for r in rows}}
            category = np.array([nodes[at[int(labels[r])]].name for r in rows], dtype=object)
        else:
            category = np.array([nodes[top_of[int(labels[r])]].name for r in rows], dtype=object)
        finite, row_tops = np.isfinite(xy).all(axis=1), self.row_tops(facet)
        tops = [t for t in self.tops[facet] if (finite & (row_tops == t)).any()]
        centres = [np.median(xy[finite & (row_tops == t)], axis=0) for t in tops]
        sizes = figures.circle_sizes([nodes[t].size for t in tops])
        circles = [(c[0], c[1], t, nodes[t].name, nodes[t].size, px) for c, t, px in zip(centres, tops, sizes)]
        return figures.topic_map(xy[rows], custom, category=category, score=score, score_name=kind[-1],
                                 opacity=opacity, circles=circles)


class ChangesView(ResultData):
    """What the last batch `clio-hf assign` added changed: each node's share of the new rows against its share before
    (from the hierarchy's `size_before`)."""

    def changes(self, facet: str) -> tuple[int, int, list[tuple[Node, float, float]]]:
        """(rows before, rows added, [(node, share before, share of the added rows)] largest shift first)."""
        nodes = self.trees.get(facet, {})
        if not nodes or all(n.size_before is None for n in nodes.values()):
            return 0, 0, []
        was = {n.id: n.size_before or 0 for n in nodes.values()}  # none before: a node `--rebuild-novel` made from this batch
        before = sum(was[t] for t in self.tops[facet])
        added = sum(nodes[t].size for t in self.tops[facet]) - before
        if before <= 0 or added <= 0:
            return before, added, []
        shifts = [(n, was[n.id] / before, (n.size - was[n.id]) / added) for n in nodes.values()]
        return before, added, sorted(shifts, key=lambda s: (-abs(s[2] - s[1]), s[0].id))

    def changes_html(self, facet: str, top: int = 10) -> str:
        before, added, shifts = self.changes(facet)
        if not shifts:
            return ""
        items = "".join(
            f'<li data-node="{n.id}"><a href="#" data-goto="{n.id}">'
            + " › ".join(esc(self.trees[facet][p].name) for p in self.path(facet, n.id))
            + f'</a> <span class="meta">{was:.1%} of the rows before → {now:.1%} of the new ones '
              f'({(now - was) * 100:+.1f} points; {n.size_before or 0:,} → {n.size:,} rows'
              f'{"; new" if n.size_before is None else ""})</span></li>'
            for n, was, now in shifts[:top])
        return (f'<div class="clio-changes" data-added="{added}"><b>What changed</b> <span class="meta">the last batch\'s '
                f"{added:,} rows against the {before:,} before it; largest shifts first (clio-hf diff tests them)</span>"
                f"<ol>{items}</ol></div>")


class ClioView(TreeView, DetailView, NodeSearch, MapView, ChangesView):
    """The whole viewer over one loaded result: each renderer is a class of its own over `ResultData`, usable alone
    (`TreeView(dataset)` loads the result and draws trees only). Every LLM-written string goes through `esc`."""


# ---- rows: a paged, filtered table, and search by meaning ------------------------------------------------------------
@dataclass(frozen=True)
class RowFilter:
    """Which of a node's rows the table shows: a language, a group, a numeric facet's range (None: any)."""

    language: str | None = None
    group: str | None = None
    score: str | None = None
    low: float | None = None
    high: float | None = None


class RowTable:
    """A node's rows, a page at a time. Filters are numpy masks over columns read once from the memory-mapped rows;
    only the page's rows are ever turned into Python objects, so a million rows page as fast as a hundred."""

    def __init__(self, data: ResultData):
        self.data = data
        self._categories: dict[str, tuple[np.ndarray, list[str]]] = {}

    def categories(self, column: str) -> tuple[np.ndarray, list[str]]:
        """(each row's index into the names, -1 for null; the names, most frequent first) of a text column."""
        if column not in self._categories:
            if column in self.data.rows.column_names:
                values = self.data.rows.data.column(column)
            else:  # the group column, when it is not a shown value
                values = pa.chunked_array([pa.array(self.data.group_values or [])])
            values = values.cast(pa.string())
            names = pc.unique(values).drop_null()
            codes = pc.index_in(values, value_set=names).fill_null(-1).to_numpy().astype(np.int64)
            order = np.argsort(-np.bincount(codes[codes >= 0], minlength=len(names)), kind="stable")
            rank = np.empty(len(order), np.int64)
            rank[order] = np.arange(len(order))
            codes = np.where(codes >= 0, rank[np.maximum(codes, 0)], -1)
            self._categories[column] = (codes, [names[int(i)].as_py() for i in order])
        return self._categories[column]

    def language_column(self) -> str | None:
        return "language" if "language" in self.data.value_cols else None

    def options(self) -> dict[str, list[str]]:
        """The filter choices: languages, groups and numeric facets present in the rows."""
        out = {"language": [], "group": [], "score": list(self.data.numeric_values)}
        if self.language_column():
            out["language"] = self.categories(self.language_column())[1]
        if self.data.group_column and (self.data.group_values is not None or self.data.group_column in self.data.value_cols):
            out["group"] = self.categories(self.data.group_column)[1]
        return out

    def matching(self, facet: str, node_id: int | None, f: RowFilter) -> np.ndarray:
        """Indices of the node's rows (every clustered row without a node) that pass the filter, in file order."""
        mask = self.data.rows_under(facet, node_id)
        for column, wanted in ((self.language_column(), f.language), (self.data.group_column, f.group)):
            if column and wanted not in (None, "", ANY):
                codes, names = self.categories(column)
                mask &= codes == (names.index(wanted) if wanted in names else -2)
        if f.score in self.data.numeric_values and (f.low is not None or f.high is not None):
            values = self.data.numeric_values[f.score]
            mask &= np.isfinite(values)
            if f.low is not None:
                mask &= values >= f.low
            if f.high is not None:
                mask &= values <= f.high
        return np.flatnonzero(mask)

    def page(self, facet: str, node_id: int | None, f: RowFilter, page: int) -> tuple[str, int]:
        """(the page's HTML table, the page shown: `page` clamped to the pages there are)."""
        rows = self.matching(facet, node_id, f)
        pages = max(1, -(-len(rows) // PAGE_ROWS))
        page = min(max(0, int(page or 0)), pages - 1)
        chosen = rows[page * PAGE_ROWS:(page + 1) * PAGE_ROWS]
        n = self.data.node(facet, node_id)
        where = f"under “{esc(n.name)}”" if n else "with a cluster"
        head = (f'<div class="meta" data-matching="{len(rows)}" data-page="{page}" data-pages="{pages}">'
                f"{len(rows):,} rows {where} match the filters · page {page + 1} of {pages}</div>")
        if not len(chosen):
            return f'<div class="clio-rows">{head}</div>', page
        group = [] if self.data.group_column in self.data.value_cols or self.data.group_values is None else [self.data.group_column]
        columns = self.data.value_cols + group
        records = self.data.rows.select(chosen.tolist()).to_list()
        nodes, clusters = self.data.trees[facet], self.data.clusters[facet]
        body = []
        for i, r in zip(chosen, records, strict=True):
            base = nodes.get(int(clusters[i]))
            cells = "".join(f"<td>{esc(r.get(c) if c in r else self.data.group_values[i])}</td>" for c in columns)
            link = f'<a href="#" data-goto="{base.id}">{esc(base.name)}</a>' if base else ""
            conv = ""
            conversation = r.get(L.CONVERSATION)
            if conversation:
                turns = "".join(f'<div class="turn"><b>{esc(t.get("role"))}</b> {esc((t.get("content") or "")[:CONVERSATION_CHARS])}</div>'
                                for t in conversation)
                conv = f"<details><summary>{len(conversation)} turns</summary>{turns}</details>"
            body.append(f'<tr data-row="{i}"><td class="num">{i}</td><td>{link}</td>{cells}<td>{conv}</td></tr>')
        header = "".join(f"<th>{esc(c)}</th>" for c in ["row", "base cluster", *columns, L.CONVERSATION])
        return f'<div class="clio-rows">{head}<table><tr>{header}</tr>{"".join(body)}</table></div>', page


class RowSearch:
    """Rows nearest a query by meaning, and rows holding its exact words.

    By meaning: the run's embedder encodes the query (`encode`, given by `clio-hf view`; None in a Space without one)
    and a compact faiss index of the facet's row embeddings finds the nearest: 8-bit scalar quantisation (a quarter of
    float32) up to `EXACT_INDEX_ROWS` rows, product quantisation above (`PQ_BYTES` bytes a row: 48 MB at a million
    rows). The index is built on first use by streaming the embedding column from the parquet files (never all in
    memory) and cached in `cache_dir` under a key of the files' names and sizes.
    """

    EXACT_INDEX_ROWS = 100_000
    PQ_BYTES = 48
    TRAIN_ROWS = 65_536  # the first rows with a vector train the quantiser
    BATCH_ROWS = 16_384

    def __init__(self, data: ResultData, encode=None, cache_dir: Path | None = None):
        self.data, self.encode, self.cache_dir = data, encode, cache_dir
        self._indexes: dict[str, object] = {}

    def off_because(self, facet: str) -> str | None:
        """Why search by meaning is off for this facet, or None when it is on."""
        if self.encode is None:
            return "no embedder here"
        try:
            import faiss  # noqa: F401
        except ImportError:
            return "faiss is not installed here"
        if L.embedding_column(facet, self.data.prefix) not in self.data.available:
            return f"the result has no {L.embedding_column(facet)} column"
        return None

    def _batches(self, column: str):
        """(row ids, unit vectors) of the rows that have one, a batch at a time, straight from the parquet files."""
        offset = 0
        for name in self.data.row_files():
            with fsspec.open(name, "rb") as handle:
                for batch in pq.ParquetFile(handle).iter_batches(columns=[column], batch_size=self.BATCH_ROWS):
                    vectors = batch.column(0)
                    present = np.flatnonzero(vectors.is_valid().to_numpy(zero_copy_only=False))
                    if len(present):
                        flat = vectors.take(pa.array(present)).flatten().to_numpy(zero_copy_only=False)
                        yield present + offset, np.ascontiguousarray(flat.reshape(len(present), -1), dtype=np.float32)
                    offset += batch.num_rows

    def _build(self, column: str):
        import faiss

        sample, seen = [], 0
        for _, vectors in self._batches(column):
            sample.append(vectors)
            seen += len(vectors)
            if seen >= self.TRAIN_ROWS:
                break
        if not sample:
            return None
        train = np.concatenate(sample)[: self.TRAIN_ROWS]
        dim = train.shape[1]
        if self.data.n_rows > self.EXACT_INDEX_ROWS and dim % self.PQ_BYTES == 0 and len(train) >= 256 * 39:
            inner = faiss.IndexPQ(dim, self.PQ_BYTES, 8, faiss.METRIC_INNER_PRODUCT)
        else:
            inner = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        inner.train(train)
        index = faiss.IndexIDMap(inner)
        for ids, vectors in self._batches(column):
            index.add_with_ids(vectors, ids.astype(np.int64))
        return index

    def _index(self, facet: str):
        import faiss

        if facet not in self._indexes:
            column = L.embedding_column(facet, self.data.prefix)
            path = self.cache_dir / f"{_files_key(self.data.row_files(), column)}.faiss" if self.cache_dir else None
            if path is not None and path.exists():
                self._indexes[facet] = faiss.read_index(str(path))
            else:
                self._indexes[facet] = index = self._build(column)
                if path is not None and index is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    faiss.write_index(index, str(path))
        return self._indexes[facet]

    def nearest(self, facet: str, query: str, k: int = ROW_HITS) -> list[int]:
        """Rows whose facet embedding lies nearest the query's, nearest first (rows under published nodes only)."""
        index = self._index(facet)
        if index is None or not (query or "").strip():
            return []
        vector = np.asarray(self.encode([query]), dtype=np.float32)
        vector /= np.maximum(np.linalg.norm(vector, axis=1, keepdims=True), 1e-12)
        if vector.shape[1] != index.d:
            raise ValueError(f"the query's embedder gives {vector.shape[1]}-d vectors, the result's "
                             f"{L.embedding_column(facet)} has {index.d}")
        clusters = self.data.clusters[facet]
        _, ids = index.search(vector, k * 4)  # room for rows under nodes this viewer does not show
        return [int(i) for i in ids[0] if i >= 0 and clusters[i] in self.data.trees[facet]][:k]

    def hits_html(self, facet: str, query: str, rows: list[int], how: str) -> str:
        """The rows a search found, each with its value and a link to its base cluster; `how` says which search ran."""
        if not (query or "").strip():
            return ""
        data = self.data
        values = data.rows.select_columns([facet]).select(rows)[facet] if facet in data.value_cols and rows else [""] * len(rows)
        items = []
        for r, value in zip(rows, values, strict=True):
            n = data.node(facet, int(data.clusters[facet][r]))
            link = " › ".join(esc(data.trees[facet][p].name) for p in data.path(facet, n.id)) if n else ""
            items.append(f'<li data-row="{r}"><a href="#" data-goto="{n.id if n else ""}">{link}</a> '
                         f'<span class="meta">row {r}</span><div class="sm">{esc(str(value or "")[:MAP_VALUE_CHARS])}</div></li>')
        listed = f"<ol>{''.join(items)}</ol>" if items else "<p>No row matches.</p>"
        return f'<div class="clio-row-hits" data-how="{esc(how)}"><b>Rows</b> <span class="meta">{esc(how)}</span>{listed}</div>'

    def words(self, facet: str, query: str, k: int = ROW_HITS) -> list[int]:
        """Rows whose facet value holds every word of the query (case-insensitive), in file order."""
        terms = (query or "").lower().split()
        if not terms or facet not in self.data.rows.column_names:
            return []
        values = self.data.rows.data.column(facet)
        mask = self.data.rows_under(facet, None)
        for term in terms:
            mask &= pc.match_substring(values, term, ignore_case=True).fill_null(False).to_numpy(zero_copy_only=False)
        return np.flatnonzero(mask)[:k].tolist()


def _files_key(files: list[str], column: str) -> str:
    """A cache key for an index of `column`: the files' names and sizes (a new result writes new shards)."""
    import hashlib

    sizes = []
    for name in files:
        fs, path = fsspec.core.url_to_fs(name)
        sizes.append([Path(path).name, fs.size(path)])
    return hashlib.sha256(json.dumps([column, sizes]).encode()).hexdigest()[:16]


CSS = """
.clio-tree ul { list-style: none; margin: 0; padding-left: 1.3em; }
.clio-tree ul.top { padding-left: 0; }
.clio-tree li.cn > ul.kids { display: none; }
.clio-tree li.cn.open > ul.kids { display: block; }
.clio-tree .row { padding: 4px 6px; border-radius: 6px; cursor: pointer; border-left: 3px solid transparent; }
.clio-tree .row:hover { background: var(--background-fill-secondary); }
.clio-tree .row.sel { border-left-color: var(--color-accent); background: var(--background-fill-secondary); }
.clio-tree .tog { display: inline-block; width: 1.5em; border: none; background: none; padding: 0; cursor: pointer;
  color: var(--body-text-color); transition: transform .1s; }
.clio-tree li.open > .row .tog { transform: rotate(90deg); }
.clio-tree .nm { font-weight: 600; }
.clio-tree .kp { margin-left: .6em; font-size: .8em; color: var(--body-text-color-subdued); }
.clio-tree .bar { display: inline-block; width: 60px; height: 6px; margin: 0 .6em; border-radius: 3px;
  background: var(--border-color-primary); vertical-align: middle; }
.clio-tree .bar > span { display: block; height: 100%; border-radius: 3px; background: var(--color-accent); }
.clio-tree .sm { margin-left: 1.5em; font-size: .85em; color: var(--body-text-color-subdued); }
.meta { font-size: .85em; color: var(--body-text-color-subdued); }
.withheld { color: #b45309; }
.clio-detail .crumbs { font-size: .85em; }
.clio-detail h3 { margin: .3em 0; }
.clio-detail .sample { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 6px 8px;
  margin: 6px 0; }
.clio-detail .rowid { font-size: .8em; color: var(--body-text-color-subdued); }
.clio-detail dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 0; }
.clio-detail dt { font-weight: 600; }
.clio-detail dd { margin: 0; }
.clio-detail .turn { white-space: pre-wrap; margin: 4px 0; }
.clio-hits ol { margin: .3em 0; }
.clio-row-hits ol, .clio-lasso ol, .clio-changes ol { margin: .3em 0; }
.clio-row-hits .sm { font-size: .85em; color: var(--body-text-color-subdued); }
.clio-rows table { border-collapse: collapse; width: 100%; font-size: .9em; }
.clio-rows th, .clio-rows td { border-bottom: 1px solid var(--border-color-primary); padding: 3px 6px; text-align: left;
  vertical-align: top; }
.clio-rows td.num { text-align: right; font-variant-numeric: tabular-nums; }
.clio-rows .turn { white-space: pre-wrap; margin: 4px 0; }
.clio-detail table { border-collapse: collapse; margin: .2em 0 .6em; }
.clio-detail th, .clio-detail td { padding: 1px 8px 1px 0; text-align: left; font-size: .9em; }
.clio-detail td.num { text-align: right; font-variant-numeric: tabular-nums; }
.clio-detail .gbar { display: block; height: 5px; margin: 1px 0; border-radius: 2px; min-width: 1px; }
.clio-detail .gbar.key { display: inline-block; width: 14px; }
.clio-detail .gbar.here { background: var(--color-accent); }
.clio-detail .gbar.all { background: var(--border-color-primary); }
.clio-detail .clio-time { display: flex; align-items: flex-end; gap: 1px; height: 60px; margin: .2em 0;
  border-bottom: 1px solid var(--border-color-primary); }
.clio-detail .tbar { flex: 1; height: 100%; display: flex; align-items: flex-end; }
.clio-detail .tbar > span { display: block; width: 100%; min-height: 1px; background: var(--color-accent); }
"""

# Expanding fetches one level of children from the server (kids_html); selecting a node asks Python for its
# detail panel and keeps the URL a deep link to it.
TREE_JS = """
const sync = () => {
  const tree = element.querySelector('.clio-tree');
  if (!tree || !tree.dataset.facet) return;
  const q = new URLSearchParams(window.location.search);
  q.set('facet', tree.dataset.facet);
  const sel = tree.querySelector('.row.sel');
  if (sel) { q.set('node', sel.parentElement.dataset.node); sel.scrollIntoView({block: 'nearest'}); }
  else q.delete('node');
  history.replaceState(history.state, '', '?' + q.toString());
};
watch('value', sync);
element.addEventListener('click', async (ev) => {
  const li = ev.target.closest('li.cn');
  const tree = element.querySelector('.clio-tree');
  if (!li || !tree) return;
  if (ev.target.closest('button.tog')) {
    if (li.dataset.busy) return;
    const ul = li.querySelector(':scope > ul.kids');
    if (ul) { li.classList.toggle('open'); return; }
    li.dataset.busy = '1';
    try {
      const kids = document.createElement('ul');
      kids.className = 'kids';
      kids.innerHTML = await server.kids_html({facet: tree.dataset.facet, node: Number(li.dataset.node)});
      li.appendChild(kids);
      li.classList.add('open');
    } finally { delete li.dataset.busy; }
    return;
  }
  tree.querySelectorAll('.row.sel').forEach((r) => r.classList.remove('sel'));
  li.querySelector(':scope > .row').classList.add('sel');
  sync();
  trigger('select', {node: Number(li.dataset.node)});
});
"""

# The map is a gr.Plot, which has no click event: this hook listens to the plotly figure's own click events and
# turns a click on a point (its base cluster) or on a cluster circle into a `select` of that node. Gradio may draw
# a new figure into a new element when the facet or colour changes, so the hook re-attaches whenever the DOM does.
MAP_JS = """
const onClick = (ev) => {
  const p = ev && ev.points && ev.points[0];
  if (!p || p.customdata == null) return;
  const node = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
  trigger('select', {node: Number(node)});
};
// A box or lasso selection (the map's drag mode is lasso) lists the rows it caught: customdata[3] is a point's row.
const onSelected = (ev) => {
  const rows = ((ev && ev.points) || []).map((p) => Array.isArray(p.customdata) ? p.customdata[3] : null)
    .filter((r) => Number.isInteger(r));
  if (rows.length) trigger('select', {rows: rows});
};
const attach = () => {
  const gd = document.querySelector('#clio-map .js-plotly-plot');
  if (!gd || typeof gd.on !== 'function') return;
  if (gd._ev && gd._ev.listeners('plotly_click').includes(onClick)) return;
  gd.on('plotly_click', onClick);
  gd.on('plotly_selected', onSelected);
  gd.dataset.clioHooked = '1';
};
new MutationObserver(attach).observe(document.body, {childList: true, subtree: true});
attach();
"""

GOTO_JS = """
element.addEventListener('click', (ev) => {
  const a = ev.target.closest('[data-goto]');
  if (!a) return;
  ev.preventDefault();
  trigger('select', {node: Number(a.dataset.goto)});
});
"""


def build_demo(dataset: str, show_withheld: bool = False, *, encode=None, search_cache: Path | None = None,
               allow_export: bool = False) -> gr.Blocks:
    """The viewer. `encode` (texts -> vectors, the run's embedder) turns on search by meaning, with its faiss index
    cached in `search_cache`; `allow_export` offers the selected node's rows as a parquet download (a local
    `clio-hf view` only: a Space shows, it does not hand out files)."""
    view = ClioView(dataset, show_withheld)
    table = RowTable(view)
    finder = RowSearch(view, encode, search_cache)
    options = table.options()
    default = view.facets[0] if view.facets else None
    models = " · ".join(esc(f"{k}: {view.run[k]}") for k in ("llm", "embedder") if view.run.get(k))

    def kids_html(ref: dict) -> str:  # gradio hands a server function all its JS arguments as one value
        return view.kids_html(str(ref.get("facet")), ref.get("node"))

    def bound(text) -> float | None:
        try:
            return float(text)
        except (TypeError, ValueError):  # empty or not a number: no bound
            return None

    def row_filter(language, group, score, low, high) -> RowFilter:
        return RowFilter(language or None, group or None, score or None, bound(low), bound(high))

    def rows_page(facet, node, language, group, score, low, high, page=0):
        if facet not in view.trees:
            return "", 0
        return table.page(facet, node, row_filter(language, group, score, low, high), page)

    def on_facet(facet: str, colour: str):
        colour = colour if colour in view.colour_options(facet) else TOP_COLOUR
        return (view.tree_html(facet), view.detail_html(facet, None), view.treemap(facet), "", "",
                view.scatter(facet, colour), view.map_caption(facet), None,
                gr.Dropdown(choices=view.colour_options(facet), value=colour), view.changes_html(facet))

    def on_colour(facet: str, colour: str, node):
        return view.scatter(facet, colour, node)

    def on_highlight(facet: str, colour: str, node):
        # only a selection redraws the map: a redraw under the pointer loses its hover, and a new facet draws its own
        return gr.skip() if node is None else view.scatter(facet, colour, node)

    def on_map(facet: str, evt: gr.EventData):
        """A click on the map opens a node; a lasso lists the rows it caught (in the hits area)."""
        rows = getattr(evt, "rows", None)
        if rows:
            return gr.skip(), gr.skip(), gr.skip(), view.selection_html(facet, rows)
        return (*on_goto(facet, evt), gr.skip())

    def on_tree_select(facet: str, evt: gr.EventData):
        n = view.node(facet, getattr(evt, "node", None))
        return view.detail_html(facet, n.id if n else None), n.id if n else None

    def on_goto(facet: str, evt: gr.EventData):
        n = view.node(facet, getattr(evt, "node", None))
        if n is None:
            return gr.skip(), gr.skip(), gr.skip()
        return view.open_tree(facet, [n.id], n.id), view.detail_html(facet, n.id), n.id

    def on_search(facet: str, query: str):
        hits = view.search(facet, query)
        first = hits[0] if hits else None
        off = finder.off_because(facet)
        if off is None:
            try:
                rows, how = finder.nearest(facet, query), "nearest by meaning"
            except Exception as error:  # say why on the page and still answer with words
                off = f"{type(error).__name__}: {error}"
        if off is not None:
            rows, how = finder.words(facet, query), f"holding every word (search by meaning is off: {off})"
        return (view.open_tree(facet, hits[:OPEN_HITS], first), view.detail_html(facet, first),
                view.hits_html(facet, query, hits) + finder.hits_html(facet, query, rows, how), first)

    def on_load(request: gr.Request):
        params = request.query_params if request else {}
        facet, node = params.get("facet"), params.get("node")
        if facet not in view.trees:
            if node is None:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            facet = default
        n = view.node(facet, node)
        tree = view.open_tree(facet, [n.id], n.id) if n else view.tree_html(facet)
        return (facet, tree, view.detail_html(facet, node), view.treemap(facet), view.scatter(facet), view.map_caption(facet),
                n.id if n else None)

    def on_export(facet: str, node):
        """The selected node's rows, every column, as `ClioResult.select_node` gives them, in a parquet file."""
        import tempfile

        if facet not in view.trees or view.node(facet, node) is None:
            raise gr.Error("Select a cluster first: the download holds its rows.")
        rows = view.all_columns().select(np.flatnonzero(view.rows_under(facet, node)).tolist())
        out = Path(tempfile.mkdtemp(prefix="clio-export-")) / f"{facet}-node-{node}.parquet"
        rows.to_parquet(str(out))
        return gr.File(value=str(out), visible=True)

    def nodes(facet: str, parent_id: int = -1) -> list[dict]:
        """Top nodes of a facet (parent_id -1) or the children of one node, largest first."""
        if facet not in view.trees:
            return []
        parent = view.node(facet, parent_id)
        ids = parent.kids if parent else view.tops[facet] if parent_id < 0 else []
        return [view.node_dict(facet, view.trees[facet][i]) for i in ids]

    def search(facet: str, query: str) -> list[dict]:
        """Nodes whose name and summary contain every word of the query, with their path from the top."""
        return [dict(view.node_dict(facet, view.trees[facet][h]), path=view.path(facet, h))
                for h in view.search(facet, query)]

    shown = Path(dataset).name if Path(dataset).is_dir() else dataset
    meaning = finder.off_because(default) if default else "no clustered facet"
    search_label = ("Search clusters, and rows by meaning" if meaning is None
                    else "Search cluster names and summaries, and rows by their words")
    with gr.Blocks(title=f"Clio · {shown}", analytics_enabled=False) as demo:
        gr.HTML(f"<h2 style='margin:0'>Clio: {esc(shown)}</h2><div class='meta'>{view.n_rows:,} rows · "
                f"{len(view.facets)} clustered facet(s){' · ' + models if models else ''}</div>")
        # the selected node, hidden; not a gr.State, which opens a heartbeat stream a page never finishes loading
        selected = gr.Number(None, visible=False, precision=0)
        with gr.Row(equal_height=True):
            facet = gr.Dropdown(view.facets, value=default, label="Facet", scale=1, elem_id="clio-facet")
            query = gr.Textbox(label=search_label, placeholder="e.g. translate", scale=3,
                               submit_btn="Search", elem_id="clio-search")
        if meaning is not None:
            gr.HTML(f'<div class="meta" id="clio-search-mode">Search by meaning is off ({esc(meaning)}): '
                    "cluster names and summaries, and rows holding every word.</div>")
        hits = gr.HTML("", js_on_load=GOTO_JS, css_template=CSS, elem_id="clio-hits")
        changes = gr.HTML(view.changes_html(default) if default else "", js_on_load=GOTO_JS, css_template=CSS,
                          elem_id="clio-changes")
        with gr.Row():
            with gr.Column(scale=3):
                tree = gr.HTML(view.tree_html(default) if default else "", js_on_load=TREE_JS, css_template=CSS,
                               server_functions=[kids_html], elem_id="clio-tree", max_height=720)
            with gr.Column(scale=2):
                detail = gr.HTML(view.detail_html(default, None), js_on_load=GOTO_JS, css_template=CSS,
                                 elem_id="clio-detail", max_height=720)
        with gr.Row(equal_height=True):
            colour = gr.Dropdown(view.colour_options(default), value=TOP_COLOUR, label="Colour the map by", scale=1,
                                 elem_id="clio-colour")
            map_note = gr.HTML(view.map_caption(default) if default else "", js_on_load=MAP_JS, elem_id="clio-map-note",
                               scale=3)
        scatter = gr.Plot(view.scatter(default) if default else None, label="Topic map", elem_id="clio-map")
        with gr.Accordion("Rows of the selected cluster", open=True, elem_id="clio-rows-panel"):
            with gr.Row(equal_height=True):
                language = gr.Dropdown([ANY, *options["language"]], value=ANY, label="Language", scale=1,
                                       visible=bool(options["language"]), elem_id="clio-rows-language")
                group = gr.Dropdown([ANY, *options["group"]], value=ANY, label=f"Group: {view.group_column}", scale=1,
                                    visible=bool(options["group"]), elem_id="clio-rows-group")
                score = gr.Dropdown([ANY, *options["score"]], value=ANY, label="Numeric facet", scale=1,
                                    visible=bool(options["score"]), elem_id="clio-rows-score")
                # text boxes, since a gr.Number cannot be left empty (it sends 0)
                low = gr.Textbox("", label="at least", placeholder="any", scale=1, visible=bool(options["score"]),
                                 elem_id="clio-rows-low")
                high = gr.Textbox("", label="at most", placeholder="any", scale=1, visible=bool(options["score"]),
                                  elem_id="clio-rows-high")
            with gr.Row():
                previous = gr.Button("◀ Previous", size="sm", scale=0, min_width=110, elem_id="clio-rows-prev")
                following = gr.Button("Next ▶", size="sm", scale=0, min_width=110, elem_id="clio-rows-next")
                page = gr.Number(0, visible=False, precision=0)
                if allow_export:  # written on request: a big node's parquet is not made on every click in the tree
                    export = gr.Button("Export the cluster's rows (parquet)", size="sm", scale=0, min_width=260,
                                       elem_id="clio-rows-export")
            if allow_export:
                exported = gr.File(None, label="Exported rows", visible=False, elem_id="clio-rows-file")
            first_rows, _ = rows_page(default, None, ANY, ANY, ANY, "", "") if default else ("", 0)
            rows = gr.HTML(first_rows, js_on_load=GOTO_JS, css_template=CSS, elem_id="clio-rows", max_height=640)
        plot = gr.Plot(view.treemap(default) if default else None, label="Overview", elem_id="clio-treemap")

        private = {"api_visibility": "private"}  # UI plumbing; the API is nodes and search
        filters = [facet, selected, language, group, score, low, high]
        first_page = {"fn": rows_page, "inputs": filters, "outputs": [rows, page], **private}
        highlight = {"fn": on_highlight, "inputs": [facet, colour, selected], "outputs": scatter, **private}

        def then_follow(event):  # a new selection: the row table's first page, and the map dims the other points
            event.then(**first_page).then(**highlight)

        then_follow(facet.input(on_facet, [facet, colour], [tree, detail, plot, hits, query, scatter, map_note, selected, colour,
                                                            changes], **private))
        colour.input(on_colour, [facet, colour, selected], scatter, **private)
        then_follow(map_note.select(on_map, facet, [tree, detail, selected, hits], **private))
        for source in (hits, changes, detail, rows):
            then_follow(source.select(on_goto, facet, [tree, detail, selected], **private))
        then_follow(tree.select(on_tree_select, facet, [detail, selected], **private))
        # after a search the map always redraws: with no node hit, the previous selection's dimming must go
        query.submit(on_search, [facet, query], [tree, detail, hits, selected], **private).then(**first_page).then(
            **{**highlight, "fn": on_colour})
        for control in (language, group, score):
            control.change(**first_page)
        for box in (low, high):  # on Enter or leaving the box, not on every keystroke
            box.submit(**first_page)
            box.blur(**first_page)
        previous.click(lambda *a: rows_page(*a[:-1], page=(a[-1] or 0) - 1), [*filters, page], [rows, page], **private)
        following.click(lambda *a: rows_page(*a[:-1], page=(a[-1] or 0) + 1), [*filters, page], [rows, page], **private)
        if allow_export:
            export.click(on_export, [facet, selected], exported, **private)
        then_follow(demo.load(on_load, None, [facet, tree, detail, plot, scatter, map_note, selected], **private))
        gr.api(nodes, api_name="nodes")
        gr.api(search, api_name="search")
    return demo


def space_encoder(model_id: str | None):
    """A Space's query encoder: the run's embedder through sentence-transformers when that and faiss are installed and
    the model loads (a Hub model id); else None, and search falls back to words."""
    try:
        import faiss  # noqa: F401
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(model_id).encode if model_id else None
    except Exception:  # any missing piece means no search by meaning, said on the page
        return None


def dataset_name() -> str:
    if os.environ.get("CLIO_DATASET"):
        return os.environ["CLIO_DATASET"]
    if CONFIG_FILE.exists():
        return json.loads(CONFIG_FILE.read_text())["dataset"]
    raise SystemExit("Set CLIO_DATASET to a clio_hf result (Hub dataset repo id or local folder).")


if __name__ == "__main__":
    name = dataset_name()
    build_demo(name, encode=space_encoder(_run_info(name).get("embedder"))).launch()
