"""Privacy gates: thresholds, the auditor, and what a push publishes (decoded from the pushed files themselves)."""

from __future__ import annotations

import json
import math
import re

import datasets
import pyarrow.parquet as pq
import pytest

import clio_hf
from clio_hf.config import PrivacyConfig
from clio_hf.facets import REQUEST
from clio_hf.lenses import LEARNING_VALUE
from clio_hf.pii import personal_data_spans
from clio_hf.privacy import (
    apply_privacy_gates, audit_privacy, calibrated_ratings, count_users, mark_published, parse_rating, published_hierarchy,
    withhold_rows,
)
from clio_hf.result import ClioResult
from fakes import HashEmbedder, ScriptedLLM
from hub_fixtures import hub_env, hub_server, run_hub_client  # noqa: F401  (fixtures are found by name)

# (node_id, level, parent_id, name, size); 5 = 0+1, 6 = 2+3, 7 = 4 alone
NODES = [
    (0, 0, 5, "Debugging Python code", 6), (1, 0, 5, "Tiny cluster of three rows", 4), (2, 0, 6, "Few users cluster", 5),
    (3, 0, 6, "Cooking dinner recipes", 7), (4, 0, 7, "Plans for Jane Roe at jane@example.com", 5),
    (5, 1, None, "Programming help", 10), (6, 1, None, "Everyday life", 12), (7, 1, None, "Plans for Jane Roe at jane@example.com", 5),
]
# users per base cluster, row by row (None: unknown)
USERS = {0: ["a", "b", "c", "a", "b", None], 1: ["a", "b", "c", "d"], 2: ["a", "a", "b", "b", None], 3: list("abcdefg"),
         4: ["x", "y", "z", "x", "y"]}


def make_tree() -> datasets.Dataset:
    return datasets.Dataset.from_dict({
        "facet": ["request"] * len(NODES), "node_id": [n[0] for n in NODES], "level": [n[1] for n in NODES],
        "parent_id": [n[2] for n in NODES], "name": [n[3] for n in NODES],
        "summary": [f"Covers {n[3].lower()}." for n in NODES[:5]]
        + ["Covers 2 groups, such as: Debugging Python code; Tiny cluster of three rows.",
           "Covers 2 groups, such as: Cooking dinner recipes; Few users cluster.",
           "Covers plans for jane roe at jane@example.com."],
        "name_source": ["llm"] * len(NODES), "size": [n[4] for n in NODES], "name_score": [0.25] * len(NODES),
        # a published parent's keyphrases that are, or are part of, a withheld child's name must not be published
        "keyphrases": [[] for _ in NODES[:5]] + [["python", "tiny cluster", "rows"], ["cooking", "dinner"], ["jane"]],
    }, features=clio_hf.columns.HIERARCHY_FEATURES)


def make_data() -> datasets.Dataset:
    clusters = [c for c, users in USERS.items() for _ in users]
    return datasets.Dataset.from_dict({
        "user_id": [u for users in USERS.values() for u in users],
        "messages": [[{"role": "user", "content": f"secret text {i}"}] for i in range(len(clusters))],
        "conversation": [[{"role": "user", "content": f"secret text {i}"}] for i in range(len(clusters))],
        "request": [f"The user's overall request for the assistant is to do thing {c}" for c in clusters],
        "request_cluster": clusters,
    })


def by_id(tree: datasets.Dataset) -> dict[int, dict]:
    return {n["node_id"]: n for n in tree}


def check_sizes(tree: datasets.Dataset):
    """Every published parent: its published children's sizes plus `withheld_size` make up its `size`."""
    nodes = by_id(tree)
    for node in nodes.values():
        kids = [k for k in nodes.values() if k["parent_id"] == node["node_id"] and k["published"]]
        if node["published"] and node["level"] > 0:
            assert sum(k["size"] for k in kids) + node["withheld_size"] == node["size"], node
        else:
            assert node["withheld_size"] == (0 if node["published"] else node["size"])


