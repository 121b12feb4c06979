import itertools
import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

from clio_hf.cluster import cluster_facets
from clio_hf.config import ClusterConfig, HierarchyConfig
from clio_hf.embed import embed_facets
from clio_hf.facets import CONCERNING, REQUEST
from clio_hf.hierarchy import NAME_SOURCES, build_hierarchy, level_targets
from clio_hf.keyphrases import Keyphrases, phrase_name
from conftest import kill_when_logged
from fakes import HashEmbedder, ScriptedLLM, said_by_users

TOPICS = ["python code bug", "cooking pasta recipe", "travel plan japan", "poem about love", "tax form help",
          "fitness workout plan", "email to boss", "history essay rome", "math homework algebra", "guitar chords song"]


def _clustered(n_rows: int, rows_per_cluster: int = 5, dim: int = 32) -> datasets.Dataset:
    values = [f"{REQUEST.prefill} {TOPICS[i % len(TOPICS)]} number {i % 3}" for i in range(n_rows)]
    ds = datasets.Dataset.from_dict({
        "request": values,
        "concerning": [(i % 5) + 1 if i % 7 else None for i in range(n_rows)],
        "duplicate_of": [-1] * n_rows,
        "conversation": said_by_users(values),
    })
    ds = embed_facets(ds, HashEmbedder(dim), facets=[REQUEST])
    return cluster_facets(ds, facets=[REQUEST], config=ClusterConfig(rows_per_base_cluster=rows_per_cluster))


def _check_tree(tree: datasets.Dataset, data: datasets.Dataset):
    nodes = {n["node_id"]: n for n in tree}
    assert len(nodes) == len(tree), "node ids are unique"
    base = [n for n in tree if n["level"] == 0]
    assert sorted(n["node_id"] for n in base) == list(range(len(base)))
    assert [n["size"] for n in sorted(base, key=lambda n: n["node_id"])] == sorted((n["size"] for n in base), reverse=True)
    for node in tree:
        assert node["name"] and len(node["name"]) <= 120 and "<" not in node["name"]
        assert node["summary"]
        assert node["name_source"] in NAME_SOURCES and isinstance(node["name_score"], float)
        children = [c for c in tree if c["parent_id"] == node["node_id"]]
        if node["level"] > 0:
            assert children and sum(c["size"] for c in children) == node["size"]
            assert all(c["level"] == node["level"] - 1 for c in children)
        if node["parent_id"] is not None:
            assert nodes[node["parent_id"]]["level"] == node["level"] + 1
    labels = data["request_cluster"]
    for node in base:
        assert node["size"] == sum(1 for label in labels if label == node["node_id"])
    tops = [n for n in tree if n["parent_id"] is None]
    assert sum(n["size"] for n in tops) == sum(1 for label in labels if label >= 0)
    if len(base) >= 3:
        assert max(n["level"] for n in tree) >= 1


def _good_llm():
    counter = itertools.count()

    def reply(prompt):
        text = prompt[-2]["content"]
        return f"Plan trips variant {next(counter)}</name>\n<summary>Users asked for help with things.</summary>"

    return ScriptedLLM(reply=reply, pick=lambda prompt, n: len(prompt[-2]["content"]) % n)


def test_tree_invariants_with_a_well_behaved_llm():
    data = _clustered(60)
    tree = build_hierarchy(data, _good_llm(), HashEmbedder(), facets=[REQUEST, CONCERNING])
    _check_tree(tree, data)
    assert set(tree["facet"]) == {"request"}
    assert tree.features["concerning_mean"].dtype == "float64"
    assert all(n["name_source"] in ("llm", "keyphrase") for n in tree if n["level"] == 0)
    top = [n for n in tree if n["parent_id"] is None]
    assert 1 <= len(top) <= 10


@pytest.mark.parametrize(
    "reply",
    [
        lambda p: "",  # nothing at all
        lambda p: "Same name</name>\n<summary>Same.</summary>",  # every cluster and parent the same name
        lambda p: "\x00\x01 <<<>>> </answer></name>",  # garbage
        lambda p: "name</name>",  # placeholder text
    ],
    ids=["empty", "duplicate", "garbage", "placeholder"],
)
def test_terminates_with_valid_tree_on_adversarial_llm_output(reply):
    data = _clustered(80, rows_per_cluster=4)
    llm = ScriptedLLM(reply=reply, pick=lambda prompt, n: 0)
    tree = build_hierarchy(data, llm, HashEmbedder(), facets=[REQUEST, CONCERNING], config=HierarchyConfig(max_top_nodes=3))
    _check_tree(tree, data)
    assert len([n for n in tree if n["parent_id"] is None]) <= 3
    if reply("") in ("", "\x00\x01 <<<>>> </answer></name>", "name</name>"):
        assert all(n["name_source"] == "fallback" for n in tree if n["level"] == 0)
        _assert_keyphrase_names(tree, data)
    assert len(llm.prompts) < 2000  # bounded work


