"""The Gradio Space (spaces_app/) and clio_hf.space: rendering, a real browser, a clean venv, and deploy_space.

Two results are rendered: a small synthetic one (tests/space_fixture.py: the XSS node, duplicates, unpublished nodes)
and conftest's REAL one (`real_result_dir`), whose browser test also takes the README screenshot
(written to docs/space.png only with CLIO_HF_UPDATE_DOCS=1).

Browser tests drive Debian's chromium (`apt-get install chromium`) through pip's playwright; they fail, not skip,
when it is missing, because CI installs it. The clean-venv test installs spaces_app/requirements.txt from PyPI into
~/.cache/clio_hf/space-venv-<hash> once and reuses it while requirements.txt is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import datasets
import numpy as np
import pytest

from hub_fixtures import hub_env, hub_server, run_hub_client  # noqa: F401  (fixtures are found by name)
from space_fixture import DEEP_NAME, SKEWED_NODE, TREES, XSS_NAME, XSS_SUMMARY, write_space_fixture

ROOT = Path(__file__).resolve().parents[1]
APP_DIR = ROOT / "spaces_app"
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def private_datasets_cache(tmp_path_factory):
    """`datasets` caches a local result folder under the folder's name and never re-reads changed files, so a fixture
    written by an older version of this file would be served from an earlier session's cache: use a fresh one."""
    import datasets

    old = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = str(tmp_path_factory.mktemp("hf-datasets-cache"))
    yield
    datasets.config.HF_DATASETS_CACHE = old


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return write_space_fixture(tmp_path_factory.mktemp("space") / "clio-demo")


@pytest.fixture(scope="module")
def app():
    from clio_hf.space import _load_app

    return _load_app()


@pytest.fixture(scope="module")
def view(app, fx):
    return app.ClioView(str(fx.path))


@pytest.fixture(scope="module")
def tops(fx) -> dict[str, list[str]]:
    """Expected top nodes per facet, largest first, read straight from the hierarchy parquet."""
    import pyarrow.parquet as pq

    rows = pq.read_table(next((fx.path / "hierarchy").glob("*.parquet"))).to_pylist()
    return {f: [r["name"] for r in sorted((r for r in rows if r["facet"] == f and r["parent_id"] is None),
                                          key=lambda r: -r["size"])] for f in TREES}


# ---- rendering, without a browser ----------------------------------------------------------------------------------
def test_tree_renders_top_nodes_only_and_children_on_demand(view, fx, tops):
    assert view.facets == ["request", "task"]  # run-file order; language and concerning have no hierarchy
    html = view.tree_html("request")
    for name in tops["request"]:
        assert name in html
    assert "Python debugging" not in html  # children are not rendered until asked for
    top = fx.ids["request"]["Software development and debugging help"]
    kids = view.kids_html("request", top)
    assert "Python debugging" in kids and "Web front-end work" in kids and "Fix pandas" not in kids
    assert "rows" in html and "of all" in html
    assert view.kids_html("request", 10_000) == "" and view.kids_html("nope", 1) == ""


def test_every_llm_string_is_escaped(view, fx):
    xss = fx.ids["request"][XSS_NAME]
    parent = fx.parents["request"][xss]
    rendered = view.kids_html("request", parent) + view.detail_html("request", xss) + view.hits_html(
        "request", "onerror", view.search("request", "onerror"))
    assert "<img" not in rendered and "<script" not in rendered
    assert "&lt;img src=x onerror=alert(1)&gt;" in rendered and "&lt;script&gt;" in rendered
    labels = view.treemap("request").data[0].labels
    assert "&lt;img src=x onerror=alert(1)&gt;" in labels and XSS_NAME not in labels


def test_detail_samples_come_from_the_node_and_skip_duplicates(view, fx):
    node = fx.ids["task"]["Translate text"]
    samples = view.samples("task", node)
    assert 0 < len(samples) <= 8
    assert all(s["task"].startswith("The user asks to") and s["conversation"] for s in samples)
    assert all(s["_row"] < fx.n_rows - 10 for s in view.samples("request", fx.ids["request"]["Cooking"]))


def test_search_matches_names_and_summaries(view, fx):
    assert view.search("request", "legal BASQUE") == [fx.ids["request"][DEEP_NAME]]
    assert fx.ids["request"][XSS_NAME] in view.search("request", "pwned")  # summary text
    assert view.search("request", "") == [] and view.search("request", "zzzz") == []


def test_row_table_filters_and_pages_a_nodes_rows(app, view, tmp_path):
    """Issue 20's table without a browser: the node's rows in file order, narrowed by language, group and a range."""
    table = app.RowTable(view)
    options = table.options()
    assert options["language"] and options["group"] == sorted(set(view.group_values), key=view.group_values.count, reverse=True)
    node = view.tops["request"][0]
    under = np.flatnonzero(view.rows_under("request", node))
    assert 0 < len(under) < view.n_rows and list(table.matching("request", node, app.RowFilter())) == under.tolist()
    languages = view.rows["language"]
    language, group = options["language"][0], "model-c"
    wanted = [i for i in under if languages[i] == language and view.group_values[i] == group
              and view.numeric_values["concerning"][i] >= 3]
    got = table.matching("request", node, app.RowFilter(language=language, group=group, score="concerning", low=3))
    assert got.tolist() == wanted and 0 < len(wanted) < len(under)
    html, page = table.page("request", node, app.RowFilter(), 10_000)  # a page past the end shows the last one
    assert page == (len(under) - 1) // app.PAGE_ROWS and f'data-matching="{len(under)}"' in html
    assert html.count("<tr data-row=") == len(under) - page * app.PAGE_ROWS
    finder = app.RowSearch(view)  # no encoder: words only, and it says why
    assert finder.off_because("request") == "no embedder here"
    wrong = app.RowSearch(view, encode=lambda texts: np.ones((len(texts), 3), np.float32), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="3-d vectors, the result's request_embedding has 8"):
        wrong.nearest("request", "anything")  # another embedder than the run's: the page falls back to words
    exact = app.RowSearch(view, encode=lambda texts: np.asarray(view.all_columns()["request_embedding"][:1]), cache_dir=tmp_path)
    twins = np.flatnonzero(np.asarray(view.all_columns()["duplicate_of"]) == 0)  # rows sharing row 0's vector
    assert exact.nearest("request", "the first row's own vector")[0] in {0, *twins.tolist()}
    assert list(tmp_path.glob("*.faiss"))  # built once, cached
    hits = finder.words("request", "TRANSLATE")
    assert hits and all("translate" in view.rows["request"][i].lower() for i in hits)


