"""`annotate` end to end: fast checks with test doubles, and every contract rule on a real packaged-model run."""

import json
import subprocess
import sys
import uuid
from pathlib import Path

import datasets
import langcodes
import numpy as np
import pytest

import clio_hf
from clio_hf import prompts
from clio_hf.facets import BUILTIN_FACETS
from clio_hf.hierarchy import NAME_SOURCES
from clio_hf.result import ClioResult
from conftest import E2E_DUPLICATES, E2E_ROWS
from fakes import HashEmbedder, ScriptedLLM


def _messages(texts):
    return datasets.Dataset.from_dict({
        "messages": [[{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}] for t in texts],
        "request": ["already here"] * len(texts),
    })


def test_column_collision_stops_before_any_model_runs(tmp_path):
    llm = ScriptedLLM()
    with pytest.raises(ValueError, match=r"\['request'\].*column_prefix"):
        clio_hf.annotate(_messages(["a b", "c d"]), llm=llm, embedder=HashEmbedder(), cache_dir=tmp_path)
    assert llm.prompts == []


def test_column_prefix_and_duplicates_share_values(tmp_path):
    texts = ["cooking pasta", "fixing python bug", "cooking pasta", "travel to japan"]
    llm = ScriptedLLM(reply=lambda p: " help with " + p[1]["content"].split("User: ")[-1].split("\n")[0] + "</answer>"
                      if "User: " in p[1]["content"] else "Some group</name>\n<summary>Some summary.</summary>")
    result = clio_hf.annotate(_messages(texts), llm=llm, embedder=HashEmbedder(), column_prefix="clio_", cache_dir=tmp_path)
    data = result.data
    assert data["request"] == ["already here"] * 4  # the input column is untouched
    assert data["clio_duplicate_of"] == [-1, -1, 0, -1]
    assert data["clio_request"][2] == data["clio_request"][0] and data["clio_request_cluster"][2] == data["clio_request_cluster"][0]
    facet_prompts = [p for p in llm.prompts if "Here is a conversation" in p[1]["content"]]
    assert sum("cooking pasta" in p[1]["content"] for p in facet_prompts) == 3  # request, task, concerning once: the duplicate is not asked
    assert result.info["rows"] == {"input": 4, "unique": 3, "duplicates": 1, "empty": 0}


def test_empty_conversations_are_counted_nulls_that_no_model_is_asked_about(tmp_path):
    rows = datasets.Dataset.from_dict({"messages": [
        [{"role": "user", "content": "how do I sort a list in python"}, {"role": "assistant", "content": "use sorted"}],
        [],
        [{"role": "user", "content": "  "}, {"role": "assistant", "content": ""}],
        [{"role": "user", "content": "a recipe for bread"}, {"role": "assistant", "content": "flour and water"}],
    ]})
    llm = ScriptedLLM(reply=lambda p: " help with code</answer>" if "User: " in p[1]["content"] else "Some group</name>\n<summary>S.</summary>")
    result = clio_hf.annotate(rows, llm=llm, embedder=HashEmbedder(), cache_dir=tmp_path,
                              config=clio_hf.ClioConfig(privacy=clio_hf.PrivacyConfig(min_rows=1, audit=False)))
    data = result.data
    for facet in ("request", "task", "language", "concerning"):
        assert [v is None for v in data[facet]] == [False, True, True, False], facet
    assert data["request_cluster"][1:3] == [-1, -1] and data["request_embedding"][1] is None
    assert sum(result.hierarchy.filter(lambda n: n["facet"] == "request" and n["parent_id"] is None)["size"]) == 2
    assert result.info["rows"]["empty"] == 2 and result.info["parse_failures"]["request"] == 0
    asked = [p[1]["content"] for p in llm.prompts if "Here is a conversation" in p[1]["content"]]
    assert asked and not any("User:  \n" in a or "<conversation>\n</conversation>" in a for a in asked)
    assert len([a for a in asked if "python" in a or "bread" in a]) == len(asked)


class UndecidedLLM(ScriptedLLM):
    """A backend whose `choose` cannot tell (as the OpenAI backend when no option is among its answer's tokens)."""

    def choose(self, prompts, options):
        self.prompts += prompts
        return [None] * len(prompts)