# ---- thresholds -------------------------------------------------------------------------------------------------
def test_row_threshold_without_a_user_column():
    tree = mark_published(make_tree(), config=PrivacyConfig(min_rows=5))
    nodes = by_id(tree)
    assert "num_users" not in tree.column_names
    assert [n for n in nodes if not nodes[n]["published"]] == [1]
    assert nodes[1]["withheld_by"] == "rows" and nodes[0]["withheld_by"] is None
    assert nodes[5]["withheld_size"] == 4 and nodes[6]["withheld_size"] == 0 and nodes[0]["withheld_size"] == 0
    check_sizes(tree)
    stricter = mark_published(make_tree(), config=PrivacyConfig(min_rows=6))
    assert [n["node_id"] for n in stricter if not n["published"]] == [1, 2, 4, 7]


def test_user_threshold_counts_distinct_users_and_ignores_nulls():
    tree = count_users(make_tree(), make_data(), user_column="user_id")
    assert [by_id(tree)[i]["num_users"] for i in range(8)] == [3, 4, 2, 7, 3, 4, 7, 3]
    tree = mark_published(tree, config=PrivacyConfig(min_rows=5, min_users=3))
    nodes = by_id(tree)
    assert {i: n["withheld_by"] for i, n in nodes.items() if not n["published"]} == {1: "rows", 2: "users"}
    assert nodes[6]["withheld_size"] == 5
    check_sizes(tree)
    with pytest.raises(ValueError, match=r"\['account'\]"):
        count_users(make_tree(), make_data(), user_column="account")


def test_a_withheld_parent_takes_its_subtree():
    tree = make_tree().add_column("privacy_score", [5, 5, 5, 5, 1, 5, 2, 1])
    tree = mark_published(tree, config=PrivacyConfig(min_rows=5, min_privacy_score=3))
    nodes = by_id(tree)
    assert {i: n["withheld_by"] for i, n in nodes.items() if not n["published"]} == {
        1: "rows", 2: "parent", 3: "parent", 4: "audit", 6: "audit", 7: "audit"}
    check_sizes(tree)


# ---- the auditor -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, rating", [("4", 4), (" 2.", 2), ("3 - general", 3), ("**5**", 5), ("10", None),
                                          ("6", None), ("high", None), ("", None), ("1.5", None), ("0", None)])
def test_parse_rating(text, rating):
    assert parse_rating(text) == rating


def _description(prompt) -> str:
    return prompt[1]["content"].split("<description>")[1]


def test_audit_rates_each_distinct_text_once_with_a_constrained_choice():
    llm = ScriptedLLM(pick=lambda p, n: 0 if "@" in _description(p) else 4)
    tree = audit_privacy(make_tree(), llm)
    assert tree["privacy_score"] == [5, 5, 5, 5, 1, 5, 5, 1]
    assert len(llm.prompts) == 7  # node 7 repeats node 4's name but not its summary; the rest are distinct
    again = ScriptedLLM(pick=lambda p, n: 2)
    audit_privacy(make_tree().select([4, 4, 4]), again)
    assert len(again.prompts) == 1


class TextOnlyLLM(ScriptedLLM):
    """A backend that cannot constrain decoding: `choose` is not available."""

    def choose(self, prompts, options):
        raise NotImplementedError


def test_audit_parses_text_with_bounded_retries_and_fails_closed():
    answers = iter(["I think", "maybe four", " 4"])
    llm = TextOnlyLLM(reply=lambda p: next(answers))
    tree = audit_privacy(make_tree().select([0]), llm, config=PrivacyConfig(audit_retries=2))
    assert tree["privacy_score"] == [4] and len(llm.prompts) == 3

    never = TextOnlyLLM(reply=lambda p: "no idea")
    tree = audit_privacy(make_tree().select([0, 3]), never, config=PrivacyConfig(audit_retries=2))
    assert tree["privacy_score"] == [None, None] and len(never.prompts) == 2 * 3  # 1 try + 2 retries each
    tree = mark_published(tree)
    assert tree["published"] == [False, False] and tree["withheld_by"] == ["audit", "audit"]