def test_numeric_means_aggregate_rows():
    data = _clustered(40)
    tree = build_hierarchy(data, _good_llm(), HashEmbedder(), facets=[REQUEST, CONCERNING])
    for node in tree.filter(lambda n: n["level"] == 0):
        values = [c for c, label in zip(data["concerning"], data["request_cluster"]) if label == node["node_id"] and c is not None]
        assert node["concerning_mean"] == pytest.approx(sum(values) / len(values))


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_tiny_inputs(rows):
    data = _clustered(rows, rows_per_cluster=1)
    tree = build_hierarchy(data, _good_llm(), HashEmbedder(), facets=[REQUEST])
    _check_tree(tree, data)
    assert len(tree.filter(lambda n: n["level"] == 0)) == len(set(data["request_cluster"]))


def test_level_targets_shrink_geometrically_to_the_top():
    config = HierarchyConfig(max_top_nodes=10, branching=4)
    assert level_targets(2, config) == []
    assert level_targets(3, config) == [1]
    assert level_targets(10, config) == [3]
    assert level_targets(1000, config) == [316, 100, 32, 10]
    for k in range(3, 3000, 37):
        targets = level_targets(k, config)
        assert targets and targets[-1] <= 10 and all(a > b for a, b in zip([k, *targets], targets))


def test_naming_samples_share_their_prompt_so_the_material_is_prefilled_once():
    data = _clustered(60)
    llm = _good_llm()
    build_hierarchy(data, llm, HashEmbedder(), facets=[REQUEST], config=HierarchyConfig(name_samples=3))
    naming = [p for p in llm.prompts if p[-1]["content"] == "<name>"]
    heads = {}
    for prompt in naming:
        heads.setdefault(str(prompt[:-2]), []).append(prompt)
    assert heads and all(len(same) == 3 for same in heads.values()), "greedy + 2 samples per named item"
    assert all(all(p == same[0] for p in same) for same in heads.values()), "samples differ by seed, not by prompt"
    assert all("<answers>" in p[1]["content"] or "<groups>" in p[1]["content"] for p in naming), "values in the head"


def test_the_sample_that_fits_the_cluster_names_it_even_when_outvoted():
    """Two off-topic answers agree with each other; the one answer that describes the members must still win."""
    data = _clustered(40)
    seen: dict[str, int] = {}

    def reply(prompt):
        material = prompt[1]["content"]
        if "<answers>" not in material:
            return "Everyday help</name>"
        turn = seen[material] = seen.get(material, 0) + 1
        if turn < 3:
            return f"Another group of {'similar' if turn == 1 else 'related'} conversations</name>"
        first_value = material.split("<answers>\n- ", 1)[1].split("\n", 1)[0]
        return f"Topic {' '.join(w for w in first_value.split() if w.isalpha() and w != 'number')}</name>"

    tree = build_hierarchy(data, ScriptedLLM(reply=reply), HashEmbedder(), facets=[REQUEST], config=HierarchyConfig(name_samples=3))
    base = [n for n in tree if n["level"] == 0]
    assert base and not any("conversations" in n["name"] for n in base)
    for node in base:
        rows = [v for v, c in zip(data["request"], data["request_cluster"]) if c == node["node_id"]]
        assert set(node["name"].lower().replace(",", "").split()) & set(" ".join(rows).split()), node["name"]


def test_a_name_or_summary_that_copies_a_member_is_never_used():
    data = _clustered(40)

    def reply(prompt):  # the first value shown, word for word, as name and as summary
        first_value = prompt[1]["content"].split("<answers>\n- ", 1)[-1].split("\n", 1)[0]
        return f"{first_value}</name>\n<summary>{first_value} and more.</summary>"

    tree = build_hierarchy(data, ScriptedLLM(reply=reply), HashEmbedder(), facets=[REQUEST])
    values = [v.removeprefix(REQUEST.prefill).strip().casefold() for v in data["request"]]
    for node in tree:
        assert not any(node["name"].casefold() == v or v in node["summary"].casefold() for v in values), node


