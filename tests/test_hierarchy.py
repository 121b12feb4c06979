import itertools
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from clio_hf.cluster import cluster_facets
from clio_hf.config import ClusterConfig, HierarchyConfig
from clio_hf.embed import embed_facets
from clio_hf.facets import CONCERNING, REQUEST
from clio_hf.hierarchy import build_hierarchy, level_targets
from conftest import kill_when_logged
from fakes import HashEmbedder, ScriptedLLM

TOPICS = ["python code bug", "cooking pasta recipe", "travel plan japan", "poem about love", "tax form help",
          "fitness workout plan", "email to boss", "history essay rome", "math homework algebra", "guitar chords song"]


def _clustered(n_rows: int, rows_per_cluster: int = 5) -> datasets.Dataset:
    values = [f"{REQUEST.prefill} {TOPICS[i % len(TOPICS)]} number {i % 3}" for i in range(n_rows)]
    ds = datasets.Dataset.from_dict({
        "request": values,
        "concerning": [(i % 5) + 1 if i % 7 else None for i in range(n_rows)],
        "duplicate_of": [-1] * n_rows,
    })
    ds = embed_facets(ds, HashEmbedder(), facets=[REQUEST])
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
        assert node["name_source"] in ("llm", "fallback")
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
        if "Propose" in text:
            return " Everyday help\n2. Creative work\n3. Technical tasks</answer>"
        return f"Plan trips variant {next(counter)}</name>\n<summary>Users asked for help with things.</summary>"

    return ScriptedLLM(reply=reply, pick=lambda prompt, n: len(prompt[-2]["content"]) % n)


def test_tree_invariants_with_a_well_behaved_llm():
    data = _clustered(60)
    tree = build_hierarchy(data, _good_llm(), HashEmbedder(), facets=[REQUEST, CONCERNING])
    _check_tree(tree, data)
    assert set(tree["facet"]) == {"request"}
    assert tree.features["concerning_mean"].dtype == "float64"
    assert all(n["name_source"] == "llm" for n in tree if n["level"] == 0)
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


def test_the_sample_nearest_the_cluster_names_it_even_when_outvoted():
    """Two off-topic answers agree with each other; the one answer that describes the members must still win."""
    data = _clustered(40)
    seen: dict[str, int] = {}

    def reply(prompt):
        material = prompt[1]["content"]
        if "<answers>" not in material:
            return " Everyday help</answer>"
        turn = seen[material] = seen.get(material, 0) + 1
        if turn < 3:
            return f"Another group of {'similar' if turn == 1 else 'related'} conversations</name>"
        first_value = material.split("<answers>\n- ", 1)[1].split("\n", 1)[0]
        return f"{first_value}</name>"

    tree = build_hierarchy(data, ScriptedLLM(reply=reply), HashEmbedder(), facets=[REQUEST], config=HierarchyConfig(name_samples=3))
    base = [n for n in tree if n["level"] == 0]
    values = {v.removeprefix(REQUEST.prefill).strip().casefold() for v in data["request"]}
    assert base and all(n["name"].casefold() in values for n in base)


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
    if "broader categories" in prompt[-2]["content"]:
        return "1. Cooking topics\n2. Travel topics\n3. Code topics</answer>"
    return "Topic " + str(len(prompt[1]["content"]) % 97) + "</name>\n<summary>Users asked about it.</summary>"

rows = [{"messages": [{"role": "user", "content": f"topic{i % 30} question number {i}"}, {"role": "assistant", "content": "ok"}]} for i in range(60)]
config = clio_hf.ClioConfig(cluster=clio_hf.ClusterConfig(rows_per_base_cluster=2),
                            hierarchy=clio_hf.HierarchyConfig(name_samples=2, assign_samples=1),
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
    assert len(everything) >= 5  # base names (greedy, then sampled), proposals, parent names (greedy, sampled)
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