class LeaningLLM(ScriptedLLM):
    """A backend with digit probabilities that leans to "4" whatever it reads, a little less so for a named person."""

    def option_logprobs(self, prompts, options):
        self.prompts += prompts
        lean = {"n/a": [0.05, 0.05, 0.1, 0.7, 0.1], "jane": [0.15, 0.1, 0.1, 0.55, 0.1]}
        return [[math.log(p) for p in next((v for k, v in lean.items() if k in _description(prompt).casefold()),
                                           [0.04, 0.04, 0.1, 0.7, 0.12])] for prompt in prompts]


def test_calibrated_ratings_undo_a_models_lean_and_raw_ones_keep_it():
    llm = LeaningLLM(pick=lambda p, n: 3)
    tree = audit_privacy(make_tree(), llm)
    assert tree["privacy_score"] == [5, 5, 5, 5, 1, 5, 5, 1]  # greedy, every text would be a 4
    assert sum("N/A" in _description(p) for p in llm.prompts) == 1 and len(llm.prompts) == 1 + 7
    raw = audit_privacy(make_tree(), LeaningLLM(pick=lambda p, n: 3), config=PrivacyConfig(audit_calibration="none"))
    assert raw["privacy_score"] == [4] * 8
    assert calibrated_ratings([[-1.0, -2.0, -3.0, -4.0, -5.0]], [-3.0, -2.0, -3.0, -4.0, -5.0]) == [1]


def test_apply_privacy_gates_needs_an_llm_for_the_audit():
    with pytest.raises(ValueError, match="audit=False"):
        apply_privacy_gates(make_tree(), make_data(), None)
    tree = apply_privacy_gates(make_tree(), make_data(), None, config=PrivacyConfig(audit=False), user_column="user_id")
    assert {"num_users", "pii", "published", "withheld_by", "withheld_size"} <= set(tree.column_names)
    assert "privacy_score" not in tree.column_names
    assert "pii" not in apply_privacy_gates(make_tree(), make_data(), None, config=PrivacyConfig(audit=False, detect_pii=False)).column_names


def test_the_pii_gate_withholds_what_the_finder_sees_and_the_record_says_which_layer():
    llm = ScriptedLLM(pick=lambda p, n: 4)  # an auditor that passes everything
    tree = by_id(apply_privacy_gates(make_tree(), make_data(), llm, config=PrivacyConfig(min_rows=1)))
    assert {i: (n["withheld_by"], n["pii"]) for i, n in tree.items() if not n["published"]} == {
        4: ("pii", "email,person"), 7: ("pii", "email,person")}
    assert all(n["pii"] is None for i, n in tree.items() if i not in (4, 7))
    allowed = apply_privacy_gates(make_tree(), make_data(), llm, config=PrivacyConfig(min_rows=1, allowed_names=("Jane Roe",)))
    assert by_id(allowed)[4]["pii"] == "email"  # the name is let through, the address is not


# ---- what a push publishes ---------------------------------------------------------------------------------------
def gated_result() -> ClioResult:
    llm = ScriptedLLM(pick=lambda p, n: 0 if "@" in _description(p) else 4)
    tree = apply_privacy_gates(make_tree(), make_data(), llm, user_column="user_id")
    info = {"column_prefix": "", "privacy": {"user_column": "user_id", "text_columns": ["messages"]},
            "config": {"privacy": {"min_rows": 5, "min_users": 3}}, "facets": [REQUEST.to_dict()]}
    return ClioResult(data=make_data(), hierarchy=tree, info=info)


WITHHELD_NAMES = ["Tiny cluster of three rows", "Few users cluster", "Plans for Jane Roe at jane@example.com"]