def test_naming_shows_progress_unless_datasets_bars_are_off(capsys):
    data = _clustered(60)
    llm = ScriptedLLM(reply=lambda p: "A name</name><summary>A summary.</summary>")
    build_hierarchy(data, llm, HashEmbedder(), facets=[REQUEST])
    shown = capsys.readouterr().err
    assert "Naming Request base clusters" in shown and "12/12" in shown and "Naming Request level 1 parents" in shown
    datasets.disable_progress_bars()
    try:
        build_hierarchy(data, llm, HashEmbedder(), facets=[REQUEST])
    finally:
        datasets.enable_progress_bars()
    assert "Naming" not in capsys.readouterr().err


NAMING_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
import datasets, clio_hf
from fakes import ScriptedLLM, HashEmbedder

class Naming(ScriptedLLM):
    # Facet values echo the row's topic at once; every naming call is slow and logged once it has returned.
    def generate(self, prompts, **kwargs):
        if "User: " in prompts[0][1]["content"]:
            return [" ask about " + p[1]["content"].split("User: ", 1)[1].split()[0] + "</answer>" for p in prompts]
        time.sleep(0.2)
        out = super().generate(prompts, **kwargs)
        with open(sys.argv[2], "a") as f:
            f.write(json.dumps([p[-2]["content"][:40] for p in prompts]) + "\n")
        return out

def reply(prompt):
    return "Topic " + str(len(prompt[1]["content"]) % 97) + "</name>\n<summary>Users asked about it.</summary>"

rows = [{"messages": [{"role": "user", "content": f"topic{i % 30} question number {i}"}, {"role": "assistant", "content": "ok"}]} for i in range(60)]
config = clio_hf.ClioConfig(cluster=clio_hf.ClusterConfig(rows_per_base_cluster=2),
                            hierarchy=clio_hf.HierarchyConfig(name_samples=2),
                            privacy=clio_hf.PrivacyConfig(audit=False))
result = clio_hf.annotate(datasets.Dataset.from_list(rows), facets=[clio_hf.facets.REQUEST], llm=Naming(reply=reply),
                          embedder=HashEmbedder(), config=config, cache_dir=sys.argv[1])
json.dump(result.hierarchy.to_dict(), open(sys.argv[1] + "/tree.json", "w"))
"""


def _naming_run(cache: Path, log: Path, kill_after_calls: int | None = None):
    cmd = [sys.executable, "-c", NAMING_SCRIPT, str(cache), str(log), str(Path(__file__).parent)]
    if kill_after_calls is None:
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        return json.loads((cache / "tree.json").read_text())
    kill_when_logged(cmd, log, kill_after_calls)


def _calls(log: Path) -> list:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_a_run_killed_while_naming_resumes_without_asking_finished_names_again(tmp_path):
    fresh = _naming_run(tmp_path / "fresh", tmp_path / "fresh.log")
    everything = _calls(tmp_path / "fresh.log")
    assert len(everything) >= 4  # base names (greedy, then sampled), parent names (greedy, then sampled)
    _naming_run(tmp_path / "cache", tmp_path / "first.log", kill_after_calls=2)
    first = _calls(tmp_path / "first.log")
    assert 2 <= len(first) < len(everything), "killed while naming"
    resumed = _naming_run(tmp_path / "cache", tmp_path / "second.log")
    second = _calls(tmp_path / "second.log")
    # every call that returned before the kill is read back (one may have returned and died before its journal line)
    assert len(everything) - len(first) <= len(second) <= len(everything) - len(first) + 1
    assert second == everything[len(everything) - len(second):]  # the rest, in order
    assert resumed == fresh
    assert not list((tmp_path / "cache").rglob("naming-*.jsonl"))  # the journal goes once the tree is saved


def _assert_keyphrase_names(tree, data, min_rows=5):
    """Every name is made of terms that at least `min_rows` rows contain, and no name is one row's value."""
    values = [v.removeprefix(REQUEST.prefill).strip().lower() for v in data["request"]]
    for node in tree:
        name = node["name"].lower()
        assert name not in values and "unnamed" not in name
        for term in name.replace(" and ", ", ").split(", "):
            assert sum(term in v for v in values) >= min_rows, (term, node["name"])


def test_a_filler_answer_loses_to_the_keyphrases_of_the_members():
    data = _clustered(60)
    llm = ScriptedLLM(reply=lambda p: "Various user questions</name>\n<summary>Users asked many things.</summary>")
    tree = build_hierarchy(data, llm, HashEmbedder(), facets=[REQUEST])
    _check_tree(tree, data)
    assert not any("various" in n["name"].lower() for n in tree)
    assert all(n["name_source"] == "keyphrase" for n in tree if n["level"] == 0)
    _assert_keyphrase_names(tree, data)
    base = [n for n in tree if n["level"] == 0]
    assert len({n["name"] for n in base}) == len(base), "siblings never share a name"
    for node in base:  # the name names what the cluster's rows are about
        rows = [v for v, c in zip(data["request"], data["request_cluster"]) if c == node["node_id"]]
        topic = next(t for t in TOPICS if t in rows[0])
        assert set(node["name"].lower().replace(",", "").split()) & set(topic.split()), (node["name"], topic)