def test_unpublished_nodes_and_their_subtrees_never_show(app, tmp_path):
    fx2 = write_space_fixture(tmp_path / "r", unpublished=("Python debugging",))
    v = app.ClioView(str(fx2.path))
    top = fx2.ids["request"]["Software development and debugging help"]
    shown = v.kids_html("request", top) + "".join(v.detail_html("request", n) for n in v.trees["request"])
    assert "Python debugging" not in shown and "Fix pandas KeyError" not in shown
    assert v.search("request", "pandas") == [] and "Web front-end work" in shown
    local = app.ClioView(str(fx2.path), show_withheld=True)  # what `clio-hf view` shows the owner
    mine = local.kids_html("request", top)
    assert "Python debugging" in mine and "withheld: gates" in mine and "withheld" not in v.kids_html("request", top)
    assert local.search("request", "pandas")


def test_detail_shows_the_share_of_each_period(view, fx):
    node = view.node("request", fx.ids["request"][SKEWED_NODE])
    html = view.detail_html("request", node.id)
    months = ["2026-0%d" % m for m in range(1, 7)]
    assert [p for p in months if f'data-period="{p}"' in html] == months
    whole = sum(view.trees["request"][t].time_counts["2026-03"] for t in view.tops["request"])
    mine = node.time_counts["2026-03"]
    assert f"2026-03: {mine:,} of {whole:,} rows" in html and sum(node.time_counts.values()) == node.size


def test_what_changed_lists_the_largest_shifts_since_the_last_batch(view, fx):
    from space_fixture import NEW_BATCH

    before, added, shifts = view.changes("request")
    clustered = int((view.clusters["request"] >= 0).sum())
    assert added == NEW_BATCH and before == clustered - NEW_BATCH
    gaps = [abs(now - was) for _, was, now in shifts]
    assert gaps == sorted(gaps, reverse=True) and len(shifts) == len(view.trees["request"])
    node, was, now = shifts[0]
    assert was == node.size_before / before and now == (node.size - node.size_before) / added
    html = view.changes_html("request")
    assert html.count("<li ") == 10 and f'data-goto="{node.id}"' in html and f"{node.size_before:,} → {node.size:,} rows" in html


def test_what_changed_counts_a_node_made_from_the_batch_as_new(view, monkeypatch):
    """A base node `assign --rebuild-novel` made has no size before: it counts as 0 rows then, marked new."""
    node = min((n for n in view.trees["request"].values() if n.level == 0), key=lambda n: n.size)
    before, added, _ = view.changes("request")
    monkeypatch.setattr(node, "size_before", None)
    again, added_again, shifts = view.changes("request")
    assert (again, added_again) == (before, added)  # a base node's size before does not enter the totals
    was, now = next((w, n) for m, w, n in shifts if m is node)
    assert was == 0 and now == node.size / added
    assert f"0 → {node.size:,} rows; new" in view.changes_html("request", top=len(shifts))


def test_a_prefixed_result_shows_its_group_column_and_input_columns_intact(app, tmp_path):
    """`annotate --column-prefix` names the added columns `<prefix><facet>...`; the group column, an input column, keeps
    its name. The viewer strips the prefix from the added columns only, and still finds the group."""
    import clio_hf
    from clio_hf.facets import REQUEST, from_column
    from fakes import ScriptedLLM

    texts = [f"Write a {kind} about {topic}" for kind in ("poem", "story", "song") for topic in ("cats", "rain", "trains")]
    rows = datasets.Dataset.from_dict({"text": texts * 2, "team": ["red", "blue"] * len(texts)})
    config = clio_hf.ClioConfig(privacy=clio_hf.PrivacyConfig(min_rows=1, audit=False, detect_pii=False))
    result = clio_hf.annotate(rows, facets=[from_column(REQUEST, "text")], llm=ScriptedLLM(), embedder="minilm-l6",
                              text_column="text", column_prefix="clio_", group_column="team", config=config,
                              cache_dir=tmp_path / "cache")
    assert "clio_request_cluster" in result.data.column_names and "team" in result.data.column_names
    result.save_to_disk(tmp_path / "prefixed")
    view = app.ClioView(str(tmp_path / "prefixed"))
    assert view.group_column == "team" and sorted(set(view.group_values)) == ["blue", "red"]
    assert list(view.rows["request"])[:2] == result.data["clio_request"][:2]
    assert (view.clusters["request"] == np.asarray(result.data["clio_request_cluster"])).all()


def test_what_changed_view_opens_a_node_in_the_browser(page, view):
    open_app(page)
    first = page.locator("#clio-changes .clio-changes li a").first
    assert page.locator("#clio-changes .clio-changes li").count() == 10 and "What changed" in page.locator("#clio-changes").inner_text()
    node = view.changes("request")[2][0][0]
    first.click()
    page.wait_for_selector(f'.clio-detail[data-node="{node.id}"]')


def test_detail_shows_numeric_means_and_the_group_mix(view, fx):
    node = view.node("request", fx.ids["request"][SKEWED_NODE])
    html = view.detail_html("request", node.id)
    assert "<h4>Numeric facets</h4>" in html and f"{node.means['concerning']:.2f}" in html
    assert f"{view.overall_means['concerning']:.2f}" in html
    assert "Groups: model" in html
    mine, whole = view.group_counts["request"][node.id], view.overall_groups("request")
    assert sum(mine.values()) == node.size and sum(whole.values()) == sum(view.trees["request"][t].size for t in view.tops["request"])
    assert mine["model-c"] / node.size > whole["model-c"] / sum(whole.values()) + 0.2  # the node over-represents it
    first_row = re.search(r'<tr data-group="([^"]+)">', html).group(1)
    assert first_row == "model-c"  # the node's largest group first
    means = view.means_html("task", view.node("task", view.tops["task"][0]))
    assert "Groups" not in means and means.count("<tr>") == 2  # a header and the one numeric facet


def test_map_draws_a_bounded_stratified_sample(app, view, fx, monkeypatch):
    fig = view.scatter("request")
    drawn = sum(len(t.customdata) for t in fig.data if t.name != "clusters")
    assert drawn == int(view.original.sum())  # small result: every original row is drawn
    assert {t.name for t in fig.data} >= {view.trees["request"][t].name for t in view.tops["request"]} | {"clusters"}
    monkeypatch.setattr(app, "MAP_POINTS", 60)
    monkeypatch.setattr(app, "MAP_MIN_PER_CLUSTER", 25)
    rows = view.map_sample("request")
    assert len(rows) <= 60 + 3 * 25 and np.array_equal(rows, view.map_sample("request"))  # bounded, seeded
    tops = view.row_tops("request")[rows]
    assert all((tops == t).sum() >= 25 for t in view.tops["request"])  # every top-level cluster keeps points
    assert view.original[rows].all()  # duplicates share their original's point and are not drawn twice
    caption = view.map_caption("request")
    assert f'data-drawn="{len(rows)}"' in caption and "stratified" in caption
    by_score = view.scatter("request", "Score: concerning")
    assert by_score.data[0].marker.showscale and len(by_score.data[0].customdata) == len(rows)
    by_group = view.scatter("request", "Group: model")
    assert {t.name for t in by_group.data} == {"model-a", "model-b", "model-c", "clusters"}
    hover = by_group.data[0].customdata[0]
    assert " › " in hover[1] and hover[2].startswith("The user asks to")


