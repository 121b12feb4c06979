"""The transformers backend on the real packaged SmolLM2-135M (loaded once for this module) and the spec strings."""

import math

import pytest

from clio_hf import prompts
from clio_hf.embed import load_embedder
from clio_hf.facets import CONCERNING, REQUEST, TASK
from clio_hf.llm import TransformersLLM, load_llm, smollm2_checkpoint
from fakes import conversation


@pytest.fixture(scope="module")
def llm():
    return TransformersLLM(smollm2_checkpoint(), model_id="smollm2-135m")


def _chats(facet, texts):
    return [prompts.facet_prompt(prompts.transcript(conversation(t, "Here you go.")), prompts.facet_question(facet), prompts.facet_answer_prefill(facet)) for t in texts]


TEXTS = ["How do I reverse a list in Python?", "Write a short poem about the sea at night.", "What should I pack for a week of hiking in the rain?"]


def test_prefix_reuse_gives_the_same_answers_with_less_prefill(llm):
    llm._prefixes.clear()
    before = dict(llm.usage)
    shared = [llm.generate(_chats(f, TEXTS), max_new_tokens=6, stop=["</answer>"]) for f in (REQUEST, TASK)]
    shared_choice = llm.choose(_chats(CONCERNING, TEXTS), list("12345"))
    spent = {k: llm.usage[k] - before[k] for k in before}
    (base, _), _ = llm._split(_chats(REQUEST, TEXTS)[0])
    heads = sum(llm.count_tokens(llm._split(c)[0][1]) for c in _chats(REQUEST, TEXTS))
    assert spent["prompts"] == 9 and llm.count_tokens(base) > 20
    # Each conversation is prefilled once, not 3 times, and the system prompt under it once, not 3 times.
    assert spent["prefill_tokens"] == spent["prompt_tokens"] - 2 * heads - (len(TEXTS) - 1) * llm.count_tokens(base)

    llm.prefix_cache_size, llm._prefixes = 0, type(llm._prefixes)()
    try:
        alone = [llm.generate(_chats(f, TEXTS), max_new_tokens=6, stop=["</answer>"]) for f in (REQUEST, TASK)]
        alone_choice = llm.choose(_chats(CONCERNING, TEXTS), list("12345"))
    finally:
        llm.prefix_cache_size = 32
    assert shared == alone and shared_choice == alone_choice


def test_batch_composition_does_not_change_answers(llm):
    chats = _chats(REQUEST, TEXTS[:2])
    together = llm.generate(chats, max_new_tokens=6, stop=["</answer>"])
    one_by_one = [llm.generate([c], max_new_tokens=6, stop=["</answer>"])[0] for c in chats]
    assert together == one_by_one


def test_finished_rows_leave_the_batch_without_changing_any_answer(llm):
    chats = _chats(REQUEST, TEXTS) + _chats(TASK, TEXTS)
    llm.generate(chats, max_new_tokens=1)  # the heads are cached now: every forward below is the batch itself
    widths = []
    forward = llm.model.forward

    def spy(*args, **kwargs):
        widths.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    llm.model.forward = spy
    try:
        together = llm.generate(chats, max_new_tokens=40, stop=["</answer>"])
    finally:
        del llm.model.forward
    assert widths[0] == len(chats) and min(widths) < len(chats)  # rows that stopped were dropped mid-batch
    assert widths == sorted(widths, reverse=True)
    assert together == [llm.generate([c], max_new_tokens=40, stop=["</answer>"])[0] for c in chats]


def test_seeded_sampling_depends_only_on_the_seed(llm):
    chats = _chats(TASK, TEXTS[:2])
    a = llm.generate(chats, max_new_tokens=6, temperature=1.0, seeds=[1, 2])
    b = llm.generate(chats[::-1], max_new_tokens=6, temperature=1.0, seeds=[2, 1])
    assert a == b[::-1]
    c = llm.generate(chats, max_new_tokens=6, temperature=1.0, seeds=[11, 12])
    assert a != c


