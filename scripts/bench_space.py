#!/usr/bin/env python
"""Time to first render and peak memory of the Space app (spaces_app/app.py) on a big synthetic result.

    python scripts/bench_space.py                  # 100,000 rows, 1,000 nodes, server side only
    python scripts/bench_space.py --browser        # also: serve it; headless chromium opens it 5 times

It writes a synthetic result (the real layout, through `ClioResult.save_to_disk`: conversations, a 384-d embedding
column, a three-level `request` tree of 40 + 160 + 800 nodes, a numeric facet with per-node means), then measures each
case in a fresh Python process, so that imports, the `datasets` cache and peak RSS are those of a new Space:

- cold: an empty `datasets` cache (a Space's first start: the parquet shards are converted to Arrow first);
- warm: the cache the cold run filled (a restart on the same disk, or `clio-hf view` a second time).

"first tree" is `build_demo` (loading the result, the first tree HTML, the treemap and the Blocks) after the app
module is imported; "import" is the app module's import (gradio, datasets, plotly), paid once per process. Peak RSS
is the measured process's own high-water mark (VmHWM), not chromium's. Then the row table (issue 20): a page of the
biggest node, a far page of all rows, a filtered page; and the row search: its faiss index (SQ8, built by the cold
process and read by the warm one from beside the result), a first query (which loads MiniLM), a next query, and a
search by words. Targets: first tree < 3 s, a row page and a next query < 2 s, RSS < 1.5 GiB (the index included).
With --browser: from `page.goto` until the top nodes are visible, until the treemap is drawn, and from a click on
a top node's toggle until its children are shown (Debian chromium at /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "spaces_app" / "app.py"
CHROMIUM = "/usr/bin/chromium"
sys.path.insert(0, str(ROOT))  # clio_hf from this checkout, installed or not
TARGET_FIRST_TREE_S, TARGET_RSS_MIB = 3.0, 1536  # issue 20: 1.5 GiB with the row search index
TARGET_ROWS_S = 2.0  # a row page and a warm search
BROWSER_LOADS = 5

VERBS = ["Translate", "Debug", "Summarise", "Explain", "Write", "Plan", "Review", "Optimise", "Design", "Compare"]
OBJECTS = ["legal contracts", "Python scripts", "SQL queries", "wedding speeches", "marketing emails",
           "React components", "workout routines", "research papers", "tax questions", "travel itineraries", "cover letters",
           "unit tests", "recipes", "poems", "job interviews", "Kubernetes manifests", "budget spreadsheets",
           "song lyrics", "lesson plans", "API designs"]
QUALIFIERS = ["into Basque", "for beginners", "step by step", "for a small business", "in plain English",
              "with examples", "for a school project", "under a deadline", "for a startup", "in French"]
LANGUAGES = ["English", "French", "German", "Spanish", "Basque", "Chinese", "Portuguese", "Japanese"]


# ---- the synthetic result ----------------------------------------------------------------------------------------
def write_result(path: Path, *, n_rows: int, n_top: int, per_top: int, per_mid: int, dim: int, seed: int) -> dict:
    """Write a result folder; returns {"nodes": ..., "rows": ..., "bytes": ..., "seconds": ...}."""
    import datasets
    import numpy as np
    import pyarrow as pa

    from clio_hf.result import ClioResult

    start = time.perf_counter()
    rng, prng = np.random.default_rng(seed), random.Random(seed)
    n_mid, n_base = n_top * per_top, n_top * per_top * per_mid
    # base cluster sizes: Zipf-like, largest first (the contract numbers base clusters by size)
    weights = 1.0 / np.arange(1, n_base + 1) ** 0.8
    assign = rng.choice(n_base, size=n_rows, p=weights / weights.sum())
    sizes = np.bincount(assign, minlength=n_base)
    order = np.argsort(-sizes, kind="stable")
    renumber = np.empty(n_base, np.int64)
    renumber[order] = np.arange(n_base)
    assign, sizes = renumber[assign], sizes[order]
    duplicate_of = np.full(n_rows, -1, np.int64)
    dups = rng.choice(np.arange(1000, n_rows), size=n_rows // 50, replace=False)
    duplicate_of[dups] = dups - 1000
    assign[dups] = assign[dups - 1000]
    concerning = rng.choice([1, 2, 3, 4, 5], size=n_rows, p=[0.6, 0.2, 0.1, 0.06, 0.04])

    # the tree: base k goes to a shuffled mid, mids to tops; ids: base 0..n_base-1, then mids, then tops
    base_parent = n_base + np.array(prng.sample(range(n_mid), n_mid) * per_mid)[:n_base]
    mid_parent = n_base + n_mid + np.arange(n_mid) % n_top
    names = [f"{prng.choice(VERBS)} {prng.choice(OBJECTS)} {prng.choice(QUALIFIERS)}" for _ in range(n_base)]
    names += [f"{prng.choice(VERBS)} and {prng.choice(VERBS).lower()} {prng.choice(OBJECTS)}" for _ in range(n_mid)]
    names += [f"{o.capitalize()} and related help #{i}" for i, o in enumerate(prng.choices(OBJECTS, k=n_top))]
    parent = np.concatenate([base_parent, mid_parent, np.full(n_top, -1)])
    size = np.zeros(n_base + n_mid + n_top, np.int64)
    csum = np.zeros_like(size, dtype=np.float64)
    cnum = np.zeros_like(size)
    np.add.at(size, assign, 1)
    np.add.at(csum, assign, concerning)
    np.add.at(cnum, assign, 1)
    for lo, hi in ((0, n_base), (n_base, n_base + n_mid)):  # roll sizes and sums up one level at a time
        np.add.at(size, parent[lo:hi], size[lo:hi])
        np.add.at(csum, parent[lo:hi], csum[lo:hi])
        np.add.at(cnum, parent[lo:hi], cnum[lo:hi])
    level = np.repeat([0, 1, 2], [n_base, n_mid, n_top])
    hierarchy = datasets.Dataset.from_dict({
        "facet": ["request"] * len(size),
        "node_id": np.arange(len(size)),
        "level": level,
        "parent_id": [None if p < 0 else int(p) for p in parent],
        "name": names,
        "summary": [f"Conversations where the user asks to {n[0].lower()}{n[1:]}; {s:,} in this sample."
                    for n, s in zip(names, size, strict=True)],
        "name_source": ["llm"] * len(size),
        "size": size,
        "concerning_mean": np.where(cnum > 0, csum / np.maximum(cnum, 1), np.nan),
    }, features=datasets.Features({
        "facet": datasets.Value("string"), "node_id": datasets.Value("int64"), "level": datasets.Value("int64"),
        "parent_id": datasets.Value("int64"), "name": datasets.Value("string"), "summary": datasets.Value("string"),
        "name_source": datasets.Value("string"), "size": datasets.Value("int64"),
        "concerning_mean": datasets.Value("float64")}))

    filler = ("I have been working on this for a while and would appreciate a careful, detailed answer with the "
              "reasoning spelled out. ") * 3
    user = [f"Hello! Could you {names[a][0].lower()}{names[a][1:]}? {filler}" for a in assign]
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    turns = pa.StructArray.from_arrays(
        [pa.array(["user", "assistant"] * n_rows),
         pa.array([t for u in user for t in (u, "Sure, here is a detailed reply. " + filler)])],
        fields=list(message))
    conversation = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n_rows + 1, 2, dtype=np.int32)), turns)
    emb = rng.standard_normal((n_rows, dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    table = pa.table({
        "id": pa.array([f"conv-{i:06d}" for i in range(n_rows)]),
        "conversation": conversation,
        "duplicate_of": pa.array(duplicate_of),
        "language": pa.array([LANGUAGES[i] for i in rng.integers(0, len(LANGUAGES), n_rows)]),
        "concerning": pa.array(concerning.astype(np.int64)),
        "request": pa.array([f"The user asks to {names[a][0].lower()}{names[a][1:]}." for a in assign]),
        "request_cluster": pa.array(assign.astype(np.int64)),
        "request_embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), dim),
    })
    info = {
        "clio_hf_version": "bench", "llm": "synthetic", "embedder": "synthetic", "source": "bench_space",
        "facets": [{"name": "request", "question": "What is the user's overall request?", "numeric": None},
                   {"name": "language", "question": "What languages?", "numeric": None},
                   {"name": "concerning", "question": "How concerning (1-5)?", "numeric": [1, 5]}],
        "seed": seed,
    }
    ClioResult(data=datasets.Dataset(table), hierarchy=hierarchy, info=info).save_to_disk(path)
    nbytes = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {"rows": n_rows, "nodes": len(size), "bytes": nbytes, "seconds": time.perf_counter() - start}


def peak_rss_mib() -> float:
    """This process's RSS high-water mark. VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec, so a child
    started from a big parent would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB there too on most systems


