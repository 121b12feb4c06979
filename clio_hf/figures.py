"""The drawings of a result: the treemap, the topic map and the trends chart, as plotly figures.

plotly and numpy only, so the Space app runs it without clio_hf: `clio-hf deploy-space` uploads this file beside
`app.py`, and `ClioResult.visualize_*` draws with the same functions, so a notebook shows what the Space shows.
Every label is HTML-escaped (plotly renders some markup in labels, and names are LLM-written).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
           "#bab0ac", "#1f77b4", "#2ca02c"]
LABEL_CHARS = 60
HOVER = "<b>%{customdata[1]}</b><br>%{customdata[2]}<extra></extra>"


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def treemap(ids: Sequence[int], parents: Sequence[int | None], names: Sequence[str], sizes: Sequence[int],
            summaries: Sequence[str], *, height: int = 460) -> go.Figure:
    """One facet's tree as nested rectangles sized by rows, three levels deep at a time."""
    fig = go.Figure(go.Treemap(
        ids=[str(i) for i in ids],
        parents=["" if p is None else str(p) for p in parents],
        labels=[esc(n) for n in names],
        values=list(sizes),
        customdata=[esc((s or "")[:200]) for s in summaries],
        branchvalues="total",
        maxdepth=3,
        hovertemplate="<b>%{label}</b><br>%{value} rows<br>%{customdata}<extra></extra>",
    ))
    fig.update_layout(margin=dict(t=10, l=0, r=0, b=0), height=height)
    return fig


def topic_map(xy: np.ndarray, custom: list[list], *, category: np.ndarray | None = None, score: np.ndarray | None = None,
              score_name: str = "", opacity: np.ndarray | None = None, circles: Sequence[tuple] = (),
              height: int = 520) -> go.Figure:
    """Points on the map, one trace per category (largest first) or one coloured by `score`.

    Args:
        xy: (n, 2) positions of the points drawn.
        custom: per point [node id, path text, value text, row]; hover shows the path and the value.
        category: per point a category name (top-level cluster, tree level, group); ignored with `score`.
        score: per point a number, drawn on a colour scale named `score_name`.
        opacity: per point, e.g. dimmed outside a selected node (default 0.75 everywhere).
        circles: (x, y, node id, name, rows, size in pixels) per top-level cluster, drawn over the points.
    """
    fig = go.Figure()
    fig.update_layout(margin=dict(t=10, l=0, r=0, b=0), height=height, xaxis=dict(visible=False),
                      yaxis=dict(visible=False), hovermode="closest", dragmode="lasso",
                      legend=dict(itemsizing="constant", orientation="h", yanchor="top", y=-0.01))
    opacity = np.full(len(xy), 0.75) if opacity is None else np.asarray(opacity, dtype=float)
    if score is not None:
        fig.add_trace(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", customdata=custom, name=esc(score_name),
                                   marker=dict(size=5, color=score, colorscale="Viridis", showscale=True,
                                               opacity=opacity.tolist(), colorbar=dict(title=esc(score_name))),
                                   hovertemplate=HOVER))
    elif len(xy):
        category = np.asarray(category if category is not None else [""] * len(xy), dtype=object)
        names, counts = np.unique(category, return_counts=True)
        for k, name in enumerate(names[np.argsort(-counts, kind="stable")]):
            idx = np.flatnonzero(category == name)
            fig.add_trace(go.Scattergl(
                x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=esc(str(name)[:LABEL_CHARS]),
                customdata=[custom[i] for i in idx], hovertemplate=HOVER,
                marker=dict(size=5, opacity=opacity[idx].tolist(), color=PALETTE[k % len(PALETTE)])))
    if circles:
        fig.add_trace(go.Scatter(
            x=[c[0] for c in circles], y=[c[1] for c in circles], mode="markers+text", name="clusters",
            text=[esc(c[3][:40]) for c in circles], textposition="top center",
            customdata=[[c[2], esc(c[3]), f"{c[4]:,} rows"] for c in circles], hovertemplate=HOVER,
            marker=dict(size=[c[5] for c in circles], color="rgba(0,0,0,0.08)", line=dict(width=2, color="#333")),
            showlegend=False))
    return fig


def circle_sizes(rows: Sequence[int]) -> list[float]:
    """Marker sizes of the top-level circles: area by rows, the largest 44 px."""
    biggest = max(rows, default=1) or 1
    return [14 + 30 * (r / biggest) ** 0.5 for r in rows]


def trends_chart(periods: Sequence[str], shares: dict[str, Sequence[float]], *, period: str = "period",
                 height: int = 420) -> go.Figure:
    """Each named node's share of every period's rows, one line per node."""
    fig = go.Figure()
    for k, (name, values) in enumerate(shares.items()):
        fig.add_trace(go.Scatter(x=list(periods), y=list(values), mode="lines+markers", name=esc(name[:LABEL_CHARS]),
                                 line=dict(color=PALETTE[k % len(PALETTE)]),
                                 hovertemplate="%{x}: %{y:.1%}<extra>" + esc(name[:LABEL_CHARS]) + "</extra>"))
    fig.update_layout(margin=dict(t=10, l=0, r=0, b=0), height=height, yaxis=dict(tickformat=".0%", title="share of rows"),
                      xaxis=dict(title=esc(period)), legend=dict(orientation="h", yanchor="top", y=-0.15))
    return fig