def test_for_publishing_drops_withheld_nodes_and_raw_text():
    result = gated_result()
    assert sorted(n for n, p in zip(result.hierarchy["node_id"], result.hierarchy["published"]) if not p) == [1, 2, 4, 7]
    public = result.for_publishing()
    assert public.hierarchy["node_id"] == [0, 3, 5, 6]
    check_sizes(public.hierarchy)
    assert "Tiny cluster" not in " ".join(public.hierarchy["summary"])  # the parent's summary is scrubbed
    kept = dict(zip(public.hierarchy["node_id"], public.hierarchy["keyphrases"]))
    assert kept == {0: [], 3: [], 5: ["python"], 6: ["cooking", "dinner"]}  # "tiny cluster", "rows": a withheld name
    assert set(public.data.column_names) == {"request", "request_cluster"}
    assert public.data["request_cluster"] == [0] * 6 + [-1] * 9 + [3] * 7 + [-1] * 5
    assert all((v is None) == (c == -1) for v, c in zip(public.data["request"], public.data["request_cluster"]))
    assert sorted(public.info["published"]["left_out_columns"]) == ["conversation", "messages", "user_id"]
    assert public.info["published"]["withheld_nodes"] == {"request": {"audit": 2, "pii": 2, "rows": 1, "total": 4, "users": 1}}
    with_text = result.for_publishing(include_text=True, sensitive_columns=["user_id"])
    assert set(with_text.data.column_names) == {"messages", "conversation", "request", "request_cluster"}
    assert len(result.for_publishing(aggregates_only=True).data) == 0
    with pytest.raises(ValueError, match=r"\['nope'\]"):
        result.for_publishing(sensitive_columns=["nope"])
    assert len(result.hierarchy) == 8 and "messages" in result.data.column_names  # the local result keeps everything


def test_every_row_derived_column_has_a_rule_and_a_column_without_one_stays_local(caplog):
    """Rationales, map positions and columns that no rule knows: what today's gates did not cover."""
    result = gated_result()
    n = len(result.data)
    result.data = (result.data.add_column("request_x", [float(i) for i in range(n)])
                   .add_column("request_y", [float(-i) for i in range(n)])
                   .add_column("request_embedding", [[1.0, 0.0]] * n)
                   .add_column("learning_value", [3] * n)
                   .add_column("learning_value_rationale", [f"Because row {i} teaches a secret" for i in range(n)])
                   .add_column("keywords_from_a_later_feature", ["secret words"] * n))
    result.hierarchy = result.hierarchy.add_column("node_keywords_from_a_later_feature", ["secret"] * len(result.hierarchy))
    result.info["facets"].append(LEARNING_VALUE.to_dict())
    result.info["input_columns"] = ["user_id", "messages"]
    result.info["source"] = "path:/home/alice/private/chats.jsonl:1733220000000000000"
    public = result.for_publishing()
    hidden = [c == -1 for c in public.data["request_cluster"]]
    assert any(hidden) and not all(hidden)
    for column in ("request_x", "request_y", "request"):
        assert all((v is None) == h for v, h in zip(public.data[column], hidden)), column
    assert public.data["learning_value"] == [3] * n  # a score is a number, kept
    assert "learning_value_rationale" not in public.data.column_names  # row text: only when asked for
    assert "request_embedding" not in public.data.column_names  # it mixes in the user's words (conversation_weight)
    assert "keywords_from_a_later_feature" not in public.data.column_names and "no publishing rule" in caplog.text
    assert "node_keywords_from_a_later_feature" not in public.hierarchy.column_names
    assert public.info["source"] == "local:chats.jsonl" and "/home/alice" not in json.dumps(public.info)
    with_text = result.for_publishing(include_text=True)
    rationales = with_text.data["learning_value_rationale"]
    assert all((r is None) == h for r, h in zip(rationales, hidden))  # asked for, and still gated
    assert all((v is None) == h for v, h in zip(with_text.data["request_embedding"], hidden))


