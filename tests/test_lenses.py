"""Quality lenses (`clio_hf.lenses`), their rationales and bands, the `summary` table, and non-conversation inputs."""

from __future__ import annotations

import csv

import datasets
import pytest

import clio_hf
from clio_hf import cli
from clio_hf.facets import resolve_facets
from clio_hf.lenses import (CODE_QUALITY, INSTRUCTION_FOLLOWING, LEARNING_VALUE, LENSES, TEXTBOOK_QUALITY, Lens, band,
                            explain_scores)
from clio_hf.sources import load_source, sample_stream
from clio_hf.summary import ALL, facets_from_info, summarize
from fakes import HashEmbedder, ScriptedLLM, conversation


@pytest.fixture(autouse=True)
def private_datasets_cache(tmp_path, monkeypatch):
    # `datasets` caches a local result folder under the folder's *name* and never re-reads changed files, so two
    # results saved under the same name would read each other's tables: give every test its own cache.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets-cache"))


# ---- lenses and bands -----------------------------------------------------------------------------------------------
def test_lenses_are_selectable_by_name():
    facets = resolve_facets("textbook_quality,learning_value,code_quality,instruction_following,request")
    assert facets[:4] == (TEXTBOOK_QUALITY, LEARNING_VALUE, CODE_QUALITY, INSTRUCTION_FOLLOWING)
    assert [f.column for f in facets[:4]] == list(LENSES)
    assert all(isinstance(f, Lens) and f.numeric in ((1, 4), (1, 5)) for f in facets[:4])
    assert INSTRUCTION_FOLLOWING.needs_response and not TEXTBOOK_QUALITY.needs_response
    with pytest.raises(ValueError, match="lenses: textbook_quality, learning_value"):
        resolve_facets("textbook_qualty")


def test_bands_follow_the_scale():
    assert [band(v, (1, 4)) for v in (1, 2, 3, 4)] == ["Poor", "Low", "Medium", "Good"]
    assert [band(v, (1, 5)) for v in (1, 2, 3, 4, 5)] == ["Poor", "Low", "Medium", "Good", "Good"]
    assert band(None, (1, 5)) is None
    with pytest.raises(ValueError, match="score 5"):
        band(5, (1, 4))
    with pytest.raises(ValueError, match=r"\(1, 4\) or \(1, 5\)"):
        Lens(name="Odd", question="?", numeric=(0, 9))


def test_lens_round_trips_through_the_run_record():
    info = {"facets": [f.to_dict() for f in (LEARNING_VALUE, INSTRUCTION_FOLLOWING, clio_hf.facets.REQUEST)]}
    assert facets_from_info(info) == [LEARNING_VALUE, INSTRUCTION_FOLLOWING, clio_hf.facets.REQUEST]


# ---- rationales -----------------------------------------------------------------------------------------------------
def _rows(scores):
    return datasets.Dataset.from_dict({
        "conversation": [conversation(f"teach me topic {i}", f"here is lesson {i}") for i in range(len(scores))],
        "learning_value": scores,
        "code_quality": [1] * len(scores),
    }, features=datasets.Features({"conversation": clio_hf.columns.MESSAGE_FEATURE,
                                   "learning_value": datasets.Value("int64"), "code_quality": datasets.Value("int64")}))


def test_explain_scores_asks_why_the_chosen_score_was_given():
    replies = {"lesson 0": " it walks through the topic step by step.</answer>", "lesson 2": "</answer>"}

    def reply(prompt):
        text = prompt[1]["content"]
        return next((r for key, r in replies.items() if key in text), " it is short.</answer>")

    llm = ScriptedLLM(reply=reply)
    ds = _rows([4, None, 2, 5])
    out = explain_scores(ds, llm, facets=[LEARNING_VALUE, CODE_QUALITY, clio_hf.facets.REQUEST],
                         config=clio_hf.FacetConfig(max_retries=1))
    assert out.column_names == ds.column_names + ["learning_value_rationale", "code_quality_rationale"]
    assert out.select_columns(ds.column_names).to_dict() == ds.to_dict()  # nothing else changes
    assert out["learning_value_rationale"] == [
        "Because it walks through the topic step by step.", None, None, "Because it is short."]
    asked = [p for p in llm.prompts if "could a reader learn" in p[3]["content"]]
    assert not any("lesson 1" in p[1]["content"] for p in asked)  # a null score is not explained
    first = next(p for p in asked if "lesson 0" in p[1]["content"])
    assert "The score given is 4 on the scale from 1 to 5 (Good)" in first[3]["content"]
    assert first[4]["content"] == "<answer>Because"
    assert sum("lesson 2" in p[1]["content"] for p in asked) == 2  # unparseable: one seeded retry, then null
    assert "(Poor)" in next(p for p in llm.prompts if "program code" in p[3]["content"])[3]["content"]