# ---- one measured case, in a fresh process ------------------------------------------------------------------------
def child(dataset: str, browser: bool) -> dict:
    t0 = time.perf_counter()
    spec = importlib.util.spec_from_file_location("clio_space_app", APP)
    app = importlib.util.module_from_spec(spec)
    sys.modules["clio_space_app"] = app
    spec.loader.exec_module(app)
    t_import = time.perf_counter()

    marks: dict[str, float] = {}
    views = []

    class TimedView(app.ClioView):  # records when loading ends and when the first tree HTML is ready
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            marks.setdefault("view", time.perf_counter())
            views.append(self)

        def tree_html(self, *a, **k):
            html = super().tree_html(*a, **k)
            marks.setdefault("tree", time.perf_counter())
            return html

    app.ClioView = TimedView
    from clio_hf.embed import load_embedder

    embedder = []  # the query encoder, loaded on the first search as `clio-hf view` does

    def encode(texts):
        if not embedder:
            embedder.append(load_embedder("minilm-l6"))
        return embedder[0].encode(list(texts))

    index_dir = Path(dataset).parent / "search-index"  # kept between the cold and the warm process, as beside a result
    demo = app.build_demo(dataset, encode=encode, search_cache=index_dir, allow_export=True)
    t_built = time.perf_counter()
    view = views[0]
    facet = view.facets[0]
    top = view.tops[facet][0]
    deep = max(view.trees[facet].values(), key=lambda n: (n.level == 0, n.size)).id
    ops = {}
    for name, fn in (("expand biggest top", lambda: view.kids_html(facet, top)),
                     ("detail + samples", lambda: view.detail_html(facet, top)),
                     ("search 'legal'", lambda: view.hits_html(facet, "legal", view.search(facet, "legal"))),
                     ("deep link (open path)", lambda: view.open_tree(facet, [deep], deep)),
                     ("treemap figure", lambda: view.treemap(facet))):
        t = time.perf_counter()
        fn()
        ops[name] = time.perf_counter() - t
    rss_before_rows = peak_rss_mib()
    table, finder = app.RowTable(view), app.RowSearch(view, encode, index_dir)
    language = table.options()["language"][0]
    for name, fn in (("row page: biggest top node, page 1", lambda: table.page(facet, top, app.RowFilter(), 0)),
                     ("row page: all rows, page 500", lambda: table.page(facet, None, app.RowFilter(), 500)),
                     (f"row page: {language}, concerning >= 3", lambda: table.page(facet, top, app.RowFilter(
                         language=language, score="concerning", low=3), 2)),
                     ("row search: index ready (built or read)", lambda: finder._index(facet)),
                     ("row search: first query (loads the embedder)", lambda: finder.nearest(facet, "translate legal contracts")),
                     ("row search: next query", lambda: finder.nearest(facet, "a workout routine for beginners")),
                     ("row search by words", lambda: finder.words(facet, "legal contracts"))):
        t = time.perf_counter()
        fn()
        ops[name] = time.perf_counter() - t
    out = {
        "import_s": t_import - t0,
        "load_s": marks["view"] - t_import,
        "first_tree_s": marks["tree"] - t_import,
        "build_demo_s": t_built - t_import,
        "start_to_tree_s": marks["tree"] - t0,
        "n_rows": view.n_rows,
        "n_nodes": sum(len(t) for t in view.trees.values()),
        "top_nodes": len(view.tops[facet]),
        "ops_s": ops,
        "rss_before_rows_mib": rss_before_rows,
    }
    if browser:
        from playwright.sync_api import sync_playwright

        demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
        t_launched = time.perf_counter()
        tree_s, plot_s, expand_s = [], [], []
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            for _ in range(BROWSER_LOADS):  # the first load also pays chromium's own start-up work
                page = b.new_page(viewport={"width": 1400, "height": 1000})
                t = time.perf_counter()
                page.goto(demo.local_url)
                page.wait_for_selector(".clio-tree ul.top > li.cn", state="visible", timeout=60_000)
                tree_s.append(time.perf_counter() - t)
                # parsing plotly.js and drawing the treemap keep the page's main thread busy: a click waits for it
                page.wait_for_selector("#clio-treemap g.trace.treemap path.surface", timeout=60_000)
                plot_s.append(time.perf_counter() - t)
                page.wait_for_timeout(200)
                t = time.perf_counter()
                page.locator(".clio-tree ul.top > li.cn > .row button.tog").first.click()
                page.wait_for_selector(".clio-tree li.cn.open > ul.kids > li.cn", state="visible", timeout=60_000)
                expand_s.append(time.perf_counter() - t)
                page.close()
            b.close()
        out["browser_tree_first_s"], out["browser_tree_s"] = tree_s[0], statistics.median(tree_s)
        out["browser_plot_s"] = statistics.median(plot_s)
        out["browser_expand_s"] = statistics.median(expand_s)
        out["launch_s"] = t_launched - t_built
        demo.close()
    out["peak_rss_mib"] = peak_rss_mib()
    out["process_s"] = time.perf_counter() - t0
    return out