def test_everything_withheld_is_a_clear_error():
    result = gated_result()
    result.hierarchy = mark_published(result.hierarchy, config=PrivacyConfig(min_rows=50))
    with pytest.raises(ValueError, match=r"withhold all 3 top-level nodes.*request: 8 of 8 nodes withheld, 2 by audit, 2 by pii, 8 by rows, 1 by users"):
        result.for_publishing()
    with pytest.raises(ValueError, match="min_rows"):
        published_hierarchy(result.hierarchy)


def test_an_old_result_without_decisions_is_gated_on_size(caplog):
    result = ClioResult(data=make_data(), hierarchy=make_tree(), info={})
    public = result.for_publishing()
    assert public.hierarchy["node_id"] == [0, 2, 3, 4, 5, 6, 7] and "no privacy decisions" in caplog.text
    assert set(public.data.column_names) == {"user_id", "request", "request_cluster"}  # detected by name
    assert withhold_rows(make_data(), mark_published(make_tree()))["request_cluster"].count(-1) == 4


PUSH = """
import sys
from test_privacy import gated_result
print(gated_result().push_to_hub(sys.argv[1], aggregates_only=sys.argv[2] == "aggregates"))
"""


def _decoded_files(files: dict[str, bytes], tmp_path) -> str:
    """Every pushed file as text: parquet decoded with pyarrow (every cell of every row, strings as they are, so a
    published value can be matched and stripped whole), the rest as UTF-8."""
    def cells(value):
        if isinstance(value, dict):
            return [c for v in value.values() for c in cells(v)]
        if isinstance(value, list):
            return [c for v in value for c in cells(v)]
        return [value if isinstance(value, str) else json.dumps(value, default=str)]

    texts = []
    for name, blob in files.items():
        if name.endswith(".parquet"):
            path = tmp_path / name.replace("/", "_")
            path.write_bytes(blob)
            texts.append("\n".join(cells(pq.read_table(path).to_pylist())))
        else:
            texts.append(blob.decode("utf-8"))
    return "\n".join(texts)


@pytest.mark.parametrize("mode", ["rows", "aggregates"])
def test_pushed_files_hold_no_withheld_name_and_no_raw_text(hub_server, hub_env, tmp_path, mode):
    repo = f"me/privacy-{mode}"
    run_hub_client(PUSH, hub_env, repo, mode)
    files = hub_server.files(repo)
    files.pop(".gitattributes")
    assert sorted(files) == ["README.md", "clio_run.json", "data/train-00000-of-00001.parquet",
                             "hierarchy/train-00000-of-00001.parquet"]
    text = _decoded_files(files, tmp_path)
    for secret in [*WITHHELD_NAMES, "secret text", "jane@example.com"]:
        assert secret.casefold() not in text.casefold(), secret
    assert "Programming help" in text and "Debugging Python code" in text
    rows = pq.read_table(tmp_path / "data_train-00000-of-00001.parquet")
    assert rows.num_rows == (0 if mode == "aggregates" else 27)
    tree = pq.read_table(tmp_path / "hierarchy_train-00000-of-00001.parquet").to_pylist()
    assert [n["node_id"] for n in tree] == [0, 3, 5, 6] and all(n["published"] for n in tree)
    readme = files["README.md"].decode()
    assert "| **Everyday life** | 12 |" in readme and "Privacy" in readme


# ---- annotate ----------------------------------------------------------------------------------------------------
def _rows(n: int) -> datasets.Dataset:
    topics = ["fix my python bug", "bake bread at home", "plan a trip to rome"]
    return datasets.Dataset.from_dict({
        "user": ["solo" if i % 3 == 2 else f"u{i % 4}" for i in range(n)],  # one person asks about every trip
        "messages": [[{"role": "user", "content": f"{topics[i % 3]} please ({i})"}, {"role": "assistant", "content": "ok"}]
                     for i in range(n)],
    })