def test_map_text_is_escaped(view, fx):
    fig = view.scatter("request")
    shown = [c[1] for t in fig.data for c in t.customdata]
    assert not any("<img" in s for s in shown) and any("&lt;img src=x onerror=alert(1)&gt;" in s for s in shown)


def test_map_labels_are_cut_before_escaping(view, monkeypatch):
    # cutting after escaping left "player&#x27" in the legend: half an entity, shown as such
    top = view.trees["request"][view.tops["request"][0]]
    monkeypatch.setattr(top, "name", "a" * 33 + " bob's " + "c" * 11 + "'s career")  # apostrophes at both cuts
    fig = view.scatter("request")
    labels = [t.name for t in fig.data if t.name != "clusters"] + list(next(t for t in fig.data if t.name == "clusters").text)
    assert any("bob" in label for label in labels)
    assert not any(re.search(r"&(?!(?:[a-z]+|#x?[0-9a-f]+);)", label) for label in labels), labels


# ---- served app: gradio_client, then a real browser ----------------------------------------------------------------
@contextmanager
def serving(path: Path):
    """`clio-hf view PATH` in this process: yields the app's URL; restores CLIO_DATASET afterwards."""
    from clio_hf.space import launch_view

    old = os.environ.get("CLIO_DATASET")
    demo = launch_view(str(path), port=free_port(), block=False)
    try:
        yield demo.local_url
    finally:
        demo.close()
        if old is None:
            os.environ.pop("CLIO_DATASET", None)
        else:
            os.environ["CLIO_DATASET"] = old


@pytest.fixture(scope="module")
def served(fx):
    with serving(fx.path) as url:
        yield url


