"""The vllm: backend on the real vllm-cpu engine, with SmolLM2-135M converted once to safetensors (cached).

Runs in the virtualenv that scripts/setup_vllm.sh makes (vllm-cpu must not replace the main environment's packages).
"""

import os

import pytest

import clio_hf
from clio_hf import prompts
from clio_hf.facets import CONCERNING, REQUEST, TASK
from clio_hf.hierarchy import NAME_SOURCES
from clio_hf.llm import smollm2_checkpoint
from fakes import conversation

if os.environ.get("CLIO_HF_REQUIRE_VLLM"):  # set by scripts/test.sh: in CI a missing vLLM fails, never skips
    import vllm  # noqa: F401
else:
    pytest.importorskip("vllm", reason="run with the vLLM virtualenv made by scripts/setup_vllm.sh")

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache; the default reserves far more than needed

TEXTS = ["How do I sort a dict by value in Python?", "Give me three names for a grey cat.", "Explain what a mortgage is."]
# vLLM caches whole blocks only (128 tokens on the CPU): a reply this long makes each conversation's head span one.
REPLY = ("Sure. Here is a short answer, with the main points first and the details after them, so that you can "
         "stop reading once you have what you need. " * 3).strip()


@pytest.fixture(scope="session")
def smollm2_dir():
    return smollm2_checkpoint()


@pytest.fixture(scope="module")
def engine(smollm2_dir):
    from clio_hf.backends_vllm import VLLMLLM

    llm = VLLMLLM(smollm2_dir, model_id="vllm:smollm2-135m", max_model_len=2048, enforce_eager=True, progress=False)
    yield llm
    llm.close()


def _chats(facet, texts=TEXTS):
    return [prompts.facet_prompt(prompts.transcript(conversation(t, REPLY)), prompts.facet_question(facet),
                                 prompts.facet_answer_prefill(facet)) for t in texts]


def test_vllm_generates_choose_and_reuses_the_conversation_prefix(engine):
    before = dict(engine.usage)
    answers = engine.generate(_chats(REQUEST), max_new_tokens=12, stop=["</answer>"])
    picks = engine.choose(_chats(CONCERNING), list("12345"))
    again = engine.generate(_chats(TASK), max_new_tokens=12, stop=["</answer>"])
    spent = {k: engine.usage[k] - before[k] for k in before}
    assert len(answers) == len(again) == 3 and all(isinstance(a, str) and "</answer>" not in a for a in answers + again)
    assert all(0 <= p < 5 for p in picks)
    assert spent["prompts"] == 9 and spent["generated_tokens"] > 3
    # The 2nd and 3rd facet of each conversation find its blocks in vLLM's prefix cache.
    assert spent["prefill_tokens"] < spent["prompt_tokens"] * 0.8


def test_vllm_prompts_are_the_shared_rendering(engine):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint())
    chat = _chats(REQUEST)[0]
    sent = engine._token_prompts([chat])[0]["prompt_token_ids"]
    expected = tokenizer(tokenizer.apply_chat_template(chat, tokenize=False, continue_final_message=True), add_special_tokens=False).input_ids
    assert sent == expected
    assert tokenizer.decode(sent).endswith(prompts.facet_answer_prefill(REQUEST))  # the prefill is continued, not closed


def test_vllm_seeded_sampling_depends_only_on_the_seed_and_guided_choice(engine):
    chats = _chats(TASK)[:2]
    a = engine.generate(chats, max_new_tokens=8, temperature=1.0, seeds=[1, 2])
    b = engine.generate(chats[::-1], max_new_tokens=8, temperature=1.0, seeds=[2, 1])
    assert a == b[::-1]
    options = ["harmless", "somewhat concerning", "very concerning"]
    picks = engine.choose(_chats(CONCERNING), options)  # multi-token options: guided decoding
    assert all(0 <= p < 3 for p in picks)


def test_vllm_end_to_end_through_facets_and_a_hierarchy(engine, tmp_path):
    from clio_hf.sources import load_source

    rows = load_source("sharegpt", limit=12)
    config = clio_hf.ClioConfig(
        conversation=clio_hf.ConversationConfig(max_tokens=160),
        facets=clio_hf.FacetConfig(max_new_tokens=24, max_retries=1, batch_size=64),
        cluster=clio_hf.ClusterConfig(rows_per_base_cluster=3),
        hierarchy=clio_hf.HierarchyConfig(name_samples=1, name_max_new_tokens=32),
    )
    result = clio_hf.annotate(rows, facets="request,concerning", llm=engine, config=config, cache_dir=tmp_path)
    data, tree = result.data, result.hierarchy
    assert len(data) == 12
    assert set(data["concerning"]) <= {1, 2, 3, 4, 5}
    requests = [v for v in data["request"] if v is not None]
    assert len(requests) >= 8 and all(v.startswith(REQUEST.prefill) for v in requests)
    assert set(tree["facet"]) == {"request"} and max(tree["level"]) >= 1
    base = [n for n in tree if n["level"] == 0]
    assert sum(n["size"] for n in base) == len(requests)
    assert all(n["name"] and n["name_source"] in NAME_SOURCES for n in tree)
    assert result.info["llm"] == "vllm:smollm2-135m"
