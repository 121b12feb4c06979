"""ClioResult: the folder layout, deterministic writing, loading, and push/load against the local Hub server."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml

from clio_hf import result as result_mod
from clio_hf.result import FORMAT_VERSION, ClioResult
from hub_fixtures import hub_env, hub_server, run_hub_client  # noqa: F401  (fixtures are found by name)

MESSAGES = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
DATA_FEATURES = datasets.Features(
    {
        "conversation": MESSAGES,
        "duplicate_of": datasets.Value("int64"),
        "request": datasets.Value("string"),
        "request_embedding": datasets.List(datasets.Value("float32"), length=384),
        "request_cluster": datasets.Value("int64"),
        "concerning": datasets.Value("int64"),
    }
)
HIERARCHY_FEATURES = datasets.Features(
    {
        "facet": datasets.Value("string"),
        "node_id": datasets.Value("int64"),
        "level": datasets.Value("int64"),
        "parent_id": datasets.Value("int64"),
        "name": datasets.Value("string"),
        "summary": datasets.Value("string"),
        "name_source": datasets.Value("string"),
        "size": datasets.Value("int64"),
        "concerning_mean": datasets.Value("float64"),
    }
)
INFO = {
    "format_version": FORMAT_VERSION,
    "clio_hf_version": "0.1.0",
    "llm": "smollm2-135m",
    "embedder": "minilm-l6",
    "facets": [{"name": "Request", "question": "What is the user asking for?", "numeric": None},
               {"name": "Concerning", "question": "How concerning is this? | rate 1-5", "numeric": (1, 5)}],
    "prompt_version": "p1",
    "config": {"seed": 0, "rows_per_base_cluster": 10},
    "seed": 0,
    "rows": {"data": 30, "hierarchy": 6},
    "timings": {"extract_facets": 12.5, "embed_facets": 1.25},
    "parse_failures": {"concerning": 1},
    "fallback_names": {"request": 0},
    "created_at": "2026-11-23T10:00:00+00:00",
}
INFO_JSON = json.loads(json.dumps(INFO))  # what a reload gives: the tuple is a list


def make_result(n: int = 30) -> ClioResult:
    """30 rows in 4 base clusters (sizes 12, 8, 6, 4) under 2 top nodes (4 = 0+2, 5 = 1+3)."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n, 384)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cluster = np.repeat([0, 1, 2, 3], [12, 8, 6, 4])[:n]
    data = datasets.Dataset.from_dict(
        {
            "conversation": [[{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "ok"}]
                             for i in range(n)],
            "duplicate_of": [-1] * (n - 1) + [0],
            "request": [f"The user asks about topic {c}" for c in cluster],
            "request_embedding": emb.tolist(),
            "request_cluster": cluster.tolist(),
            "concerning": [None] + [int(i % 5) + 1 for i in range(1, n)],
        },
        features=DATA_FEATURES,
    )
    nodes = [  # (node_id, level, parent_id, name, size)
        (0, 0, 4, "Debug Python code", 12), (1, 0, 5, "Write | edit\nemails", 8), (2, 0, 4, "Explain <SQL> joins", 6),
        (3, 0, 5, "Plan trips", 4), (4, 1, None, "Programming help", 18), (5, 1, None, "Everyday writing & life", 12),
    ]
    hierarchy = datasets.Dataset.from_dict(
        {
            "facet": ["request"] * 6,
            "node_id": [x[0] for x in nodes],
            "level": [x[1] for x in nodes],
            "parent_id": [x[2] for x in nodes],
            "name": [x[3] for x in nodes],
            "summary": [f"Requests about {x[3].lower()}." for x in nodes],
            "name_source": ["llm"] * 5 + ["fallback"],
            "size": [x[4] for x in nodes],
            "concerning_mean": [1.5, 2.0, 1.25, 3.0, 1.4, 2.5],
        },
        features=HIERARCHY_FEATURES,
    )
    return ClioResult(data=data, hierarchy=hierarchy, info=dict(INFO))


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


