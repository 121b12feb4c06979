"""The evaluation scripts' own logic: topic rules, metrics, the auditor scoring (test doubles for the models)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from fakes import ScriptedLLM

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


recon, auditor = _load("eval_reconstruction"), _load("eval_auditor")


@pytest.mark.parametrize("text, label", [
    ("Write a Python function that sorts a list", "python code"),
    ("Please translate this paragraph into French", "translation"),
    ("Draft an email to my landlord", "email/letter writing"),
    ("Write a python script and translate its comments", None),  # two rules: ambiguous, left out
    ("Tell me a joke", None),
])
def test_topic_rules_label_only_unambiguous_rows(text, label):
    assert recon.label_of(text) == label


def test_first_user_message_reads_both_shapes():
    assert recon.first_user_message([{"from": "gpt", "value": "hi"}, {"from": "human", "value": "q"}]) == "q"
    assert recon.first_user_message([{"role": "user", "content": "r"}]) == "r"


def test_metrics():
    labels = ["a", "a", "b", "b", "c", "c"]
    assert recon.majority_accuracy(np.array([0, 0, 1, 1, 2, 2]), labels) == 1.0
    assert recon.majority_accuracy(np.array([0, 0, 0, 0, -1, -1]), labels) == pytest.approx(2 / 6)
    assert recon.nmi(np.array([5, 5, 7, 7, 9, 9]), labels) == pytest.approx(1.0)
    assert recon.nmi(np.array([0, 1, 0, 1, 0, 1]), ["a", "a", "a", "b", "b", "b"]) == pytest.approx(0.0817, abs=1e-3)
    assert recon.nmi(np.array([0, 0, 0, 0, 0, 0]), labels) == 0.0


def test_level_groups_climb_to_the_level():
    tree = [{"node_id": 0, "level": 0, "parent_id": 2}, {"node_id": 1, "level": 0, "parent_id": 2},
            {"node_id": 2, "level": 1, "parent_id": 3}, {"node_id": 3, "level": 2, "parent_id": None}]
    assert recon.level_groups(tree, np.array([0, 1, -1]), 1).tolist() == [2, 2, -1]
    assert recon.level_groups(tree, np.array([0, 1]), 2).tolist() == [3, 3]


def test_sibling_judge_counts_own_cluster_picks_and_chance():
    tree = [{"node_id": 0, "level": 0, "parent_id": 3, "name": "Python bugs"},
            {"node_id": 1, "level": 0, "parent_id": 3, "name": "Baking bread"},
            {"node_id": 2, "level": 0, "parent_id": None, "name": "Alone"},
            {"node_id": 3, "level": 1, "parent_id": None, "name": "Parent"}]

    def oracle(prompt, n):  # picks the option whose name shares a word with the request
        text = "\n\n".join(turn["content"] for turn in prompt if turn["role"] == "user")
        request, options = text.split("\n\n")[0], re.findall(r"^\d+\. (.+)$", text, re.M)
        assert len(options) == n
        return next(i for i, o in enumerate(options) if o.split()[0].lower() in request.lower())

    hits, chance, judged = recon.sibling_judge(ScriptedLLM(pick=oracle), tree, np.array([0, 1, 2, -1]),
                                               ["python crash", "baking a loaf", "x", None])
    assert (hits, chance, judged) == (1.0, 0.5, 2)


def test_auditor_eval_scores_an_oracle_and_its_opposite():
    rows = auditor.load_audit_set()
    assert len(rows) == 48 and {r["label"] for r in rows} == {"private", "general"}
    private = {r["name"] for r in rows if r["label"] == "private"}

    def rating_index(prompt, n, flip=False):
        is_private = any(f"Name: {name}\n" in prompt[1]["content"] for name in private)
        return (0 if is_private else 4) if not flip else (4 if is_private else 0)

    right = auditor.evaluate_auditor(ScriptedLLM(pick=rating_index), rows)
    assert right["accuracy"] == right["private_recall"] == right["general_kept"] == 1.0
    assert right["ratings"] == {"private": {1: 24}, "general": {5: 24}}
    wrong = auditor.evaluate_auditor(ScriptedLLM(pick=lambda p, n: rating_index(p, n, flip=True)), rows)
    assert wrong["accuracy"] == 0.0
