"""The evaluation scripts' own logic: topic rules, metrics, the auditor scoring (test doubles for the models)."""

from __future__ import annotations

import importlib.util
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


quality, auditor = _load("eval_quality"), _load("eval_auditor")


@pytest.mark.parametrize("text, label", [
    ("Write a Python function that sorts a list", "python code"),
    ("Please translate this paragraph into French", "translation"),
    ("Draft an email to my landlord", "email/letter writing"),
    ("Write a python script and translate its comments", None),  # two rules: ambiguous, left out
    ("Tell me a joke", None),
])
def test_topic_rules_label_only_unambiguous_rows(text, label):
    assert quality.label_of(text) == label


def test_first_user_message_reads_both_shapes():
    assert quality.first_user_message([{"from": "gpt", "value": "hi"}, {"from": "human", "value": "q"}]) == "q"
    assert quality.first_user_message([{"role": "user", "content": "r"}]) == "r"


def test_metrics():
    labels = ["a", "a", "b", "b", "c", "c"]
    assert quality.majority_accuracy(np.array([0, 0, 1, 1, 2, 2]), labels) == 1.0
    assert quality.majority_accuracy(np.array([0, 0, 0, 0, -1, -1]), labels) == pytest.approx(2 / 6)
    assert quality.nmi(np.array([5, 5, 7, 7, 9, 9]), labels) == pytest.approx(1.0)
    assert quality.nmi(np.array([0, 1, 0, 1, 0, 1]), ["a", "a", "a", "b", "b", "b"]) == pytest.approx(0.0817, abs=1e-3)
    assert quality.nmi(np.array([0, 0, 0, 0, 0, 0]), labels) == 0.0


def test_level_groups_climb_to_the_level():
    tree = [{"node_id": 0, "level": 0, "parent_id": 2}, {"node_id": 1, "level": 0, "parent_id": 2},
            {"node_id": 2, "level": 1, "parent_id": 3}, {"node_id": 3, "level": 2, "parent_id": None}]
    assert quality.level_groups(tree, np.array([0, 1, -1]), 1).tolist() == [2, 2, -1]
    assert quality.level_groups(tree, np.array([0, 1]), 2).tolist() == [3, 3]


def test_faithfulness_counts_rows_whose_own_name_is_nearest_among_five():
    # Six clusters on six axes; each row sits on its cluster's axis; then clusters 0 and 1 swap names.
    eye = np.eye(6, dtype=np.float32)
    base = np.repeat(np.arange(6), 2)
    rows = eye[base]
    names = {c: eye[c] for c in range(6)}
    assert quality.faithfulness(rows, base, names) == (1.0, pytest.approx(0.2))
    names[0], names[1] = eye[1], eye[0]
    hits, chance = quality.faithfulness(rows, base, names)
    assert hits == pytest.approx(8 / 12) and chance == pytest.approx(0.2)
    # Fewer than five clusters: chance is one over the clusters there are.
    assert quality.faithfulness(rows[:6], base[:6], names)[1] == pytest.approx(1 / 3)


def test_name_label_match_weights_top_nodes_by_rows():
    labels = ["cats"] * 3 + ["cars"]
    label_names = {"cats": "Cats", "cars": "Cars"}
    vectors = np.eye(2, dtype=np.float32)
    top = np.array([7, 7, 7, 9])
    assert quality.name_label_match(top, labels, {7: vectors[0], 9: vectors[1]}, label_names, vectors) == 1.0
    assert quality.name_label_match(top, labels, {7: vectors[1], 9: vectors[1]}, label_names, vectors) == 0.25


def test_filler_patterns_and_near_duplicates():
    names = ["This is a task that requires skill", "Fixing Python import errors", "Fixing Python import errors again",
             "A group of users", "Baking sourdough bread"]
    vectors = np.eye(5, dtype=np.float32)
    vectors[2] = vectors[1]
    assert quality.filler_share(names, vectors) == pytest.approx(3 / 5)


def test_copying_grounding_and_verbatim():
    instructions = "Answer inside tags with one short sentence about what the user wrote. Leave out names and personal details."
    assert quality.copies("summarise the text, leave out names and personal details", instructions)
    assert not quality.copies("write a sentence about the user", instructions)  # only generic words in common
    figures = quality.grounding(
        ["fix a python import error", "plan a wedding in Tuscany", "one two three four five six seven eight words", None],
        ["My python import fails", "How do I bake bread?", "say one two three four five six seven eight words please", "x"],
        [instructions] * 4)
    assert figures == {"values": 3, "copy": 0.0, "ungrounded": pytest.approx(1 / 3), "verbatim": pytest.approx(1 / 3)}


def test_trec_text_is_detokenised():
    assert quality.detokenise("What 's the name of the `` Sun '' , really ?") == \
        "What's the name of the \"Sun\", really?"
    assert quality.detokenise("How much does it cost in $ 1963 ?") == "How much does it cost in $1963?"


def test_ctfidf_names_pick_terms_that_set_a_group_apart():
    texts = ["python list sort", "python dict sort", "bread flour oven", "bread yeast oven"]
    names = quality.ctfidf_names(texts, np.array([0, 0, 1, 1]), top_terms=2)
    assert set(names[0].split(", ")) == {"python", "sort"} and set(names[1].split(", ")) == {"bread", "oven"}


def test_auditor_eval_scores_an_oracle_and_its_opposite():
    rows = auditor.load_audit_set()
    assert len(rows) == 120 and sum(r["label"] == "private" for r in rows) == 60
    assert {r["kind"] for r in rows} == set(auditor.KINDS)
    private = {(r["name"], r["summary"]) for r in rows if r["label"] == "private"}

    def rating_index(prompt, n, flip=False):
        is_private = any(f"Name: {name}\nSummary: {summary}\n" in prompt[1]["content"] for name, summary in private)
        return (0 if is_private else 4) ^ (4 if flip else 0)

    ratings = auditor.llm_ratings(ScriptedLLM(pick=rating_index), rows)
    right = auditor.score([r < 3 for r in ratings], rows)
    assert right["accuracy"] == right["private_recall"] == right["general_kept"] == 1.0
    assert right["flagged_by_kind"] == {"identifier": "24/24", "seeded": "30/30", "described": "6/6", "topic": "0/45", "mentions": "0/15"}
    wrong = auditor.score([r < 3 for r in auditor.llm_ratings(ScriptedLLM(pick=lambda p, n: rating_index(p, n, flip=True)), rows)], rows)
    assert wrong["accuracy"] == 0.0
    pii = auditor.score(auditor.pii_flags(rows), rows)["flagged_by_kind"]  # the real finder on the set
    assert pii["identifier"] == "24/24" and pii["topic"] == "0/45" and pii["described"] in ("0/6", "1/6")