def test_annotate_gates_every_node_and_records_it(tmp_path):
    llm = ScriptedLLM(reply=lambda p: " help with " + p[1]["content"].split("User: ")[-1].split(" please")[0] + "</answer>"
                      if "User: " in p[1]["content"] else "Some group</name>\n<summary>Some summary of the group.</summary>",
                      pick=lambda p, n: 3 if "Rating" in p[-1]["content"] else 0)
    config = clio_hf.ClioConfig(cluster=clio_hf.ClusterConfig(rows_per_base_cluster=4))
    result = clio_hf.annotate(_rows(24), facets="request", llm=llm, embedder=HashEmbedder(), config=config,
                              user_column="user", cache_dir=tmp_path)
    tree = result.hierarchy
    assert {"num_users", "privacy_score", "published", "withheld_by", "withheld_size"} <= set(tree.column_names)
    assert set(tree["privacy_score"]) == {4}  # every node was audited
    assert 1 in tree["num_users"]  # the solo user's trips
    for node in tree:
        assert node["num_users"] == len(set(result.select_node("request", node["node_id"])["user"])), node
    for node in tree:
        failed = {gate for gate, ok in (("rows", node["size"] >= 5), ("users", node["num_users"] >= 3)) if not ok}
        assert set((node["withheld_by"] or "").split(",")) - {""} == failed or node["withheld_by"] == "parent"
    assert 0 < sum(tree["published"]) < len(tree)
    check_sizes(tree)
    privacy = result.info["privacy"]
    assert privacy["user_column"] == "user" and privacy["text_columns"] == ["messages"]
    assert privacy["withheld"] == clio_hf.privacy.withheld_counts(tree)
    assert "privacy" in result.info["timings"] and result.info["config"]["privacy"]["min_rows"] == 5


def test_missing_user_column_stops_before_any_model_runs(tmp_path):
    llm = ScriptedLLM()
    with pytest.raises(ValueError, match=r"user_column='account'.*\['user', 'messages'\]"):
        clio_hf.annotate(_rows(6), facets="request", llm=llm, embedder=HashEmbedder(), user_column="account",
                         cache_dir=tmp_path)
    assert llm.prompts == []


# ---- the real packaged-model result (conftest's `real_result_dir`) -----------------------------------------------
@pytest.mark.slow
def test_real_run_audits_every_node(real_result):
    tree = real_result.hierarchy
    assert all(score in (1, 2, 3, 4, 5) for score in tree["privacy_score"])  # a constrained choice: never unrated
    assert all(p == (by is None) for p, by in zip(tree["published"], tree["withheld_by"]))
    check_sizes(tree)
    usage = real_result.info["privacy"]["audit_usage"]
    distinct = len(set(zip(tree["name"], tree["summary"])))
    assert usage["prompts"] == distinct + math.ceil(distinct / 64)  # and a content-free text per batch, to calibrate


REAL_PUSH = """
import sys
from clio_hf.result import ClioResult
print(ClioResult.load(sys.argv[1]).push_to_hub(sys.argv[2]))  # the gates as conftest's run set them: the defaults
"""