def test_choose_picks_an_allowed_option_and_stop_strings_cut(llm):
    picks = llm.choose(_chats(CONCERNING, TEXTS), list("12345"))
    assert all(0 <= p < 5 for p in picks)
    logprobs = llm.option_logprobs(_chats(CONCERNING, TEXTS), list("12345"))
    assert [max(range(5), key=row.__getitem__) for row in logprobs] == picks  # choose is the argmax of these
    assert all(len(row) == 5 and all(x < 0 for x in row) and sum(math.exp(x) for x in row) <= 1 + 1e-6 for row in logprobs)
    outputs = llm.generate(_chats(REQUEST, TEXTS), max_new_tokens=24, stop=["</answer>"])
    assert all("</answer>" not in o for o in outputs)
    with pytest.raises(ValueError, match="single distinct tokens"):
        llm.choose(_chats(CONCERNING, TEXTS[:1]), ["10", "20"])


def test_truncation_counts_with_the_tokenizer(llm):
    text = "one two three four five six seven eight nine ten " * 20
    cut = llm.truncate_text(text, 17)
    assert llm.count_tokens(cut) <= 17 and text.startswith(cut) and len(cut) < len(text)


def test_truncation_stays_in_budget_when_characters_span_tokens(llm):
    text = "héllo wörld 你好世界 😀😃😄 " * 5
    for budget in range(1, 40):
        cut = llm.truncate_text(text, budget)
        assert llm.count_tokens(cut) <= budget and text.startswith(cut)
    assert llm.count_tokens(llm.truncate_text(text, 39)) >= 36  # stepping back loses a token or two, not the text


def test_unknown_specs_list_the_valid_forms():
    with pytest.raises(ValueError, match="Valid forms.*transformers:<path-or-id>.*openai"):
        load_llm("gpt-9000")
    with pytest.raises(ValueError, match="Valid forms.*sentence-transformers"):
        load_embedder("nope")
    with pytest.raises(TypeError):
        load_llm(42)


@pytest.mark.parametrize("spec", ["transformers:/missing", "transformers:./models/none", "vllm:~/no/such/model",
                                  "transformers:models/a/b"])
def test_a_missing_model_folder_is_named_not_sent_to_the_hub(spec):
    with pytest.raises(FileNotFoundError, match=f"{spec!r}: no model folder at"):
        load_llm(spec)


def test_a_missing_embedder_folder_is_named():
    with pytest.raises(FileNotFoundError, match="no model folder at '/missing/minilm'"):
        load_embedder("sentence-transformers:/missing/minilm")


def test_backend_options_reach_the_model_and_those_that_change_answers_key_it(monkeypatch):
    import clio_hf.llm as llm_module

    llm = load_llm("smollm2-135m", batch_size=4, chat_template_kwargs={"enable_thinking": False})
    assert llm.batch_size == 4 and llm.chat_template_kwargs == {"enable_thinking": False}
    assert llm.model_id == 'smollm2-135m {"chat_template_kwargs": {"enable_thinking": false}}'  # batch size: no effect
    assert load_llm("smollm2-135m", batch_size=4).model_id == "smollm2-135m"

    made = []
    monkeypatch.setattr(llm_module, "TransformersLLM", lambda path, **options: made.append((path, options)) or
                        type("Made", (), {"model_id": options["model_id"]})())
    assert load_llm("HuggingFaceTB/SmolLM2-135M-Instruct").model_id == "transformers:HuggingFaceTB/SmolLM2-135M-Instruct"
    assert made == [("HuggingFaceTB/SmolLM2-135M-Instruct", {"model_id": "transformers:HuggingFaceTB/SmolLM2-135M-Instruct"})]
    with pytest.raises(ValueError, match="Unknown LLM spec 'gpt-9000'"):  # a bare name is no org/name
        load_llm("gpt-9000")


def test_cli_llm_options_parse_json_values_and_dotted_keys():
    from clio_hf.cli import _llm_options

    assert _llm_options(["batch_size=8", "chat_template_kwargs.enable_thinking=false", "dtype=bfloat16",
                         "chat_template_kwargs.reasoning_effort=low"]) == {
        "batch_size": 8, "dtype": "bfloat16", "chat_template_kwargs": {"enable_thinking": False, "reasoning_effort": "low"}}
    with pytest.raises(ValueError, match="write KEY=VALUE"):
        _llm_options(["batch_size"])
    with pytest.raises(ValueError, match="already set to a value"):
        _llm_options(["a=1", "a.b=2"])
