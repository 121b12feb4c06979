"""Group counts on hierarchy nodes (`clio_hf.groups`) and the `compare` statistics and command."""

from __future__ import annotations

import csv
import math

import datasets
import pytest
from scipy.stats import chi2_contingency

import clio_hf
from clio_hf import cli
from clio_hf.groups import MISSING_GROUP, compare_groups, count_groups, overall_counts
from fakes import HashEmbedder, ScriptedLLM, conversation


@pytest.fixture(autouse=True)
def private_datasets_cache(tmp_path, monkeypatch):
    # `datasets` caches a local result folder under its name and never re-reads changed files (see test_lenses.py)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets-cache"))


def _tree():
    """request: base 0, 1 under parent 3; base 2 alone under parent 4. task: one base node."""
    return datasets.Dataset.from_dict({
        "facet": ["request"] * 5 + ["task"], "node_id": [0, 1, 2, 3, 4, 0], "level": [0, 0, 0, 1, 1, 0],
        "parent_id": [3, 3, 4, None, None, None], "name": ["a", "b", "c", "ab", "c up", "t"],
        "size": [3, 2, 2, 5, 2, 6],
    })


def _data():
    return datasets.Dataset.from_dict({
        "model": ["x", "y", "x", None, "y", "x", "x", "z"],
        "request_cluster": [0, 0, 0, 1, 1, 2, 2, -1],  # the last row has no cluster: counted nowhere
        "task_cluster": [0, 0, 0, 0, 0, 0, -1, -1],
    })


def test_group_counts_sum_to_node_sizes_and_roll_up():
    tree = count_groups(_tree(), _data(), group_column="model")
    counts = {(n["facet"], n["node_id"]): {g["group"]: g["count"] for g in n["group_counts"]} for n in tree}
    assert counts[("request", 0)] == {"x": 2, "y": 1}
    assert counts[("request", 1)] == {MISSING_GROUP: 1, "y": 1}
    assert counts[("request", 3)] == {"x": 2, "y": 2, MISSING_GROUP: 1}  # the parent sums its children
    assert counts[("request", 4)] == {"x": 2} and counts[("task", 0)] == {"x": 3, "y": 2, MISSING_GROUP: 1}
    for node in tree:
        assert sum(g["count"] for g in node["group_counts"]) == node["size"]
    assert [g["group"] for g in tree[3]["group_counts"]] == ["x", "y", MISSING_GROUP]  # largest first, then by name
    assert tree.select_columns(_tree().column_names).to_dict() == _tree().to_dict()
    assert overall_counts(tree, "request") == {"x": 4, "y": 2, MISSING_GROUP: 1}


def _skewed_tree():
    """Four base nodes of 60 rows; node 0 is 80% model b, the others are even. Node 4 is tiny."""
    mixes = [{"a": 12, "b": 48}, {"a": 30, "b": 30}, {"a": 31, "b": 29}, {"a": 29, "b": 31}, {"a": 1, "b": 4}]
    return datasets.Dataset.from_dict({
        "facet": ["request"] * 5, "node_id": list(range(5)), "level": [0] * 5, "parent_id": [None] * 5,
        "name": ["skewed", "even 1", "even 2", "even 3", "tiny"], "size": [sum(m.values()) for m in mixes],
        "group_counts": [[{"group": g, "count": c} for g, c in m.items()] for m in mixes],
    })


def test_compare_finds_the_skewed_node_with_a_proper_test():
    rows = compare_groups(_skewed_tree(), min_count=10)
    assert [r["name"] for r in rows][0] == "skewed" and "tiny" not in [r["name"] for r in rows]
    top = rows[0]
    assert top["group"] == "b" and top["share_in_node"] == pytest.approx(0.8)
    assert top["share_overall"] == pytest.approx(142 / 245)
    expected = chi2_contingency([[12, 48], [1 + 30 + 31 + 29, 4 + 30 + 29 + 31]], correction=False)
    assert top["chi2"] == pytest.approx(expected.statistic) and top["p_value"] == pytest.approx(expected.pvalue)
    assert top["p_value"] < 1e-3 and top["log_odds"] > 0 and top["z"] > 3
    assert all(r["p_value"] > 0.05 for r in rows[1:])  # the even nodes do not stand out
    assert all(r["q_value"] >= r["p_value"] for r in rows)
    with pytest.raises(ValueError, match="group_column"):
        compare_groups(_tree())


def _two_node_tree(mixes):
    return datasets.Dataset.from_dict({
        "facet": ["request"] * len(mixes), "node_id": list(range(len(mixes))), "level": [0] * len(mixes),
        "parent_id": [None] * len(mixes), "name": [f"n{i}" for i in range(len(mixes))], "size": [sum(m.values()) for m in mixes],
        "group_counts": [[{"group": g, "count": c} for g, c in m.items()] for m in mixes],
    })