def test_a_facet_read_from_a_column_is_clustered_and_named_without_asking_for_values(tmp_path):
    from clio_hf.facets import LANGUAGE, REQUEST, from_column

    topics = ["bake sourdough bread", "bake rye bread", "fix a python import error", "fix a python type error",
              "plan a trip to japan", "plan a trip to peru"]
    embedder = HashEmbedder()
    vectors = [list(map(float, v)) for v in embedder.encode([f"  {t} " for t in topics])]
    vectors[5] = None  # a row without a vector is left out of the clusters, like a null value
    rows = datasets.Dataset.from_dict({"text": [f"Could you help me {t}?" for t in topics], "my_summary": [f"  {t} " for t in topics],
                                       "vecs": vectors})
    llm = ScriptedLLM(reply=lambda p: "Some group</name>\n<summary>Some summary.</summary>")
    facet = from_column(REQUEST, "my_summary", embedding_column="vecs")
    result = clio_hf.annotate(rows, facets=[facet, LANGUAGE], llm=llm, embedder=embedder, cache_dir=tmp_path,
                              config=clio_hf.ClioConfig(cluster=clio_hf.ClusterConfig(rows_per_base_cluster=2),
                                                        privacy=clio_hf.PrivacyConfig(min_rows=1, audit=False)))
    data = result.data
    assert data["request"] == topics  # the given values, stripped; no prefill is added
    assert not any("Here is a conversation" in p[1]["content"] for p in llm.prompts)  # no value was asked for
    given = np.array(vectors[:5], dtype=np.float32)
    assert np.allclose(np.array(data["request_embedding"][:5]), given / np.linalg.norm(given, axis=1, keepdims=True), atol=1e-6)
    assert data["request_embedding"][5] is None and data["request_cluster"][5] == -1
    assert len(result.hierarchy) > 0 and result.info["facets"][0]["source_column"] == "my_summary"
    public = result.for_publishing()
    assert not {"my_summary", "vecs", "text"} & set(public.data.column_names)  # the row's own text stays local
    bad = datasets.Dataset.from_dict({"text": ["a", "b"], "n": [3, 9]})
    with pytest.raises(ValueError, match=r"row 1, column 'n' \(facet 'Concerning'\): expected a whole number from 1 to 5"):
        clio_hf.annotate(bad, facets=[from_column("concerning", "n")], llm=llm, embedder=embedder, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"no column\(s\) \['missing'\]"):
        clio_hf.annotate(bad, facets=[from_column("request", "missing")], llm=llm, embedder=embedder, cache_dir=tmp_path)


def test_cli_facet_column_options():
    from argparse import Namespace

    from clio_hf.cli import _facets

    facets = _facets(Namespace(facets="request,language", facet_column=["request=my_summary", "Task=t"],
                               embedding_column=["request=vecs"]))
    assert [(f.column, f.method, f.source_column, f.embedding_column) for f in facets] == [
        ("request", "column", "my_summary", "vecs"), ("language", "language_id", None, None), ("task", "column", "t", None)]
    with pytest.raises(ValueError, match="write FACET=COLUMN"):
        _facets(Namespace(facets="request", facet_column=["request"], embedding_column=[]))
    with pytest.raises(ValueError, match="embedding_column= is for a clustered facet"):
        _facets(Namespace(facets="concerning", facet_column=[], embedding_column=["concerning=v"]))


def test_a_choice_the_backend_could_not_make_is_a_null_and_a_parse_failure(tmp_path):
    llm = UndecidedLLM(reply=lambda p: " help with code</answer>" if "User: " in p[1]["content"] else "Group</name>\n<summary>S.</summary>")
    result = clio_hf.annotate(_messages(["sort a list", "bake bread", "fix a bug"]).remove_columns("request"), llm=llm,
                              embedder=HashEmbedder(), cache_dir=tmp_path,
                              config=clio_hf.ClioConfig(privacy=clio_hf.PrivacyConfig(min_rows=1)))
    assert result.data["concerning"] == [None, None, None] and result.info["parse_failures"]["concerning"] == 3
    assert all(result.data["request"]) and len(result.hierarchy) > 0  # the open facets and the tree still work
    assert all(s is None for s in result.hierarchy["privacy_score"])  # the auditor could not tell either: withheld
    assert not any(result.hierarchy["published"])