def measure(dataset: Path, cache: Path, browser: bool) -> dict:
    env = dict(os.environ, HF_DATASETS_CACHE=str(cache), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false")
    args = [sys.executable, __file__, "--_child", str(dataset)] + (["--browser"] if browser else [])
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise SystemExit(f"measurement failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: dict[str, dict], browser: bool) -> str:
    rows = [("import app (gradio, datasets, plotly)", "import_s", "s"),
            ("process start -> first tree HTML", "start_to_tree_s", "s"),
            ("load result (ClioView)", "load_s", "s"),
            ("first tree HTML ready (after import)", "first_tree_s", "s"),
            ("build_demo total (incl. treemap, Blocks)", "build_demo_s", "s")]
    if browser:
        rows += [("launch server", "launch_s", "s"),
                 ("browser: open -> tree visible, 1st load", "browser_tree_first_s", "s"),
                 (f"browser: open -> tree visible, median of {BROWSER_LOADS}", "browser_tree_s", "s"),
                 (f"browser: open -> treemap drawn, median of {BROWSER_LOADS}", "browser_plot_s", "s"),
                 (f"browser: expand -> children shown, median of {BROWSER_LOADS}", "browser_expand_s", "s")]
    rows += [("peak RSS before the row table and search", "rss_before_rows_mib", "MiB"),
             ("peak RSS of the app process (all of it)", "peak_rss_mib", "MiB")]
    names = list(results)
    lines = [f"| {'measure':<52} | " + " | ".join(f"{n:>8}" for n in names) + " |",
             "|" + "-" * 54 + "|" + "|".join("-" * 10 for _ in names) + "|"]
    for label, key, unit in rows:
        cells = [f"{results[n][key]:>8.2f}" if unit == "s" else f"{results[n][key]:>8.0f}" for n in names]
        lines.append(f"| {label + f' ({unit})':<52} | " + " | ".join(cells) + " |")
    for op in results[names[0]]["ops_s"]:
        cells = [f"{results[n]['ops_s'][op] * 1000:>8.1f}" for n in names]
        lines.append(f"| {'then: ' + op + ' (ms)':<52} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=40, help="top nodes; the tree has top*(1+per_top*(1+per_mid))")
    parser.add_argument("--per-top", type=int, default=4)
    parser.add_argument("--per-mid", type=int, default=5)
    parser.add_argument("--dim", type=int, default=384, help="embedding width (read only by the row search index)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--browser", action="store_true", help="also time the tree in headless chromium")
    parser.add_argument("--workdir", help="keep the synthetic result and caches here (default: a temp folder)")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(child(args._child, args.browser)))
        return 0

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-space-"))
    try:
        dataset = work / "result"
        print(f"writing {args.rows:,} rows to {dataset} ...", flush=True)
        made = write_result(dataset, n_rows=args.rows, n_top=args.top, per_top=args.per_top, per_mid=args.per_mid,
                            dim=args.dim, seed=args.seed)
        print(f"  {made['rows']:,} rows, {made['nodes']:,} nodes, {made['bytes'] / 2**20:.0f} MiB on disk, "
              f"written in {made['seconds']:.1f} s", flush=True)
        cache = work / "datasets-cache"
        shutil.rmtree(cache, ignore_errors=True)
        results = {}
        for case in ("cold", "warm"):
            print(f"measuring {case} ...", flush=True)
            results[case] = measure(dataset, cache, args.browser)
        r = results["cold"]
        assert r["n_rows"] == made["rows"] and r["n_nodes"] == made["nodes"], r
        print(f"\nSpace app on {made['rows']:,} rows / {made['nodes']:,} nodes ({r['top_nodes']} top), "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
        print(table(results, args.browser))
        worst_tree = max(x["first_tree_s"] for x in results.values())
        worst_rss = max(x["peak_rss_mib"] for x in results.values())
        worst_rows = max(v for x in results.values() for k, v in x["ops_s"].items()
                         if k.startswith("row page") or k == "row search: next query")
        ok = worst_tree < TARGET_FIRST_TREE_S and worst_rss < TARGET_RSS_MIB and worst_rows < TARGET_ROWS_S
        print(f"\ntargets: first tree < {TARGET_FIRST_TREE_S:.0f} s (worst {worst_tree:.2f} s), a row page and a warm "
              f"search < {TARGET_ROWS_S:.0f} s (worst {worst_rows:.2f} s), peak RSS < {TARGET_RSS_MIB} MiB "
              f"(worst {worst_rss:.0f} MiB): {'met' if ok else 'NOT met'}")
        return 0 if ok else 1
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