def test_statistics_equal_hand_computed_values():
    # node 0 against the rest: the 2 x 2 table [[a, b], [c, d]] = [[30, 10], [20, 40]]; every expected count >= 5
    rows = {r["name"]: r for r in compare_groups(_two_node_tree([{"x": 30, "y": 10}, {"x": 20, "y": 40}]), min_count=5)}
    a, b, c, d = 30, 10, 20, 40
    n = a + b + c + d
    chi2 = n * (a * d - b * c) ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))
    top = rows["n0"]
    assert top["test"] == "chi2" and top["chi2"] == pytest.approx(chi2) and top["dof"] == 1
    assert top["p_value"] == pytest.approx(math.erfc(math.sqrt(chi2 / 2)))  # chi-square with 1 dof
    assert top["cramers_v"] == pytest.approx(math.sqrt(chi2 / n))
    assert top["group"] == "x"
    log_odds = math.log((a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5)))
    assert top["log_odds"] == pytest.approx(log_odds)
    assert top["z"] == pytest.approx(log_odds / math.sqrt(sum(1 / (k + 0.5) for k in (a, b, c, d))))
    assert top["q_value"] == pytest.approx(top["p_value"])  # two tests with the same p: q = p * 2 / 2

    # small counts: [[4, 0], [6, 10]] has expected counts under 5, so Fisher's exact (hypergeometric) test
    rows = {r["name"]: r for r in compare_groups(_two_node_tree([{"x": 4, "y": 0}, {"x": 6, "y": 10}]), min_count=4)}
    small = rows["n0"]

    def table_p(k):  # P(k of the node's 4 rows are x), margins fixed: 10 x and 10 y among 20 rows
        return math.comb(10, k) * math.comb(10, 4 - k) / math.comb(20, 4)

    observed = table_p(4)
    assert small["test"] == "fisher"
    assert small["p_value"] == pytest.approx(sum(table_p(k) for k in range(5) if table_p(k) <= observed * (1 + 1e-7)))
    assert math.isfinite(small["log_odds"]) and small["log_odds"] == pytest.approx(math.log(4.5 * 10.5 / (0.5 * 6.5)))

    # three p-values: Benjamini-Hochberg by hand
    mixes = [{"x": 30, "y": 10}, {"x": 25, "y": 25}, {"x": 20, "y": 40}]
    rows = sorted(compare_groups(_two_node_tree(mixes), min_count=5), key=lambda r: r["p_value"])
    p = [r["p_value"] for r in rows]
    q = [min(p[i] * 3 / (i + 1) for i in range(j, 3)) for j in range(3)]
    assert [r["q_value"] for r in rows] == pytest.approx([min(v, 1.0) for v in q])


def test_annotate_with_a_group_column(tmp_path, capsys):
    texts = [f"{topic} {i}" for i, topic in enumerate(["python code bug", "bread baking recipe", "travel plan trip"] * 8)]
    ds = datasets.Dataset.from_dict({"messages": [conversation(t, "ok") for t in texts],
                                     "model": ["m1" if "bread" in t else "m2" for t in texts]})
    llm = ScriptedLLM(reply=lambda p: " help with " + p[1]["content"].split("User: ")[-1].split("\n")[0] + "</answer>"
                      if "Here is a conversation" in p[1]["content"]
                      else "Group name here</name>\n<summary>A group of similar requests about things.</summary>")
    with pytest.raises(ValueError, match="group_column='modle'.*Available"):
        clio_hf.annotate(ds, facets="request", llm=llm, embedder=HashEmbedder(), group_column="modle", cache_dir=tmp_path)
    assert llm.prompts == []
    result = clio_hf.annotate(ds, facets="request,language", llm=llm, embedder=HashEmbedder(), group_column="model",
                              cache_dir=tmp_path)
    assert result.info["group_column"] == "model"
    for node in result.hierarchy:
        assert sum(g["count"] for g in node["group_counts"]) == node["size"]
    result.save_to_disk(tmp_path / "grouped-result")
    out_csv = tmp_path / "compare.csv"
    assert cli.main(["compare", str(tmp_path / "grouped-result"), "--group-column", "model", "--min-count", "3",
                     "--csv", str(out_csv)]) == 0
    printed = capsys.readouterr().out
    assert "nodes tested" in printed and "'model'" in printed
    rows = list(csv.DictReader(out_csv.open()))
    assert rows and float(rows[0]["p_value"]) <= min(float(r["p_value"]) for r in rows)
    assert cli.main(["compare", str(tmp_path / "grouped-result"), "--group-column", "language"]) == 2  # not the run's


def test_real_result_group_counts_by_language(real_result):
    tree = count_groups(real_result.hierarchy, real_result.data, group_column="language")
    children: dict = {}
    for node in tree:
        assert sum(g["count"] for g in node["group_counts"]) == node["size"]
        if node["parent_id"] is not None:
            children.setdefault((node["facet"], node["parent_id"]), []).append(node)
    for node in tree:
        kids = children.get((node["facet"], node["node_id"]))
        if kids:
            summed: dict = {}
            for kid in kids:
                for g in kid["group_counts"]:
                    summed[g["group"]] = summed.get(g["group"], 0) + g["count"]
            assert {g["group"]: g["count"] for g in node["group_counts"]} == summed
    assert "English" in overall_counts(tree, "request")