@pytest.mark.slow
def test_real_result_push_leaks_no_withheld_name_and_no_text(hub_server, hub_env, real_result, real_result_dir, tmp_path):
    run_hub_client(REAL_PUSH, hub_env, str(real_result_dir), "me/real-private", timeout=300)
    files = hub_server.files("me/real-private")
    files.pop(".gitattributes")
    text = _decoded_files(files, tmp_path).casefold()
    tree = real_result.hierarchy
    published = {n["name"] for n in tree if n["published"]}
    withheld = {n["name"] for n in tree if not n["published"]} - published
    assert withheld and published  # 40 rows in clusters of ~6: some nodes fall under 5 rows
    table = pq.read_table(tmp_path / "data_train-00000-of-00001.parquet")
    # A withheld name may be part of published text (a keyphrase name is a word many rows use); strip everything
    # that is allowed out first, then no withheld name may remain as words of their own.
    allowed = [n[key] for n in tree if n["published"] for key in ("name", "summary")]
    allowed += [v for facet in ("request", "task") for v in table.column(facet).to_pylist() if v]
    for legit in sorted({a.casefold() for a in allowed}, key=len, reverse=True):
        text = text.replace(legit, "\0")
    # Structure, not node text: the card's YAML (configs, file paths, tags) and the run record's JSON keys.
    text = re.sub(r'"[\w-]+":', "", re.sub(r"^---\n.*?\n---\n", "", text, flags=re.S))
    for name in withheld:
        found = re.search(rf"(?<![\w-]){re.escape(name.casefold())}(?![\w-])", text)
        assert not found, (name, text[max(0, found.start() - 80): found.end() + 80])
    # Request and Task embeddings mix in the user's own words (conversation_weight): text, so they stay local too.
    assert not {"conversation", "conversations", "request_embedding", "task_embedding"} & set(table.column_names)
    replies = [t["content"][:80] for turns in real_result.data["conversation"] for t in turns[1:2] if len(t["content"]) >= 80]
    assert replies and not any(r.casefold() in text for r in replies)  # the assistant's words are nowhere
    rows = table.to_pylist()
    withheld_base = {(n["facet"], n["node_id"]) for n in tree if not n["published"] and n["level"] == 0}
    hidden_values = []
    for local, pushed in zip(real_result.data, rows, strict=True):
        for facet in ("request", "task"):
            hidden = (facet, local[f"{facet}_cluster"]) in withheld_base
            assert pushed[f"{facet}_cluster"] == (-1 if hidden else local[f"{facet}_cluster"])
            assert (pushed[facet] is None) == (hidden or local[facet] is None)
            for column in (f"{facet}_x", f"{facet}_y"):
                assert (pushed[column] is None) == hidden, column
            if hidden and local[facet]:
                hidden_values.append(local[facet])
        assert pushed["learning_value"] == local["learning_value"]
    assert hidden_values  # the run has withheld rows, and their values are nowhere (strip what is also published)
    assert not [v for v in hidden_values if v.casefold() in text]
    published_nodes = pq.read_table(tmp_path / "hierarchy_train-00000-of-00001.parquet").to_pylist()
    node_text = " ".join(f"{n['name']} {n['summary']}" for n in published_nodes).casefold()
    assert not [v for v in hidden_values if v.casefold().rstrip(".") in node_text]  # no withheld member quoted by a node
    assert "learning_value_rationale" not in table.column_names  # row text, left out unless asked for
    rationales = [r for r in real_result.data["learning_value_rationale"] if r and len(r) > 30]
    assert rationales and not any(r.casefold() in text for r in rationales)
    # The source was a local file: the run record and card name it, never its path.
    source = real_result.info["source"]
    assert source.startswith("path:/") and "sharegpt-rows.jsonl" in source
    local_folder = source[len("path:"):].rsplit("/", 1)[0]
    assert local_folder.casefold() not in text and "local:sharegpt-rows.jsonl" in text
    # No person's name, email or number that the rows hold is in a published name or summary.
    nodes = pq.read_table(tmp_path / "hierarchy_train-00000-of-00001.parquet").to_pylist()
    assert nodes and all(n["published"] for n in nodes) and any(n["parent_id"] is None for n in nodes)
    published_text = " ".join(f"{n['name']} {n['summary']}" for n in nodes).casefold()
    turns = [t["content"] for conversation in real_result.data["conversation"] for t in conversation]
    found = {text for spans in personal_data_spans(turns) for kind, text in spans if kind != "person" or " " in text}
    assert found  # ShareGPT rows do name people and give numbers
    assert not [text for text in found if text.casefold() in published_text]


@pytest.mark.parametrize("bad", [dict(min_rows=0), dict(min_users=0), dict(min_privacy_score=6), dict(audit_retries=-1),
                                 dict(audit_calibration="platt")])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ValueError, match="PrivacyConfig"):
        PrivacyConfig(**bad)