def test_an_llm_name_that_fits_its_members_wins_and_its_score_is_kept():
    def reply(prompt):  # names the group from the first value it is shown, as a good model would
        shown = prompt[1]["content"].split("<answers>\n- ", 1)[-1].split("\n", 1)[0]
        words = " ".join(w for w in shown.split() if w.isalpha() and w != "number")
        return f"{words} requests</name>\n<summary>People ask about {words}.</summary>"

    data = _clustered(60)
    tree = build_hierarchy(data, ScriptedLLM(reply=reply), HashEmbedder(), facets=[REQUEST])
    base = [n for n in tree if n["level"] == 0]
    assert sum(n["name_source"] == "llm" for n in base) >= len(base) // 2
    assert all(n["summary"].startswith("People ask about") for n in base if n["name_source"] == "llm")
    assert all(n["name_score"] >= 0 for n in base) and np.mean([n["name_score"] for n in base]) > 0.3


def test_the_top_level_takes_as_many_nodes_as_the_data_separates():
    values = [f"{REQUEST.prefill} {TOPICS[i % 10]} variant {'ab'[i // 10 % 2]}" for i in range(200)]  # 10 topics x 2
    data = datasets.Dataset.from_dict({"request": values, "duplicate_of": [-1] * 200, "conversation": said_by_users(values)})
    data = embed_facets(data, HashEmbedder(256), facets=[REQUEST])
    data = cluster_facets(data, facets=[REQUEST], config=ClusterConfig(rows_per_base_cluster=10))
    config = HierarchyConfig(max_top_nodes=10)
    tree = build_hierarchy(data, _good_llm(), HashEmbedder(256), facets=[REQUEST], config=config)
    _check_tree(tree, data)
    base, top = [n for n in tree if n["level"] == 0], [n for n in tree if n["parent_id"] is None]
    assert len(base) == 20 and level_targets(20, config) == [5]  # what sizing by branching alone would give
    assert len(top) >= 8, [n["name"] for n in top]  # 10 topics, two of which share the word "plan"
    top_of_topic = {}
    for value, cluster in zip(data["request"], data["request_cluster"]):
        top_of_topic.setdefault(value.split(" variant")[0], set()).add(tree[cluster]["parent_id"])
    assert all(len(tops) == 1 for tops in top_of_topic.values()), "a topic's variants stay under one top node"


def test_every_node_keeps_its_keyphrases_and_each_is_shared_by_enough_rows():
    data = _clustered(60)
    tree = build_hierarchy(data, _good_llm(), HashEmbedder(), facets=[REQUEST], min_rows=3)
    values = [v.lower() for v in data["request"]]
    labels = np.asarray(data["request_cluster"])
    kids = {n["node_id"]: [k["node_id"] for k in tree if k["parent_id"] == n["node_id"]] for n in tree}

    def base_under(node_id):
        return [node_id] if not kids[node_id] else [b for k in kids[node_id] for b in base_under(k)]

    assert all(n["keyphrases"] for n in tree), "every node of this tree has terms to show"
    for node in tree:
        mine = [values[i] for i in np.flatnonzero(np.isin(labels, base_under(node["node_id"])))]
        for term in node["keyphrases"]:
            assert sum(term in v for v in values) >= 3 and any(term in v for v in mine), (node["name"], term)


def test_names_are_deterministic():
    data = _clustered(60)
    first = build_hierarchy(data, _good_llm(), HashEmbedder(), facets=[REQUEST])
    again = build_hierarchy(data, _good_llm(), HashEmbedder(), facets=[REQUEST])
    assert first.to_list() == again.to_list()


def test_keyphrases_are_distinctive_terms_enough_rows_share():
    values = ["bake sourdough bread", "bread flour hydration", "sourdough starter bread", "fix python import error",
              "python list comprehension", "python error traceback", "secret project zanzibar"]
    phrases = Keyphrases(values, [2, 1, 2, 1, 1, 2, 1], min_rows=2)
    bread, python = phrases.top(np.array([0, 0, 0, 1, 1, 1, 1]), 2, count=3)
    assert bread[0] in ("bread", "sourdough") and "python" in python
    assert not any("zanzibar" in t or "flour" in t for t in bread + python), "a term under min_rows rows is never published"
    assert phrase_name(["capital city", "country", "population"]) == "Capital city, country and population"