def test_instruction_following_needs_an_instruction_and_an_output(tmp_path):
    ds = datasets.Dataset.from_dict({"text": ["write a poem", "sum two numbers"], "output": ["roses", "a + b"]})
    llm = ScriptedLLM()
    with pytest.raises(ValueError, match=r"row 0 .*no assistant turn.*--columns instruction,output"):
        clio_hf.annotate(ds, facets="instruction_following", llm=llm, cache_dir=tmp_path)
    assert llm.prompts == []  # stopped before any facet was asked
    result = clio_hf.annotate(ds, facets="instruction_following", llm=llm, columns=["text", "output"], cache_dir=tmp_path)
    assert result.data["conversation"][1][0]["content"] == "text:\nsum two numbers\n\noutput:\na + b"
    assert result.data.features["instruction_following"] == datasets.Value("int64")
    assert all(v.startswith("Because") for v in result.data["instruction_following_rationale"])


# ---- the summary table ----------------------------------------------------------------------------------------------
def _summary_inputs():
    data = datasets.Dataset.from_dict({
        "request_cluster": [0, 0, 1, 1, 2, -1],
        "learning_value": [1, 2, 5, 4, None, 3],
        "concerning": [1, 1, 2, 2, 5, 1],
    })
    hierarchy = datasets.Dataset.from_dict({
        "facet": ["request"] * 5, "node_id": [0, 1, 2, 3, 4], "level": [0, 0, 0, 1, 1],
        "parent_id": [3, 4, 4, None, None], "name": ["a", "b", "c", "Basics", "Advanced"], "size": [2, 2, 1, 2, 3],
    })
    return data, hierarchy


def test_summary_bands_overall_and_per_top_level_cluster():
    data, hierarchy = _summary_inputs()
    rows = summarize(data, hierarchy, facets=[LEARNING_VALUE, clio_hf.facets.CONCERNING])
    table = {(r["cluster"], r["facet"]): r for r in rows}
    overall = table[(ALL, "learning_value")]
    assert overall["rows"] == 5 and overall["mean"] == pytest.approx(3.0)  # the null score is left out
    assert (overall["Poor"], overall["Low"], overall["Medium"], overall["Good"]) == (0.2, 0.2, 0.2, 0.4)
    advanced = table[("Advanced", "learning_value")]  # nodes 1 and 2: scores 5, 4 and a null
    assert advanced["rows"] == 2 and advanced["mean"] == 4.5 and advanced["Good"] == 1.0 and advanced["Poor"] == 0.0
    assert table[("Basics", "learning_value")]["mean"] == 1.5
    assert [r["cluster"] for r in rows] == [ALL, ALL, "Advanced", "Advanced", "Basics", "Basics"]  # largest first
    concerning = table[(ALL, "concerning")]
    assert concerning["mean"] == pytest.approx(2.0) and concerning["Good"] is None  # not a lens: no bands
    only_overall = summarize(data, hierarchy.select([]), facets=[LEARNING_VALUE])
    assert [r["cluster"] for r in only_overall] == [ALL]
    with pytest.raises(ValueError, match="no numeric facet"):
        summarize(data, hierarchy, facets=[clio_hf.facets.REQUEST])


def test_cli_summary_prints_the_table_and_writes_csv(tmp_path, capsys):
    texts = [f"{topic} question {i}" for i, topic in enumerate(["python code", "bread recipe"] * 6)]
    ds = datasets.Dataset.from_dict({"messages": [conversation(t, "an answer") for t in texts]})
    llm = ScriptedLLM(reply=lambda p: " explain something</answer>" if "Here is a conversation" in p[1]["content"]
                      else "Group name here</name>\n<summary>A group of similar requests about things.</summary>",
                      pick=lambda p, n: 0 if "bread" in p[1]["content"] else n - 1)
    result = clio_hf.annotate(ds, facets="request,code_quality", llm=llm, embedder=HashEmbedder(), cache_dir=tmp_path)
    result.save_to_disk(tmp_path / "lens-result")
    out_csv = tmp_path / "summary.csv"
    assert cli.main(["summary", str(tmp_path / "lens-result"), "--csv", str(out_csv)]) == 0
    printed = capsys.readouterr().out
    assert "(all rows)" in printed and "code_quality" in printed and "50.0%" in printed  # half Poor, half Good
    rows = list(csv.DictReader(out_csv.open()))
    assert rows[0]["cluster"] == ALL and float(rows[0]["Poor"]) == 0.5 and float(rows[0]["Good"]) == 0.5
    assert float(rows[0]["mean"]) == 2.5 and len(rows) == 1 + len(result.hierarchy.filter(lambda n: n["parent_id"] is None))


