#!/usr/bin/env python
"""How the Space's topic map scales: server time and payload per map, and (with --browser) draw, hover and click times.

    python scripts/bench_map.py                 # 100,000 rows, server side
    python scripts/bench_map.py --browser       # also headless chromium: load until drawn, hover, click -> tree

The result is bench_space.py's synthetic one (a 1,000-node `request` tree over 100k rows) plus what this issue adds:
`request_x`/`request_y` (a blob per base cluster, blobs of one top-level cluster near each other) and `group_counts`
by `language`. The app draws at most `MAP_POINTS` rows (a seeded sample stratified by top-level cluster) plus one
circle per top-level cluster computed over all rows, so the payload does not grow with the dataset.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _bench_space():
    spec = importlib.util.spec_from_file_location("bench_space", ROOT / "scripts" / "bench_space.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_map_result(path: Path, rows: int, seed: int) -> None:
    import datasets
    import numpy as np

    from clio_hf.groups import count_groups
    from clio_hf.result import ClioResult

    _bench_space().write_result(path, n_rows=rows, n_top=40, per_top=4, per_mid=5, dim=8, seed=seed)
    result = ClioResult.load(path)
    tree = result.hierarchy.to_list()
    parent = {n["node_id"]: n["parent_id"] for n in tree}
    top = {}
    for node_id in parent:
        t = node_id
        while parent[t] is not None:
            t = parent[t]
        top[node_id] = t
    rng = np.random.default_rng(seed)
    tops = sorted({t for t in top.values()})
    top_centre = {t: 20 * np.array([np.cos(a), np.sin(a)]) * rng.uniform(0.3, 1) for t, a in
                  zip(tops, np.linspace(0, 2 * np.pi, len(tops), endpoint=False))}
    base_centre = {n: top_centre[top[n]] + rng.normal(scale=2.0, size=2) for n in parent}
    labels = np.asarray(result.data["request_cluster"])
    xy = np.stack([base_centre[int(b)] for b in labels]) + rng.normal(scale=0.5, size=(len(labels), 2))
    data = result.data.add_column("request_x", xy[:, 0].astype(np.float32).tolist(), feature=datasets.Value("float32"))
    data = data.add_column("request_y", xy[:, 1].astype(np.float32).tolist(), feature=datasets.Value("float32"))
    hierarchy = count_groups(result.hierarchy, data, group_column="language")
    ClioResult(data=data, hierarchy=hierarchy, info={**result.info, "group_column": "language"}).save_to_disk(path)


def measure(path: Path, browser: bool) -> dict:
    from clio_hf.space import _load_app

    app = _load_app()
    out = {}
    start = time.perf_counter()
    view = app.ClioView(str(path))
    out["load view (s)"] = time.perf_counter() - start
    for colour in view.colour_options():
        start = time.perf_counter()
        fig = view.scatter("request", colour)
        out[f"map: {colour} (s)"] = time.perf_counter() - start
        out[f"map: {colour} (KiB JSON)"] = len(fig.to_json()) / 1024
    out["points drawn"] = len(view.map_sample("request"))
    out["rows with a point"] = int(view.original.sum())
    if browser:
        out.update(measure_browser(path, app))
    return out


def measure_browser(path: Path, app) -> dict:
    import socket

    from playwright.sync_api import sync_playwright

    from clio_hf.space import launch_view

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch_view(str(path), port=port, block=False)
    out = {}
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            start = time.perf_counter()
            page.goto(demo.local_url)
            page.wait_for_selector("#clio-map .js-plotly-plot[data-clio-hooked]")
            page.wait_for_function("() => document.querySelector('#clio-map .js-plotly-plot')._fullData.length > 1")
            out["browser: load until the map is drawn (s)"] = time.perf_counter() - start
            page.locator("#clio-map").scroll_into_view_if_needed()
            circle = page.evaluate("""() => { const gd = document.querySelector('#clio-map .js-plotly-plot');
              const L = gd._fullLayout, box = gd.getBoundingClientRect(), t = gd._fullData.find(t => t.name === 'clusters');
              return [box.left + L._size.l + L.xaxis.d2p(t.x[0]), box.top + L._size.t + L.yaxis.d2p(t.y[0]), t.customdata[0][0]]; }""")
            start = time.perf_counter()
            page.mouse.move(circle[0], circle[1])
            # the label of whatever is nearest: at 100k a drawn point can sit on the circle's centre
            page.wait_for_function("() => document.querySelector('#clio-map .hoverlayer').textContent.trim().length > 0")
            out["browser: hover label (s)"] = time.perf_counter() - start
            start = time.perf_counter()
            page.mouse.click(circle[0], circle[1])
            page.wait_for_selector(".clio-detail[data-node]")  # the circle's cluster, or the point drawn over it
            out["browser: click until the node's detail is shown (s)"] = time.perf_counter() - start
            chromium.close()
    finally:
        demo.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--workdir", help="keep the synthetic result here (default: a temp folder)")
    args = parser.parse_args()
    import datasets

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-map-"))
    datasets.config.HF_DATASETS_CACHE = str(work / "hf-cache")  # a fresh cache: no stale tables of an older result
    path = work / f"map-{args.rows}"
    start = time.perf_counter()
    write_map_result(path, args.rows, args.seed)
    print(f"synthetic result: {args.rows:,} rows, written in {time.perf_counter() - start:.1f} s ({path})")
    results = measure(path, args.browser)
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value:,.2f}" if isinstance(value, float) else f"{key:<{width}}  {value:,}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