@pytest.fixture(scope="module")
def original() -> ClioResult:
    return make_result()


@pytest.fixture(scope="module")
def saved(original, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("result")
    original.save_to_disk(path)
    return path


@pytest.fixture(scope="module")
def published(original, tmp_path_factory) -> Path:
    """What a default push publishes (`for_publishing`: no raw text, node 3 of size 4 withheld), in the same layout."""
    path = tmp_path_factory.mktemp("published")
    original.for_publishing().save_to_disk(path)
    return path


# ---- local folder ------------------------------------------------------------------------------------------------
def test_layout(saved):
    assert sorted(files_of(saved)) == [
        "README.md", "clio_run.json", "data/train-00000-of-00001.parquet", "hierarchy/train-00000-of-00001.parquet"
    ]


def test_round_trip_restores_features_and_values(original, saved):
    loaded = ClioResult.load(saved)
    assert loaded.data.features == original.data.features
    assert loaded.data.features["request_embedding"] == datasets.List(datasets.Value("float32"), length=384)
    assert loaded.hierarchy.features == original.hierarchy.features
    assert loaded.data.to_dict() == original.data.to_dict()
    assert loaded.hierarchy.to_dict() == original.hierarchy.to_dict()
    assert loaded.data["concerning"][0] is None and loaded.hierarchy["parent_id"][-2:] == [None, None]
    assert loaded.info == {**INFO_JSON, "files": {"data": {"rows": 30, "shards": ["train-00000-of-00001.parquet"]}, "hierarchy": {"rows": 6, "shards": ["train-00000-of-00001.parquet"]}}}


def test_plain_load_dataset_reads_both_configs(original, saved):
    assert datasets.get_dataset_config_names(str(saved)) == ["default", "hierarchy"]
    rows = datasets.load_dataset(str(saved), split="train")
    tree = datasets.load_dataset(str(saved), "hierarchy", split="train")
    assert rows.features == original.data.features and rows.to_dict() == original.data.to_dict()
    assert tree.features == original.hierarchy.features and tree.to_dict() == original.hierarchy.to_dict()


def test_resave_is_byte_identical(original, saved, tmp_path):
    make_result().save_to_disk(tmp_path / "again")
    ClioResult.load(saved).save_to_disk(tmp_path / "reloaded")
    assert files_of(tmp_path / "again") == files_of(saved)
    assert files_of(tmp_path / "reloaded") == files_of(saved)


def test_sharding_and_stale_shards_removed(original, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-00007-of-00009.parquet").write_bytes(b"stale")
    (tmp_path / "data" / "notes.txt").write_text("not ours")
    monkeypatch.setattr(result_mod, "MAX_SHARD_BYTES", original.data.data.nbytes // 3 + 1)
    original.save_to_disk(tmp_path, overwrite=True)  # stale shards and no run record: not a result yet
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "notes.txt", *(f"train-0000{i}-of-00003.parquet" for i in range(3))
    ]
    assert datasets.load_dataset(str(tmp_path), split="train").to_dict() == original.data.to_dict()

    monkeypatch.undo()
    original.save_to_disk(tmp_path)
    assert sorted(p.name for p in (tmp_path / "data").glob("*.parquet")) == ["train-00000-of-00001.parquet"]
    assert ClioResult.load(tmp_path).data.to_dict() == original.data.to_dict()
    assert not list(tmp_path.glob(".clio-tmp-*"))


def test_a_folder_overwritten_by_a_new_run_loads_the_new_rows(tmp_path):
    # `load_dataset(folder)` keys its Arrow cache on the folder's name; a rerun with the same --out must not read stale
    make_result(30).save_to_disk(tmp_path / "out")
    assert len(ClioResult.load(tmp_path / "out").data) == 30
    newer = make_result(12)
    newer.save_to_disk(tmp_path / "out")
    again = ClioResult.load(tmp_path / "out")
    assert again.data.to_dict() == newer.data.to_dict() and again.hierarchy.to_dict() == newer.hierarchy.to_dict()


def test_a_non_empty_folder_that_is_not_a_result_is_refused(original, tmp_path):
    (tmp_path / "README.md").write_text("my notes")
    with pytest.raises(FileExistsError, match="not empty and holds no clio_hf result.*--overwrite"):
        original.save_to_disk(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"] and (tmp_path / "README.md").read_text() == "my notes"
    original.save_to_disk(tmp_path, overwrite=True)
    assert len(ClioResult.load(tmp_path).data) == 30
    original.save_to_disk(tmp_path)  # a folder holding a result is simply replaced


def test_a_missing_shard_is_an_error_not_a_smaller_result(original, tmp_path, monkeypatch):
    monkeypatch.setattr(result_mod, "MAX_SHARD_BYTES", original.data.data.nbytes // 3 + 1)
    original.save_to_disk(tmp_path)
    record = json.loads((tmp_path / "clio_run.json").read_text())["files"]
    assert record["data"] == {"rows": 30, "shards": [f"train-0000{i}-of-00003.parquet" for i in range(3)]}
    assert record["hierarchy"] == {"rows": 6, "shards": ["train-00000-of-00001.parquet"]}
    (tmp_path / "data" / "train-00001-of-00003.parquet").unlink()
    with pytest.raises(ValueError, match=r"incomplete: its default config has 20 rows where the run record says 30"):
        ClioResult.load(tmp_path)


@pytest.mark.parametrize("contents", [{}, {"notes.txt": "hello"}])
def test_a_folder_that_is_not_a_result_says_so(tmp_path, contents):
    for name, text in contents.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(FileNotFoundError, match="is not a clio_hf result: it has neither clio_run.json nor data/ shards"):
        ClioResult.load(tmp_path)


def test_card_declares_configs_and_shows_the_tree(saved):
    readme = (saved / "README.md").read_text()
    meta = front_matter(readme)
    assert "clio_hf" in meta["tags"] and meta["pretty_name"] == "clio_hf result"
    assert meta["configs"] == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]},
        {"config_name": "hierarchy", "data_files": [{"split": "train", "path": "hierarchy/train-*"}]},
    ]
    body = readme.split("---\n", 2)[2]
    assert "| name | size | share | summary |" in body
    assert "| **Programming help** | 18 | 60.0% | Requests about programming help. |" in body
    assert "| ↳ Debug Python code | 12 | 40.0% |" in body
    assert "Write \\| edit emails" in body and "&lt;SQL&gt;" in body  # escaped: no broken rows, no raw tags
    # the tree lists the bigger top node first, and children right under their parent
    assert body.index("Programming help") < body.index("Debug Python") < body.index("Explain") < body.index("Everyday")
    for expected in ("smollm2-135m", "minilm-l6", "extract_facets", "12.50", "rows_per_base_cluster", "p1"):
        assert expected in body


def test_card_metadata_reads_back_with_huggingface_hub(tmp_path):
    from huggingface_hub import DatasetCard

    result = make_result()
    languages = ["English"] * 20 + ["French, with some English"] * 6 + ["German"] * 4  # German: under min_rows
    result = ClioResult(data=result.data.add_column("language", languages), hierarchy=result.hierarchy,
                        info={**INFO, "source": "id:org/chats", "source_license": "mit",
                              "config": {"privacy": {"min_rows": 5}}})
    result.save_to_disk(tmp_path / "out")
    card = DatasetCard.load(tmp_path / "out" / "README.md").data
    assert card.source_datasets == ["org/chats"] and card.license == "mit" and card.size_categories == ["n<1K"]
    assert card.language == ["en", "fr"] and card.pretty_name == "Clio analysis of org/chats"
    assert "feature-extraction" in card.task_categories and "clio_hf" in card.tags
    assert [c["config_name"] for c in card.configs] == ["default", "hierarchy"]
    assert ClioResult.load(tmp_path / "out").data["language"] == languages

    builtin = ClioResult(data=make_result().data, hierarchy=make_result().hierarchy, info={**INFO, "source": "id:sharegpt"})
    builtin.save_to_disk(tmp_path / "builtin")
    card = DatasetCard.load(tmp_path / "builtin" / "README.md").data
    assert card.source_datasets == ["anon8231489123/ShareGPT_Vicuna_unfiltered"] and card.license is None
    local = ClioResult(data=make_result().data, hierarchy=make_result().hierarchy, info={**INFO, "source": "path:/home/me/rows.jsonl:1"})
    local.save_to_disk(tmp_path / "local")
    card = DatasetCard.load(tmp_path / "local" / "README.md").data
    assert card.source_datasets is None and card.pretty_name == "Clio analysis of local:rows.jsonl"


def test_size_categories_follow_the_hubs_buckets():
    from clio_hf.result import _size_category

    assert [_size_category(n) for n in (0, 999, 1_000, 99_999, 100_000, 1_000_000, 10**13)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "n>1T"]


def test_run_file_is_sorted_pretty_json(saved):
    text = (saved / "clio_run.json").read_text()
    assert json.loads(text) == {**INFO_JSON, "files": {"data": {"rows": 30, "shards": ["train-00000-of-00001.parquet"]}, "hierarchy": {"rows": 6, "shards": ["train-00000-of-00001.parquet"]}}}
    assert text == json.dumps({**INFO, "files": {"data": {"rows": 30, "shards": ["train-00000-of-00001.parquet"]}, "hierarchy": {"rows": 6, "shards": ["train-00000-of-00001.parquet"]}}}, indent=2, sort_keys=True) + "\n"


def test_older_info_without_keys_is_read(original, tmp_path, caplog):
    old = {"format_version": 1, "llm": "smollm2-135m"}  # an early run record
    ClioResult(original.data, original.hierarchy, old).save_to_disk(tmp_path)
    (tmp_path / "clio_run.json").write_text(json.dumps(old))
    with caplog.at_level(logging.WARNING, logger="clio_hf.result"):
        loaded = ClioResult.load(tmp_path)
    assert loaded.info == old and "before clio_hf recorded its shards" in caplog.text
    loaded.save_to_disk(tmp_path / "resaved")  # the card renders with the keys missing
    assert json.loads((tmp_path / "resaved" / "clio_run.json").read_text())["rows"] == {"data": 30, "hierarchy": 6}

    (tmp_path / "clio_run.json").unlink()
    with caplog.at_level(logging.WARNING, logger="clio_hf.result"):
        assert ClioResult.load(tmp_path).info == {}
    assert "clio_run.json" in caplog.text


def test_empty_hierarchy_round_trips(original, tmp_path):
    # a run with no clustered facet has no nodes; `datasets` alone refuses to load a split with no rows
    empty = original.hierarchy.select([])
    ClioResult(original.data, empty, INFO).save_to_disk(tmp_path)
    loaded = ClioResult.load(tmp_path)
    assert len(loaded.hierarchy) == 0 and loaded.hierarchy.features == original.hierarchy.features
    assert "Top of the tree" not in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize("bad", ["./missing", "/no/such/dir", "a/b/c", "~/x"])
def test_missing_local_path_is_an_error_not_a_repo(bad):
    with pytest.raises(FileNotFoundError):
        ClioResult.load(bad)


def test_repo_ids_and_directories_are_told_apart(saved, monkeypatch):
    assert result_mod._is_local(saved) and result_mod._is_local(str(saved))
    monkeypatch.setenv("HOME", str(saved.parent))
    assert result_mod._is_local(f"~/{saved.name}")
    assert not result_mod._is_local("user/clio-run") and not result_mod._is_local("clio-run")


# ---- Hub (local server; clients run in subprocesses because HF_ENDPOINT is read at import time) ---------------
# Each subprocess costs ~2.5 s of imports, so one script does several pushes: argv = repo, then one word per push.
PUSH = """
import sys, logging
import clio_hf.result as r
from test_result import make_result
logging.basicConfig(level=logging.WARNING)
for step in sys.argv[2:] or ["same"]:
    result = make_result()
    r.MAX_SHARD_BYTES = 20_000 if step == "small-shards" else 500 * 2**20
    if step in ("changed", "small-shards"):
        result.info["timings"]["extract_facets"] = 13.0
    if step == "empty-hierarchy":
        result.hierarchy = result.hierarchy.select([])
    try:
        print(step, result.push_to_hub(sys.argv[1]))
    except Exception as err:
        if step != "may-fail":
            raise
        print("failed", type(err).__name__, err)
    if step == "empty-hierarchy":
        loaded = r.ClioResult.load(sys.argv[1])
        public = result.for_publishing()
        assert len(loaded.hierarchy) == 0 and loaded.hierarchy.features == public.hierarchy.features
        assert loaded.data.to_dict() == public.data.to_dict()
        print("empty-ok")
"""

LOAD = """
import json, sys, datasets
from clio_hf.result import ClioResult
from test_result import make_result, INFO_JSON
repo, want = sys.argv[1], make_result().for_publishing()
rows = datasets.load_dataset(repo, split="train")
tree = datasets.load_dataset(repo, "hierarchy", split="train")
res = ClioResult.load(repo)
for got in (rows, res.data):
    assert got.features == want.data.features, got.features
    assert all(a == b for a, b in zip(got, want.data, strict=True))
for got in (tree, res.hierarchy):
    assert got.features == want.hierarchy.features, got.features
    assert got.to_list() == want.hierarchy.to_list()
assert res.info.pop("files")["data"]["rows"] == len(want.data)
assert res.info == json.loads(json.dumps(want.info)), res.info
assert "conversation" not in rows.column_names and 3 not in tree["node_id"] and set(rows["request_cluster"]) == {-1, 0, 1, 2}
print("ok")
"""


def pushed(out: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith(("same ", "changed ", "small-"))]


def test_push_then_load_from_the_hub(hub_server, hub_env, published):
    out = run_hub_client(PUSH, hub_env, "user/clio-run").stdout
    commits = hub_server.commits("user/clio-run")
    assert len(commits) == 2  # the repo's initial commit, then the whole result in one commit
    assert pushed(out) == [f"{hub_server.url}/datasets/user/clio-run/commit/{commits[-1]['oid']}"]
    remote = hub_server.files("user/clio-run")
    assert remote.pop(".gitattributes") and remote == files_of(published)  # the Hub layout is the local layout
    assert run_hub_client(LOAD, hub_env, "user/clio-run").stdout.strip() == "ok"


def test_repush_same_result_makes_no_commit(hub_server, hub_env):
    out = run_hub_client(PUSH, hub_env, "user/repush", "same", "same", "changed").stdout
    first, again, changed = pushed(out)
    commits = hub_server.commits("user/repush")
    assert len(commits) == 3  # initial, first push, the changed push; the identical re-push committed nothing
    assert again == first and first.endswith(commits[1]["oid"])
    before, after = commits[1]["files"], commits[2]["files"]
    assert {p for p, e in after.items() if before.get(p, {}).get("git") != e["git"]} == {"README.md", "clio_run.json"}


def test_repush_with_fewer_shards_deletes_stale_ones(hub_server, hub_env):
    run_hub_client(PUSH, hub_env, "user/reshard", "small-shards", "same")
    first, second = hub_server.commits("user/reshard")[1:]
    assert sum(p.startswith("data/") for p in first["files"]) > 1
    assert [p for p in second["files"] if p.startswith("data/")] == ["data/train-00000-of-00001.parquet"]


def test_failed_push_raises_and_a_retry_succeeds(hub_server, hub_env, published):
    hub_server.fail_next_commits(1)
    out = run_hub_client(PUSH, hub_env, "user/retry", "may-fail", "same").stdout
    assert "failed HfHubHTTPError" in out and "injected commit failure" in out and len(pushed(out)) == 1
    assert len(hub_server.commits("user/retry")) == 2  # initial + the retry: the failed push left nothing behind
    remote = hub_server.files("user/retry")
    assert remote.pop(".gitattributes") and remote == files_of(published)


def test_empty_hierarchy_from_the_hub(hub_env):
    assert "empty-ok" in run_hub_client(PUSH, hub_env, "user/empty", "empty-hierarchy").stdout


def test_select_node_and_drop_nodes_return_the_rows_under_a_subtree(saved, tmp_path):
    """Node 4 holds base clusters 0 and 2; rows keep every column and the result's order."""
    from clio_hf.cli import main

    result = ClioResult.load(saved)
    clusters = result.data["request_cluster"]
    under = result.select_node("request", 4)
    assert isinstance(under, datasets.Dataset) and under.column_names == result.data.column_names
    assert under["request_cluster"] == [c for c in clusters if c in (0, 2)]
    assert result.select_node("Request", 1)["conversation"] == [r["conversation"] for r in result.data if r["request_cluster"] == 1]
    kept = result.drop_nodes("request", [4, 3])
    assert kept["request_cluster"] == [c for c in clusters if c == 1]
    assert len(result.select_nodes("request", [4, 0])) == len(under)  # a child of a chosen node counts once
    with pytest.raises(ValueError, match=r"no node 9 \(node ids run from 0 to 5\)"):
        result.select_node("request", 9)
    with pytest.raises(ValueError, match=r"No tree for facet 'task'.*\['request'\]"):
        result.drop_nodes("task", [0])
    # the CLI writes the same rows
    assert main(["export", str(saved), "--facet", "request", "--node", "4", "--out", str(tmp_path / "n4.parquet")]) == 0
    assert datasets.Dataset.from_parquet(str(tmp_path / "n4.parquet"))["request"] == under["request"]
    assert main(["export", str(saved), "--facet", "request", "--node", "4", "--node", "3", "--drop",
                 "--out", str(tmp_path / "rest.jsonl")]) == 0
    assert datasets.Dataset.from_json(str(tmp_path / "rest.jsonl"))["request_cluster"] == kept["request_cluster"]
    assert main(["export", str(saved), "--facet", "request", "--node", "7", "--out", str(tmp_path / "x.csv")]) == 2


def test_notebook_figures_are_the_spaces_drawings(saved):
    """visualize_tree / visualize_map draw with clio_hf.figures, the module the Space uses (a link in spaces_app/)."""
    import plotly.graph_objects as go

    from clio_hf.result import ClioResult

    result = ClioResult.load(saved)
    tree = result.visualize_tree()
    assert isinstance(tree, go.Figure) and list(tree.data[0].ids) == [str(i) for i in result.hierarchy["node_id"]]
    assert "Explain &lt;SQL&gt; joins" in tree.data[0].labels  # LLM-written names are escaped, as in the Space
    xy = np.random.default_rng(1).standard_normal((len(result.data), 2))
    with pytest.raises(ValueError, match="request_x"):
        result.visualize_map()
    result.data = result.data.add_column("request_x", xy[:, 0].tolist()).add_column("request_y", xy[:, 1].tolist())
    by_top = result.visualize_map()
    points = [c for t in by_top.data if t.name != "clusters" for c in t.customdata]
    assert sorted(c[3] for c in points) == list(range(len(result.data) - 1))  # every original row, each once
    assert {t.name for t in by_top.data} == {"Programming help", "Everyday writing &amp; life", "clusters"}
    by_base = result.visualize_map(color_by="level 0")
    assert {t.name for t in by_base.data} - {"clusters"} == {"Debug Python code", "Write | edit\nemails",
                                                          "Explain &lt;SQL&gt; joins", "Plan trips"}
    assert by_base.layout.dragmode == "lasso" and result.visualize_map(color_by="concerning").data[0].marker.showscale
    with pytest.raises(ValueError, match="no time_counts"):
        result.visualize_trends()
    with pytest.raises(ValueError, match="No tree for facet 'task'"):
        result.visualize_tree("task")