# ---- non-conversation inputs: streaming a seeded sample -------------------------------------------------------------
def test_stream_sample_is_seeded_and_reads_from_the_stream(tmp_path):
    folder = tmp_path / "many-shards"
    folder.mkdir()
    for shard in range(4):
        datasets.Dataset.from_dict({"text": [f"row {shard * 50 + i}" for i in range(50)]}).to_parquet(
            folder / f"train-{shard:05d}-of-00004.parquet")
    first = sample_stream(str(folder), sample=7, seed=3, buffer_size=20)["text"]
    assert len(set(first)) == 7 and all(t.startswith("row ") for t in first)
    assert sample_stream(str(folder), sample=7, seed=3, buffer_size=20)["text"] == first
    assert sample_stream(str(folder), sample=7, seed=4, buffer_size=20)["text"] != first
    assert load_source(str(folder), sample=7, seed=3, stream=True)["text"] != first  # a local folder: exact shuffle


# ---- the real packaged LLM ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2():
    from clio_hf.llm import TransformersLLM, smollm2_checkpoint

    return TransformersLLM(smollm2_checkpoint(), model_id="smollm2-135m")


@pytest.mark.slow
def test_real_lenses_on_instruction_and_output_columns(sharegpt_source, smollm2, tmp_path):
    pairs = []
    for turns in sharegpt_source["conversations"]:
        user = next((t["value"] for t in turns if t["from"] == "human"), None)
        reply = next((t["value"] for t in turns if t["from"] == "gpt"), None)
        if user and reply:
            pairs.append({"instruction": user[:400], "output": reply[:400], "source": "sharegpt"})
        if len(pairs) == 4:
            break
    config = clio_hf.ClioConfig(conversation=clio_hf.ConversationConfig(max_tokens=96),
                                facets=clio_hf.FacetConfig(rationale_max_new_tokens=20, max_retries=0))
    result = clio_hf.annotate(datasets.Dataset.from_list(pairs), facets="learning_value,instruction_following",
                              columns=["instruction", "output"], llm=smollm2, config=config, cache_dir=tmp_path)
    data = result.data
    for lens, (lo, hi) in (("learning_value", (1, 5)), ("instruction_following", (1, 4))):
        assert data.features[lens] == datasets.Value("int64")
        assert all(lo <= v <= hi for v in data[lens])  # chosen among the digits: always in range
        rationales = data[f"{lens}_rationale"]
        assert sum(r is not None for r in rationales) >= 2 and all(r.startswith("Because") for r in rationales if r)
    assert data["instruction"] == [p["instruction"] for p in pairs]
    assert len(result.hierarchy) == 0 and [f.get("lens") for f in result.info["facets"]] == [True, True]
    rows = summarize(data, result.hierarchy, facets=facets_from_info(result.info))
    assert [r["facet"] for r in rows] == ["learning_value", "instruction_following"] and rows[0]["rows"] == 4


@pytest.mark.slow
def test_rationales_are_asked_while_the_conversation_is_cached(sharegpt_source, smollm2, monkeypatch):
    """`extract_facets` asks a lens's rationale right after the score, so the backend prefills only the question;
    asked later (the conversations' caches gone), the same prompts prefill the whole conversation again."""
    from clio_hf.extract import extract_facets
    from clio_hf.lenses import rationales
    from clio_hf.prompts import transcript

    llm = smollm2
    llm._prefixes.clear()
    ds = clio_hf.to_conversations(sharegpt_source.select(range(4)), llm, config=clio_hf.ConversationConfig(max_tokens=128))
    config = clio_hf.FacetConfig(rationale_max_new_tokens=12, max_retries=0)
    prefilled = []
    generate = llm.generate

    def counting(prompts, **kwargs):  # with a lens alone, every generate call is a rationale
        before = llm.usage["prefill_tokens"]
        out = generate(prompts, **kwargs)
        prefilled.append(llm.usage["prefill_tokens"] - before)
        return out

    monkeypatch.setattr(llm, "generate", counting)
    out = extract_facets(ds, llm, facets=[LEARNING_VALUE], config=config)
    in_pass = sum(prefilled)
    llm._prefixes.clear()
    prefilled.clear()
    later = rationales(llm, LEARNING_VALUE, [transcript(c) for c in ds["conversation"]], out["learning_value"], list(range(4)), config)
    assert later == out["learning_value_rationale"] and sum(r is not None for r in later) >= 2  # the same greedy answers
    assert in_pass < 0.5 * sum(prefilled), (in_pass, sum(prefilled))