def test_gradio_client_api(served, fx, tops):
    from gradio_client import Client

    client = Client(served, verbose=False)
    assert set(client.view_api(return_format="dict", print_info=False)["named_endpoints"]) == {"/nodes", "/search"}
    top = client.predict("request", -1, api_name="/nodes")
    assert [t["name"] for t in top] == tops["request"]
    assert sum(t["share_of_parent"] for t in top) == pytest.approx(1.0)
    kids = client.predict("request", top[0]["node_id"], api_name="/nodes")
    assert {k["name"] for k in kids} == set(TREES["request"][top[0]["name"]])
    hits = client.predict("request", "basque", api_name="/search")
    assert hits[0]["name"] == DEEP_NAME and hits[0]["path"][-1] == fx.ids["request"][DEEP_NAME]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (the browser tests need it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextmanager
def watched_page(browser, base: str):
    """A page that records every request and dialog; on exit asserts nothing left loopback and no script ran."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(20_000)
    urls: list[str] = []
    dialogs: list[str] = []
    pg.on("request", lambda r: urls.append(r.url))
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.base = base
    yield pg
    pwned = pg.evaluate("() => window.__pwned")
    ctx.close()
    foreign = [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")
               and urlsplit(u).hostname not in LOCAL_HOSTS]
    assert not foreign, f"requests left 127.0.0.1: {foreign}"
    assert not dialogs, f"a dialog fired: {dialogs}"
    assert pwned is None


@pytest.fixture
def page(browser, served):
    with watched_page(browser, served) as pg:
        yield pg


def open_app(page, query: str = ""):
    page.goto(page.base + query, wait_until="networkidle")
    page.wait_for_selector(".clio-tree ul.top > li.cn")


def row(page, name: str):
    return page.locator(".clio-tree li.cn > .row", has=page.locator(".nm", has_text=name)).first


def tree_names(page, selector: str = ".clio-tree .nm") -> list[str]:
    return page.locator(selector).all_inner_texts()


def test_default_facet_tree_shows_top_nodes(page, tops):
    open_app(page)
    assert page.locator("#clio-facet input").input_value() == "request"
    assert tree_names(page, ".clio-tree ul.top > li.cn > .row .nm") == tops["request"]
    first = page.locator(".clio-tree ul.top > li.cn > .row").first.inner_text()
    assert "126 rows" in first and "of all" in first and "concerning" in first and "Conversations about" in first


def test_expanding_a_node_loads_its_children(page):
    open_app(page)
    assert "Web front-end work" not in tree_names(page)
    row(page, "Software development and debugging help").locator("button.tog").click()
    page.wait_for_selector(".clio-tree li.cn.open > ul.kids .nm >> text=Web front-end work")
    assert set(tree_names(page, ".clio-tree li.cn.open > ul.kids > li.cn > .row .nm")) == {
        "Web front-end work", "Python debugging"}
    assert "of parent" in row(page, "Python debugging").inner_text()
    row(page, "Web front-end work").locator("button.tog").click()
    xss = page.locator(".clio-tree .nm", has_text="onerror").first
    xss.wait_for()
    assert xss.inner_text() == XSS_NAME  # shown as text, not parsed as an <img>
    assert page.locator(".clio-tree img, .clio-tree script").count() == 0
    row(page, "Software development and debugging help").locator("button.tog").click()  # collapses again
    assert not row(page, "Python debugging").is_visible()


def test_detail_panel_shows_sample_rows(page, fx):
    open_app(page)
    row(page, "Writing, translation and language help").locator(".nm").click()
    page.wait_for_selector(".clio-detail h3 >> text=Writing, translation and language help")
    detail = page.locator(".clio-detail")
    assert detail.locator(".sample").count() == 8
    first = detail.locator(".sample").first
    assert "The user asks to" in first.inner_text() and "language" in first.inner_text()
    first.locator("summary").click()
    assert "Hello, could you help me?" in first.locator(".turn").first.inner_text()
    node = fx.ids["request"]["Writing, translation and language help"]
    assert page.url.endswith(f"?facet=request&node={node}")  # the address bar is a deep link to this view


def test_search_finds_a_deep_node_and_opens_its_path(page, fx):
    open_app(page)
    page.locator("#clio-search textarea, #clio-search input").first.fill("legal contracts")
    page.locator("#clio-search textarea, #clio-search input").first.press("Enter")
    page.wait_for_selector(f".clio-detail h3 >> text={DEEP_NAME}")
    assert row(page, DEEP_NAME).is_visible()
    assert "sel" in row(page, DEEP_NAME).get_attribute("class")
    for ancestor in ("Writing, translation and language help", "Translation requests"):
        assert row(page, ancestor).is_visible()
    assert DEEP_NAME in page.locator(".clio-hits").inner_text()
    assert not row(page, "Python debugging").is_visible()  # only the hit's path is open
    row(page, "Translation requests").locator(".nm").click()
    page.wait_for_selector(".clio-detail h3 >> text=Translation requests")
    assert row(page, DEEP_NAME).is_visible()  # selecting an ancestor keeps the open path open


def test_deep_link_reopens_a_node(page, fx, tops):
    node = fx.ids["task"]["Localise app strings"]
    open_app(page, f"?facet=task&node={node}")
    page.wait_for_selector(".clio-detail h3 >> text=Localise app strings")
    assert page.locator("#clio-facet input").input_value() == "task"
    assert row(page, "Localise app strings").is_visible()
    assert tree_names(page, ".clio-tree ul.top > li.cn > .row .nm") == tops["task"]
    assert "Text transformation" in page.locator(".clio-detail .crumbs").inner_text()


def test_xss_node_shows_as_text_and_runs_nothing(page, fx):
    node = fx.ids["request"][XSS_NAME]
    open_app(page, f"?facet=request&node={node}")
    page.wait_for_selector(".clio-detail h3 >> text=onerror")
    detail = page.locator(".clio-detail")
    assert detail.locator("h3").inner_text() == XSS_NAME
    assert XSS_SUMMARY in detail.inner_text()
    for summary in detail.locator("details > summary").all():
        summary.click()
    assert page.locator(".clio-detail img, .clio-detail script, .clio-tree img").count() == 0
    assert XSS_NAME in page.locator("#clio-treemap").inner_text()
    page.wait_for_timeout(500)  # give an injected onerror handler time to fire, if there were one


def test_treemap_renders_and_follows_the_facet(page, tops):
    open_app(page)
    page.wait_for_selector("#clio-treemap .js-plotly-plot g.trace.treemap")
    assert page.locator("#clio-treemap g.trace.treemap path.surface").count() >= 10
    assert "Software development and debugging help" in page.locator("#clio-treemap").inner_text()
    page.locator("#clio-facet input").click()
    page.get_by_role("option", name="task").click()
    page.wait_for_selector(".clio-tree[data-facet=task]")
    assert tree_names(page, ".clio-tree ul.top > li.cn > .row .nm") == tops["task"]
    page.wait_for_function(
        "() => document.querySelector('#clio-treemap').innerText.includes('Code generation and repair')")


MAP_POINTS_JS = """() => {
  const gd = document.querySelector('#clio-map .js-plotly-plot');
  const L = gd._fullLayout, box = gd.getBoundingClientRect();
  const at = (t, i) => [box.left + L._size.l + L.xaxis.d2p(t.x[i]), box.top + L._size.t + L.yaxis.d2p(t.y[i])];
  const circles = gd._fullData.find((t) => t.name === 'clusters');
  const out = {circles: circles.x.map((x, i) => ({xy: at(circles, i), node: circles.customdata[i][0],
                                                  name: circles.customdata[i][1]}))};
  const points = gd._fullData.filter((t) => t.name !== 'clusters')
    .flatMap((t) => [...Array(t.x.length).keys()].map((i) => ({xy: at(t, i), node: t.customdata[i][0]})));
  const away = (p, q, d) => Math.hypot(p.xy[0] - q.xy[0], p.xy[1] - q.xy[1]) > d;
  // a point far from every circle and from every other cluster's points, so a click on it can only mean it
  out.point = points.find((p) => out.circles.every((c) => away(p, c, 45))
                               && points.every((q) => q.node === p.node || away(p, q, 20)));
  return out;
}"""


def wait_for_map(page):
    page.wait_for_selector("#clio-map .js-plotly-plot[data-clio-hooked]")
    page.wait_for_function("() => document.querySelector('#clio-map .js-plotly-plot')._fullData.length > 1")


def test_topic_map_hover_and_click_open_clusters_in_the_tree(page, fx):
    open_app(page)
    wait_for_map(page)
    assert "Click a point or a circle" in page.locator("#clio-map-note").inner_text()
    page.locator("#clio-map").scroll_into_view_if_needed()  # below the tree and the "what changed" panel
    spots = page.evaluate(MAP_POINTS_JS)
    circle = next(c for c in spots["circles"] if c["name"] == "Everyday questions and advice")
    page.mouse.move(*circle["xy"])
    page.wait_for_function("() => document.querySelector('#clio-map .hoverlayer').textContent.includes('Everyday')")
    assert "rows" in page.evaluate("() => document.querySelector('#clio-map .hoverlayer').textContent")
    page.mouse.click(*circle["xy"])
    page.wait_for_selector(".clio-detail h3 >> text=Everyday questions and advice")
    assert "sel" in row(page, "Everyday questions and advice").get_attribute("class")
    assert page.url.endswith(f"?facet=request&node={circle['node']}")
    # the selection redraws the map with the other clusters dimmed; hovering waits for that redraw
    page.wait_for_function("() => document.querySelector('#clio-map .js-plotly-plot')._fullData"
                           ".some((t) => Array.isArray(t.marker.opacity) && t.marker.opacity.some((o) => o < 0.5))")
    wait_for_map(page)

    page.locator("#clio-map").scroll_into_view_if_needed()  # the opened detail pane moves the map down
    point = page.evaluate(MAP_POINTS_JS).get("point")
    assert point is not None, "every point of the fixture map sits under a cluster circle"
    page.mouse.move(*point["xy"])
    page.wait_for_function("() => document.querySelector('#clio-map .hoverlayer').textContent.includes('The user asks to')")
    page.mouse.click(*point["xy"])
    page.wait_for_selector(f'.clio-detail[data-node="{point["node"]}"]')  # the point's base cluster
    assert node_row(page, point["node"]).is_visible()  # its path in the tree is open
    assert "sel" in node_row(page, point["node"]).get_attribute("class")


def map_opacity(page) -> dict[int, float]:
    """Each drawn row's marker opacity, by row (customdata[3])."""
    return {int(k): v for k, v in page.evaluate("""() => {
      const gd = document.querySelector('#clio-map .js-plotly-plot'), out = {};
      gd._fullData.filter((t) => t.name !== 'clusters').forEach((t) => t.customdata.forEach((c, i) => {
        out[c[3]] = Array.isArray(t.marker.opacity) ? t.marker.opacity[i] : t.marker.opacity; }));
      return out; }""").items()}


def test_selecting_a_node_dims_the_rest_of_the_map_and_a_lasso_lists_rows(page, view, fx):
    map_follows_the_tree_and_a_lasso_lists_rows(page, view, fx.ids["request"][SKEWED_NODE])


def map_follows_the_tree_and_a_lasso_lists_rows(page, view, node: int):
    """Issue 21: tree and map linked. A selected node's points keep their colour, the others are dimmed (not hidden);
    a lasso drawn with the mouse around one cluster's points lists those rows and their cluster."""
    open_app(page, f"?facet=request&node={node}")
    page.wait_for_selector(f'.clio-detail[data-node="{node}"]')
    wait_for_map(page)
    under = set(np.flatnonzero(view.rows_under("request", node)).tolist())
    page.wait_for_function("() => document.querySelector('#clio-map .js-plotly-plot')._fullData"
                           ".some((t) => Array.isArray(t.marker.opacity) && t.marker.opacity.some((o) => o < 0.5))")
    opacity = map_opacity(page)
    assert set(opacity) == set(view.map_sample("request").tolist())  # every drawn point is still there
    assert {r for r, o in opacity.items() if o > 0.5} == under & set(opacity) and len(under & set(opacity)) < len(opacity)

    page.locator("#clio-map").scroll_into_view_if_needed()
    points = page.evaluate(MAP_POINTS_JS.replace("node: t.customdata[i][0]})", "node: t.customdata[i][0], row: t.customdata[i][3]})")
                           .replace("return out;", "out.points = points; return out;"))["points"]
    by_node: dict[int, list] = {}
    for p in points:
        by_node.setdefault(p["node"], []).append(p)
    target, members = max(by_node.items(), key=lambda kv: len(kv[1]))
    xs, ys = [p["xy"][0] for p in members], [p["xy"][1] for p in members]
    box = (min(xs) - 6, min(ys) - 6, max(xs) + 6, max(ys) + 6)
    inside = {p["row"] for p in points if box[0] <= p["xy"][0] <= box[2] and box[1] <= p["xy"][1] <= box[3]}
    page.mouse.move(box[0], box[1])
    page.mouse.down()
    for x, y in ((box[2], box[1]), (box[2], box[3]), (box[0], box[3]), (box[0], box[1] + 1)):
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    page.wait_for_selector("#clio-hits .clio-lasso")
    lasso = page.locator("#clio-hits .clio-lasso")
    assert int(lasso.get_attribute("data-rows")) == len(inside) >= len(members)
    assert lasso.locator(f'a[data-goto="{target}"]').count() == 1
    assert "rows selected on the map" in lasso.inner_text()


def test_a_search_with_no_node_hit_undims_the_map(page, view, fx):
    """A selection dims the map; a search that opens no node clears the selection, and the map shows every point at
    full colour again (it used to stay dimmed for the old selection)."""
    node = fx.ids["request"][SKEWED_NODE]
    open_app(page, f"?facet=request&node={node}")
    wait_for_map(page)
    page.wait_for_function("() => document.querySelector('#clio-map .js-plotly-plot')._fullData"
                           ".some((t) => Array.isArray(t.marker.opacity) && t.marker.opacity.some((o) => o < 0.5))")
    assert view.search("request", "zzqx nothing like this") == []
    page.locator("#clio-search textarea, #clio-search input").first.fill("zzqx nothing like this")
    page.locator("#clio-search textarea, #clio-search input").first.press("Enter")
    page.wait_for_function("() => document.querySelector('#clio-map .js-plotly-plot')._fullData"
                           ".every((t) => !Array.isArray(t.marker.opacity) || t.marker.opacity.every((o) => o > 0.5))")
    assert min(map_opacity(page).values()) > 0.5


def test_the_map_colours_by_any_tree_level(app, view, fx):
    options = view.colour_options("request")
    levels = sorted({n.level for n in view.trees["request"].values()})
    assert options[: len(levels)] == ["Top-level cluster", *[f"Tree level {lv}" for lv in sorted(levels, reverse=True)[1:]]]
    fig = view.scatter("request", "Tree level 0")  # base clusters
    drawn = {int(view.clusters["request"][r]) for r in view.map_sample("request")}
    assert {t.name for t in fig.data} - {"clusters"} == {app.esc(view.trees["request"][b].name[:60]) for b in drawn}


def test_detail_panel_shows_the_group_mix_in_the_browser(page, fx):
    open_app(page, f"?facet=request&node={fx.ids['request'][SKEWED_NODE]}")
    page.wait_for_selector(f".clio-detail h3 >> text={SKEWED_NODE}")
    groups = page.locator(".clio-detail table.clio-groups tr[data-group]")
    assert groups.first.get_attribute("data-group") == "model-c" and groups.count() == 3
    assert "concerning" in page.locator(".clio-detail table.clio-means").inner_text()
    # with a time column: the node's share of each month's rows, one bar a month
    bars = page.locator(".clio-detail .clio-time .tbar")
    assert bars.count() == 6 and bars.first.get_attribute("data-period") == "2026-01" and bars.first.is_visible()
    assert "of each month's rows (month)" in page.locator(".clio-detail").inner_text()


def test_map_colours_by_group_and_by_score(page):
    open_app(page)
    wait_for_map(page)
    page.locator("#clio-colour input").click()
    page.get_by_role("option", name="Group: model").click()
    page.wait_for_function("() => [...document.querySelectorAll('#clio-map .legendtext')].some(e => e.textContent === 'model-c')")
    page.locator("#clio-colour input").click()
    page.get_by_role("option", name="Score: concerning").click()
    page.wait_for_selector("#clio-map .colorbar")
    page.locator("#clio-facet input").click()
    page.get_by_role("option", name="task").click()  # a new facet redraws its own map, and clicks still open nodes
    page.wait_for_function("() => document.querySelector('#clio-map-note').innerText.includes('Topic map of task')")
    wait_for_map(page)


# ---- a REAL result: conftest's real_result_dir (SmolLM2-135M + MiniLM on ShareGPT rows) ----------------------------
# The synthetic fixture above carries the hand-made cases (the XSS node, duplicates, unpublished nodes); these check
# that what the pipeline really writes renders, expands, searches and deep-links the same way. They also take the
# README screenshot (docs/space.png, with CLIO_HF_UPDATE_DOCS=1).
@pytest.fixture(scope="module")
def real_tree(real_result_dir) -> dict:
    """The real result's `request` tree, read straight from its hierarchy parquet: nodes, tops and kids by size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables(pq.read_table(f) for f in sorted((real_result_dir / "hierarchy").glob("*.parquet")))
    rows = [r for r in table.to_pylist() if r["facet"] == "request"]  # a local result shows withheld nodes too
    kids: dict[int, list[dict]] = {}
    for r in rows:
        if r["parent_id"] is not None:
            kids.setdefault(r["parent_id"], []).append(r)

    def by_size(rs) -> list[int]:
        return [r["node_id"] for r in sorted(rs, key=lambda r: -r["size"])]

    info = json.loads((real_result_dir / "clio_run.json").read_text())
    return {"nodes": {r["node_id"]: r for r in rows}, "tops": by_size(r for r in rows if r["parent_id"] is None),
            "kids": {k: by_size(v) for k, v in kids.items()}, "facets": [f["name"] for f in info["facets"]]}


@pytest.fixture(scope="module")
def served_real_dir(real_result_dir, tmp_path_factory):
    shown = tmp_path_factory.mktemp("real") / "clio-sharegpt-43"  # the app's title is the folder's name
    shutil.copytree(real_result_dir, shown)
    return shown


@pytest.fixture(scope="module")
def served_real(served_real_dir):
    with serving(served_real_dir) as url:
        yield url


@pytest.fixture
def real_page(browser, served_real):
    with watched_page(browser, served_real) as pg:
        yield pg


def text(value: str) -> str:
    return " ".join((value or "").split())  # how the browser's innerText shows a name


def node_row(page, node_id: int):
    return page.locator(f'.clio-tree li.cn[data-node="{node_id}"] > .row')


def ids(page, selector: str) -> list[int]:
    return [int(x) for x in page.locator(selector).evaluate_all("els => els.map(e => e.dataset.node)")]


def search_target(tree: dict) -> tuple[int, str]:
    """A node below the top whose name has a word of 4+ letters, and that word (the deepest, biggest such node)."""
    for n in sorted(tree["nodes"].values(), key=lambda n: (n["parent_id"] is None, n["level"], -n["size"])):
        words = sorted(re.findall(r"[A-Za-z]{4,}", n["name"] or ""), key=len, reverse=True)
        if n["parent_id"] is not None and words:
            return n["node_id"], words[0]
    pytest.fail("no node below the top of the real request tree has a searchable word in its name")


def test_real_result_renders_without_a_browser(app, real_result_dir, real_tree):
    import html

    view = app.ClioView(str(real_result_dir), show_withheld=True)
    # the first facet of the run (in the run's order) that has a hierarchy opens by default
    assert view.facets[0] == "request" == next(app.snake(f) for f in real_tree["facets"] if app.snake(f) in view.trees)
    assert view.tops["request"] == real_tree["tops"]
    page = view.tree_html("request")
    for t in real_tree["tops"]:
        assert html.escape(real_tree["nodes"][t]["name"]) in page
    assert page.count('class="cn') == len(real_tree["tops"])  # only the top level is rendered at first
    assert any(n["keyphrases"] for n in real_tree["nodes"].values()), "the real tree has keyphrases to show"
    for t in real_tree["tops"]:  # beside each name, its keyphrases (terms at least min_rows rows hold)
        assert html.escape(" · ".join(real_tree["nodes"][t]["keyphrases"])) in page
    parent = next(t for t in real_tree["tops"] if real_tree["kids"].get(t))
    assert view.kids_html("request", parent).count('class="cn') == len(real_tree["kids"][parent])
    samples = view.samples("request", parent)
    assert samples and all(s["conversation"] and s["request"] for s in samples)


def test_real_result_map_draws_every_row(app, real_result_dir, real_tree):
    view = app.ClioView(str(real_result_dir), show_withheld=True)
    fig = view.scatter("request")
    points = [c for t in fig.data if t.name != "clusters" for c in t.customdata]
    with_point = view.original & np.isfinite(view.xy["request"]).all(axis=1) & (view.clusters["request"] >= 0)
    assert len(points) == int(with_point.sum()) > 0
    assert {c[0] for c in points} <= set(real_tree["nodes"])  # every point names a node of the tree
    circles = next(t for t in fig.data if t.name == "clusters")
    assert [c[0] for c in circles.customdata] == real_tree["tops"]


def test_real_result_tree_renders_and_expands(real_page, real_tree):
    page = real_page
    open_app(page)
    assert page.locator("#clio-facet input").input_value() == "request"
    assert ids(page, ".clio-tree ul.top > li.cn") == real_tree["tops"]
    assert tree_names(page, ".clio-tree ul.top > li.cn > .row .nm") == [
        text(real_tree["nodes"][t]["name"]) for t in real_tree["tops"]]
    first = page.locator(".clio-tree ul.top > li.cn > .row").first.inner_text()
    assert f'{real_tree["nodes"][real_tree["tops"][0]]["size"]:,} rows' in first and "of all" in first
    assert page.locator(".clio-tree ul.kids").count() == 0  # nothing below the top level until asked for

    parent = next((t for t in real_tree["tops"] if real_tree["kids"].get(t)), None)
    assert parent is not None, "the real request tree has a single level"
    node_row(page, parent).locator("button.tog").click()
    page.wait_for_selector(f'.clio-tree li.cn.open[data-node="{parent}"] > ul.kids > li.cn')
    kids = real_tree["kids"][parent]
    assert ids(page, f'.clio-tree li.cn[data-node="{parent}"] > ul.kids > li.cn') == kids
    assert node_row(page, kids[0]).is_visible() and "of parent" in node_row(page, kids[0]).inner_text()
    assert text(real_tree["nodes"][kids[0]]["name"]) in node_row(page, kids[0]).locator(".nm").inner_text()


def test_real_result_search_and_deep_link(real_page, real_tree, tmp_path):
    page = real_page
    target, word = search_target(real_tree)
    open_app(page)
    box = page.locator("#clio-search textarea, #clio-search input").first
    box.fill(word.lower())
    box.press("Enter")
    hit = page.locator(f'.clio-hits a[data-goto="{target}"]')
    hit.wait_for()
    assert text(real_tree["nodes"][target]["name"]) in hit.inner_text()
    hit.click()  # a hit opens the path to it and selects it
    page.wait_for_selector(f'.clio-detail[data-node="{target}"]')
    assert node_row(page, target).is_visible() and "sel" in node_row(page, target).get_attribute("class")
    assert page.url.endswith(f"?facet=request&node={target}")
    assert page.locator(".clio-detail .sample").count() >= 1
    page.locator(".clio-detail .sample details > summary").first.click()  # one conversation, open
    page.wait_for_selector("#clio-treemap .js-plotly-plot g.trace.treemap")
    # the README's picture, refreshed only when asked (CLIO_HF_UPDATE_DOCS=1): a test run leaves the checkout clean
    shot = DOCS / "space.png" if os.environ.get("CLIO_HF_UPDATE_DOCS") else tmp_path / "space.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # the deep link reopens that view in a fresh page load: facet, open path, selection and detail panel
    page.goto("about:blank")
    page.goto(page.base + f"?facet=request&node={target}", wait_until="networkidle")
    page.wait_for_selector(f'.clio-detail[data-node="{target}"]')
    node = real_tree["nodes"][target]
    assert page.locator(".clio-detail h3").inner_text() == text(node["name"])
    assert "sel" in node_row(page, target).get_attribute("class") and node_row(page, target).is_visible()
    assert text(real_tree["nodes"][node["parent_id"]]["name"]) in page.locator(".clio-detail .crumbs").inner_text()
    assert page.locator(".clio-detail .sample").count() >= 1


def rows_meta(page) -> dict:
    meta = page.locator("#clio-rows .clio-rows > .meta")
    return {k: int(meta.get_attribute(f"data-{k}")) for k in ("matching", "page", "pages")}


def table_rows(page) -> list[int]:
    return [int(x) for x in page.locator("#clio-rows tr[data-row]").evaluate_all("els => els.map(e => e.dataset.row)")]


def wait_rows(pg, **expected):
    checks = " && ".join(f"m.dataset.{k} === '{v}'" for k, v in expected.items())
    pg.wait_for_function(f"() => {{ const m = document.querySelector('#clio-rows .clio-rows > .meta'); return m && {checks}; }}")


def test_real_result_rows_search_by_meaning_filter_page_and_export(real_page, served_real_dir, tmp_path):
    """Issue 20: a paraphrase finds its row by meaning; the row table filters and pages; the download is select_node."""
    from clio_hf.result import ClioResult

    page = real_page
    result = ClioResult.load(served_real_dir)
    data = result.data.to_list()
    clustered = [i for i, r in enumerate(data) if r["request_cluster"] >= 0]
    trip = next(i for i, r in enumerate(data) if r["conversation"][0]["content"].startswith("I want to do a road trip from Pune"))
    open_app(page)
    assert "search by meaning is off" not in page.content().lower()

    # search by meaning: none of the query's content words is in the row's request
    box = page.locator("#clio-search textarea, #clio-search input").first
    box.fill("plan a holiday drive across western India with my spouse")
    box.press("Enter")
    page.wait_for_selector('.clio-row-hits[data-how="nearest by meaning"] li[data-row]')
    found = [int(x) for x in page.locator(".clio-row-hits li[data-row]").evaluate_all("els => els.map(e => e.dataset.row)")]
    assert trip in found[:3], found
    page.locator(f'.clio-row-hits li[data-row="{trip}"] a').click()  # the hit opens its base cluster
    base = data[trip]["request_cluster"]
    page.wait_for_selector(f'.clio-detail[data-node="{base}"]')
    wait_rows(page, matching=sum(r["request_cluster"] == base for r in data))
    assert trip in table_rows(page)
    page.locator(f'#clio-rows tr[data-row="{trip}"] details > summary').click()  # its conversation, open
    shot = DOCS / "space-rows.png" if os.environ.get("CLIO_HF_UPDATE_DOCS") else tmp_path / "space-rows.png"
    page.screenshot(path=str(shot), full_page=True)  # docs/hub-and-space.md's picture, refreshed only when asked

    # the table: every clustered row at first, 20 a page, in file order; filters narrow it
    page.goto(page.base, wait_until="networkidle")
    wait_rows(page, matching=len(clustered), page=0)
    assert table_rows(page) == clustered[:20] and rows_meta(page)["pages"] == -(-len(clustered) // 20)
    page.locator("#clio-rows-next").click()
    wait_rows(page, page=1)
    assert table_rows(page) == clustered[20:40]
    page.locator("#clio-rows-language input").click()
    page.get_by_role("option", name="English", exact=True).click()
    english = [i for i in clustered if data[i]["language"] == "English"]
    assert 0 < len(english) < len(clustered), "the filter must narrow the rows for this test to mean anything"
    wait_rows(page, matching=len(english), page=0)
    assert table_rows(page) == english[:20]
    # a numeric facet's range: the small model scores every row alike, so a floor above it empties the table
    page.locator("#clio-rows-score input").click()
    page.get_by_role("option", name="learning_value").click()
    scores = sorted({data[i]["learning_value"] for i in english if data[i]["learning_value"] is not None})
    for floor in (scores[-1] + 1, scores[0]):
        page.locator("#clio-rows-low textarea, #clio-rows-low input").first.fill(str(floor))
        page.locator("#clio-rows-low textarea, #clio-rows-low input").first.press("Enter")
        wait_rows(page, matching=sum(data[i]["learning_value"] is not None and data[i]["learning_value"] >= floor for i in english))
    assert rows_meta(page)["matching"] > 0

    # export: the selected node's rows, every column, equal to select_node
    top = result.hierarchy.filter(lambda n: n["facet"] == "request" and n["parent_id"] is None).sort("size", reverse=True)[0]
    node_row(page, top["node_id"]).click()
    page.wait_for_selector(f'.clio-detail[data-node="{top["node_id"]}"]')
    page.locator("#clio-rows-export").click()
    link = page.locator("#clio-rows-file a").first
    link.wait_for()
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "rows.parquet"
    download.value.save_as(saved)
    got = datasets.Dataset.from_parquet(str(saved))
    assert got.to_list() == result.select_node("request", top["node_id"]).to_list() and len(got) == top["size"]


def test_real_result_map_follows_the_tree_lasso_and_time_chart(app, real_page, served_real_dir, real_tree):
    """Issue 21 on the real result: dimming, a real lasso, and the detail panel's chart of each day's share."""
    view = app.ClioView(str(served_real_dir), show_withheld=True)
    top = real_tree["tops"][0]
    map_follows_the_tree_and_a_lasso_lists_rows(real_page, view, top)
    days = sorted({c["period"] for t in real_tree["tops"] for c in real_tree["nodes"][t]["time_counts"]} - {"(none)"})
    assert view.run["time_column"] == "created_at" and view.run["time_period"] == "day" and len(days) > 10
    bars = real_page.locator(".clio-detail .clio-time .tbar")
    assert bars.count() == len(days) and bars.first.get_attribute("data-period") == days[0]
    mine = {c["period"]: c["count"] for c in real_tree["nodes"][top]["time_counts"]}
    assert f'{days[0]}: {mine.get(days[0], 0):,} of' in bars.first.get_attribute("title")


# ---- the app in a clean virtualenv with only spaces_app/requirements.txt ------------------------------------------
def space_venv() -> Path:
    reqs = APP_DIR / "requirements.txt"
    digest = hashlib.sha256(reqs.read_bytes() + sys.version.encode()).hexdigest()[:16]
    venv = Path.home() / ".cache" / "clio_hf" / f"space-venv-{digest}"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(reqs)], check=True, timeout=1200)
        (venv / ".complete").write_text(reqs.read_text())
    return venv


def test_app_runs_with_only_its_requirements(fx, tmp_path):
    python = str(space_venv() / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TMPDIR")}
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix)]
    port = free_port()
    env.update(PATH=os.pathsep.join(path), CLIO_DATASET=str(fx.path), HOME=str(tmp_path),
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    isolated = subprocess.run([python, "-c", "import clio_hf"], env=env, cwd=tmp_path, capture_output=True)
    assert isolated.returncode != 0, "the clean venv can import clio_hf"
    log = tmp_path / "app.log"
    with log.open("w") as out:
        proc = subprocess.Popen([python, str(APP_DIR / "app.py")], env=env, cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"the app exited:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    status = r.status
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"the app did not serve in time:\n{log.read_text()}"
                time.sleep(0.5)
        assert status == 200
        with urllib.request.urlopen(url + "config", timeout=10) as r:
            config = r.read().decode()
        assert "Software development and debugging help" in config
        assert "&lt;img src=x onerror=alert(1)&gt;" in config and json.loads(config)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---- deploy_space against the local Hub server ---------------------------------------------------------------------
DEPLOY = """
import json, sys
from pathlib import Path
from huggingface_hub import HfApi, snapshot_download
from clio_hf.space import _load_app, deploy_space

fixture, out = sys.argv[1], Path(sys.argv[2])
api = HfApi()
api.create_repo("user/clio-run", repo_type="dataset")
api.upload_folder(repo_id="user/clio-run", folder_path=fixture, repo_type="dataset")
url = deploy_space("user/clio-space", dataset="user/clio-run")
again = deploy_space("user/clio-space", dataset="user/clio-run")  # re-deploying an existing Space works
local = snapshot_download("user/clio-space", repo_type="space", local_dir=out / "space")
# The downloaded Space, with no CLIO_DATASET set, finds its dataset through clio_space.json.
import importlib.util
spec = importlib.util.spec_from_file_location("space_app", Path(local) / "app.py")
app = importlib.util.module_from_spec(spec)
sys.modules["space_app"] = app
spec.loader.exec_module(app)
view = app.ClioView(app.dataset_name())
print(json.dumps({"url": url, "again": again, "dataset": app.dataset_name(),
                  "tops": [view.trees["request"][t].name for t in view.tops["request"]]}))
"""


def test_deploy_space_uploads_a_working_space(hub_server, hub_env, fx, tmp_path, tops):  # noqa: F811
    env = {k: v for k, v in hub_env.items() if k != "CLIO_DATASET"}
    proc = run_hub_client(DEPLOY, env, str(fx.path), str(tmp_path), timeout=300)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["url"] == f"{hub_server.url}/spaces/user/clio-space" == out["again"]
    assert out["dataset"] == "user/clio-run" and out["tops"] == tops["request"]
    files = hub_server.files("user/clio-space", "space")
    assert {"app.py", "requirements.txt", "README.md", "clio_space.json"} <= set(files)
    assert files["app.py"] == (APP_DIR / "app.py").read_bytes()
    assert files["requirements.txt"] == (APP_DIR / "requirements.txt").read_bytes()
    for shared in ("layout.py", "tree_rows.py", "figures.py"):  # the package's own files, linked into spaces_app/
        assert files[shared] == (ROOT / "clio_hf" / shared).read_bytes()
    assert json.loads(files["clio_space.json"]) == {"dataset": "user/clio-run"}
    card = files["README.md"].decode()
    front = card.split("---")[1]
    for line in ("sdk: gradio", "app_file: app.py", "- user/clio-run", "sdk_version: 6."):
        assert line in front
    assert hub_server.repos[("space", "user/clio-space")]["sdk"] == "gradio"
    assert not re.search(rb"^\s*(import|from)\s+clio_hf", files["app.py"], re.M)


# ---- an installed (non-editable) clio_hf finds the app in its package data ------------------------------------------
INSTALLED = """
import json, sys
import clio_hf.space as space
app = space._load_app()
view = app.ClioView(sys.argv[1])
print(json.dumps({"package": space.__file__, "app_dir": str(space._app_dir()), "app": app.__file__,
                  "tops": [view.trees["request"][t].name for t in view.tops["request"]],
                  "card": space.space_readme("user/clio-run")}))
"""


def test_installed_layout_uses_the_packaged_app(fx, tmp_path, tops):
    """What a wheel holds (see the pyproject change in docs/hub-and-space.md): clio_hf/_space_app/ beside the code."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "clio_hf", site / "clio_hf", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(APP_DIR, site / "clio_hf" / "_space_app", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-c", INSTALLED, str(fx.path)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["package"] == str(site / "clio_hf" / "space.py")
    assert out["app_dir"] == str(site / "clio_hf" / "_space_app") and out["app"].startswith(out["app_dir"])
    assert out["tops"] == tops["request"] and "- user/clio-run" in out["card"]


def test_checkout_layout_uses_spaces_app():
    from clio_hf import space

    assert not space.PACKAGED_APP_DIR.exists(), "a stale clio_hf/_space_app/ in the checkout would shadow spaces_app/"
    assert space._app_dir() == APP_DIR


@pytest.mark.skipif("clio_hf._space_app" not in (ROOT / "pyproject.toml").read_text(),
                    reason="pyproject.toml does not ship spaces_app/ as clio_hf/_space_app yet")
def test_wheel_ships_the_space_app(tmp_path):
    import zipfile

    src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("clio_hf", "spaces_app"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    names = zipfile.ZipFile(next((tmp_path / "dist").glob("clio_hf-*.whl"))).namelist()
    for name in ("app.py", "requirements.txt", "README.md"):
        assert f"clio_hf/_space_app/{name}" in names
    for name in ("layout.py", "tree_rows.py", "figures.py"):  # links in spaces_app/: the wheel holds the files
        assert f"clio_hf/_space_app/{name}" in names


def test_bench_space_script_runs_on_a_small_result():
    """scripts/bench_space.py stays runnable (the recorded figures come from its full-size run)."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_space.py"), "--rows", "2000", "--top", "4",
                           "--per-top", "2", "--per-mid", "3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2,000 rows / 36 nodes (4 top)" in proc.stdout and "peak RSS of the app process" in proc.stdout
    assert ": met" in proc.stdout and "row search: next query" in proc.stdout