def test_cli_help_lists_subcommands_and_bad_input_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "clio_hf.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("annotate", "view", "deploy-space"):
        assert command in out
    version = subprocess.run([sys.executable, "-m", "clio_hf.cli", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"clio-hf {clio_hf.__version__}"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    run = subprocess.run([sys.executable, "-m", "clio_hf.cli", "annotate", str(empty), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert run.returncode == 2 and "error" in run.stderr and "Traceback" not in run.stderr


def test_cli_refuses_an_out_folder_it_would_damage_before_any_model_runs(tmp_path):
    rows = tmp_path / "chats"
    (rows / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"text": ["hello there"] * 3}).to_parquet(rows / "data" / "train-00000-of-00001.parquet")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README.md").write_text("mine")
    for out, message in ((rows, "would write into the input"), (rows / "data", "would write into the input"),
                         (notes, "not empty and holds no clio_hf result"), (notes / "README.md" / "out", "is a file")):
        run = subprocess.run([sys.executable, "-m", "clio_hf.cli", "annotate", str(rows), "--text-column", "text", "--out", str(out),
                              "--llm", "transformers:/no/such/model"], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert (notes / "README.md").read_text() == "mine" and len(list((rows / "data").iterdir())) == 1


def test_cli_sizes_facet_shards_and_maps_roles(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"messages": [{"role": "developer", "content": "Be brief."},
                                                     {"role": "user", "content": text}, {"role": "tool", "content": "{}"}]}) + "\n"
                            for text in ["Where is the station?", "Wo ist der Bahnhof?", "Où est la gare ?"]))
    base = [sys.executable, "-m", "clio_hf.cli", "annotate", str(rows), "--facets", "language", "--cache-dir", str(tmp_path / "runs")]
    run = subprocess.run([*base, "--out", str(tmp_path / "bad"), "--rows-per-shard", "1"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "message 2 has an unknown role" in run.stderr and "'tool'" in run.stderr, run.stderr
    (tmp_path / "run.yaml").write_text("facets:\n  rows_per_shard: 7\nprivacy:\n  min_rows: 2\n  allowed_names: [Ada Lovelace]\n"
                                       "conversation:\n  roles: [[tool, assistant]]\n")
    run = subprocess.run([*base, "--out", str(tmp_path / "out"), "--config", str(tmp_path / "run.yaml"), "--rows-per-shard", "1",
                          "--roles", "tool=skip"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = ClioResult.load(tmp_path / "out")
    config = result.info["config"]
    assert config["facets"]["rows_per_shard"] == 1 and config["conversation"]["roles"] == [["tool", "skip"]]  # the options win
    assert config["privacy"]["min_rows"] == 2 and config["privacy"]["allowed_names"] == ["Ada Lovelace"]  # the file's
    assert config["privacy"]["min_users"] == 3  # neither: the default
    assert [[t["role"] for t in c] for c in result.data["conversation"]] == [["system", "user"]] * 3
    assert "Language shard" not in run.stderr  # no LLM is asked: one cached pass, no shards
    assert "3 rows (3 unique, 0 empty conversations)" in run.stdout and "Parse failures (null values): none" in run.stdout
    assert f"Saved to {tmp_path / 'out'}" in run.stdout and f"Next: clio-hf view {tmp_path / 'out'}" in run.stdout
    run = subprocess.run([*base, "--out", str(tmp_path / "zero"), "--rows-per-shard", "0"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "rows_per_shard must be at least 1" in run.stderr, run.stderr
    (tmp_path / "typo.yaml").write_text("privacy:\n  min_rowz: 2\n")
    run = subprocess.run([*base, "--out", str(tmp_path / "typo"), "--config", str(tmp_path / "typo.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Unknown setting(s) privacy.min_rowz" in run.stderr, run.stderr


# ------------------------------------------------------------------------------------------ the real packaged models
@pytest.mark.slow
def test_real_run_keeps_every_row_in_order(real_result, sharegpt_source):
    data = real_result.data
    assert len(data) == E2E_ROWS + len(E2E_DUPLICATES)
    assert data["id"] == sharegpt_source["id"]
    assert data.features["conversation"] == clio_hf.columns.MESSAGE_FEATURE
    assert data.features["duplicate_of"].dtype == "int64"
    duplicates = data["duplicate_of"][E2E_ROWS:]
    assert duplicates == E2E_DUPLICATES
    for row, original in enumerate(duplicates, start=E2E_ROWS):
        for column in ("request", "task", "language", "concerning", "request_cluster", "task_cluster"):
            assert data[row][column] == data[original][column]


@pytest.mark.slow
def test_real_run_facet_values_follow_the_contract(real_result):
    data = real_result.data
    for facet in (clio_hf.facets.REQUEST, clio_hf.facets.TASK):
        values = data[facet.column]
        assert all(v is None or v.startswith(facet.prefill) for v in values)
        assert sum(v is not None for v in values) >= 0.8 * len(values)
    assert data.features["concerning"].dtype == "int64"
    concerning = data["concerning"]
    assert sum(v is not None for v in concerning) >= 0.8 * len(concerning) and all(v is None or 1 <= v <= 5 for v in concerning)
    languages = [v for v in data["language"] if v is not None]
    assert languages and all(langcodes.find(v) for v in languages)
    assert "English" in languages


@pytest.mark.slow
def test_real_run_embeddings_and_clusters(real_result):
    data, tree = real_result.data, real_result.hierarchy
    for facet in ("request", "task"):
        assert data.features[f"{facet}_embedding"] == datasets.List(datasets.Value("float32"), length=384)
        vectors = [v for v in data[f"{facet}_embedding"] if v is not None]
        assert np.allclose(np.linalg.norm(np.asarray(vectors), axis=1), 1.0, atol=1e-4)
        labels = data[f"{facet}_cluster"]
        assert all((label == -1) == (value is None) for label, value in zip(labels, data[facet]))
        base = tree.filter(lambda n: n["facet"] == facet and n["level"] == 0)
        assert sorted(base["node_id"]) == sorted({label for label in labels if label >= 0})


@pytest.mark.slow
def test_real_run_hierarchy_follows_the_contract(real_result):
    tree = real_result.hierarchy
    assert {"facet", "node_id", "level", "parent_id", "name", "summary", "name_source", "size", "concerning_mean"} <= set(tree.column_names)
    assert tree.features["concerning_mean"].dtype == "float64"
    for facet in ("request", "task"):
        nodes = [n for n in tree if n["facet"] == facet]
        by_id = {n["node_id"]: n for n in nodes}
        assert len(by_id) == len(nodes)
        base = sorted((n for n in nodes if n["level"] == 0), key=lambda n: n["node_id"])
        assert [n["size"] for n in base] == sorted((n["size"] for n in base), reverse=True)
        if len(base) >= 3:
            assert max(n["level"] for n in nodes) >= 1
        for node in nodes:
            assert node["name"] and len(node["name"]) <= 120 and "<" not in node["name"] and "Could not" not in node["name"]
            assert node["summary"] and node["name_source"] in NAME_SOURCES
            children = [c for c in nodes if c["parent_id"] == node["node_id"]]
            if children:
                assert sum(c["size"] for c in children) == node["size"]
            if node["parent_id"] is not None:
                assert by_id[node["parent_id"]]["level"] == node["level"] + 1
        assert sum(n["size"] for n in nodes if n["parent_id"] is None) == sum(1 for c in real_result.data[f"{facet}_cluster"] if c >= 0)


@pytest.mark.slow
def test_real_run_names_say_what_their_rows_are_about(real_result):
    """Names judged by an embedder clio_hf never uses (all-mpnet-base-v2, the quality benchmark's judge): each row's
    first user message must pick its own cluster's name among its cluster's nearest neighbours' names well above
    chance; no name is filler (the benchmark's own patterns), a placeholder, or one row's own words."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
    import eval_quality

    judge = eval_quality.Judge()
    texts = judge.encode([eval_quality.first_user_message(c) for c in real_result.data["conversation"]])
    tree = real_result.hierarchy.to_list()
    for facet in ("request", "task"):
        base = np.asarray(real_result.data[f"{facet}_cluster"])
        names = {n["node_id"]: n["name"] for n in tree if n["facet"] == facet and n["level"] == 0}
        vectors = dict(zip(names, judge.encode(list(names.values()))))
        faithful, chance = eval_quality.faithfulness(texts, base, vectors)
        assert faithful >= chance + 0.15, (facet, faithful, chance, sorted(names.values()))
    values = {" ".join(prompts.strip_prefill(v, BUILTIN_FACETS[f].prefill).casefold().rstrip(".").split())
              for f in ("request", "task") for v in real_result.data[f] if v}
    for node in tree:
        assert not any(p.search(node["name"]) for p in eval_quality.FILLER_PATTERNS), node["name"]
        assert node["name"].casefold() not in prompts._PLACEHOLDERS | {"unnamed values"}, node["name"]
        assert " ".join(node["name"].casefold().rstrip(".").split()) not in values, node["name"]
        assert node["name_score"] is not None or node["name_source"] == "fallback"


@pytest.mark.slow
def test_real_run_saves_in_the_hub_layout_and_reloads(real_result, tmp_path):
    # datasets keys its cache of a local folder by the folder's name and config, not its path: a unique name keeps
    # an earlier run's cached split sizes out of this one
    folder = tmp_path / f"r-{uuid.uuid4().hex[:12]}"
    real_result.save_to_disk(folder)
    again = ClioResult.load(folder)
    assert again.data.to_dict() == real_result.data.to_dict()
    assert again.hierarchy.to_dict() == real_result.hierarchy.to_dict()
    tree = datasets.load_dataset(str(folder), "hierarchy", split="train")
    assert len(tree) == len(real_result.hierarchy)
    info = again.info
    for key in ("format_version", "clio_hf_version", "llm", "embedder", "facets", "prompt_version", "config", "seed", "rows", "timings", "parse_failures", "fallback_names"):
        assert key in info
    assert info["llm"] == "smollm2-135m" and info["embedder"] == "minilm-l6"
    card = (folder / "README.md").read_text()
    assert "config_name: hierarchy" in card and "config_name: default" in card
