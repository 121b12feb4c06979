"""Backend plumbing that needs no engine: prefix reuse on/off, import without `datasets`, spec strings, the dry run."""

import subprocess
import sys

import pytest

from clio_hf import prompts
from clio_hf.backends_openai import parse_openai_spec
from clio_hf.config import ClioConfig
from clio_hf.dry_run import Rate, facet_plan, measure_rate, naming_plan, prompt_tokens
from clio_hf.facets import CONCERNING, MAIN_FACETS, REQUEST, TASK
from clio_hf.llm import TransformersLLM, smollm2_checkpoint
from fakes import conversation

TEXTS = ["How do I sort a dict by value in Python?", "Give me three names for a grey cat.", "Explain what a mortgage is."]


@pytest.fixture(scope="module")
def llm():
    return TransformersLLM(smollm2_checkpoint(), model_id="smollm2-135m")


def _chats(facet):
    return [prompts.facet_prompt(prompts.transcript(conversation(t, "Sure.")), prompts.facet_question(facet),
                                 prompts.facet_answer_prefill(facet)) for t in TEXTS]


def test_prefix_reuse_switch_keeps_greedy_outputs_and_prefills_less(llm):
    def run():
        llm._prefixes.clear()
        before = dict(llm.usage)
        texts = [llm.generate(_chats(f), max_new_tokens=8, stop=["</answer>"]) for f in (REQUEST, TASK)]
        picks = llm.choose(_chats(CONCERNING), list("12345"))
        return texts, picks, {k: llm.usage[k] - before[k] for k in before}

    on_texts, on_picks, on = run()
    llm.prefix_reuse = False
    try:
        off_texts, off_picks, off = run()
    finally:
        llm.prefix_reuse = True
    assert (on_texts, on_picks) == (off_texts, off_picks)
    assert on["prompt_tokens"] == off["prompt_tokens"] == off["prefill_tokens"]
    heads = sum(prompt_tokens(llm, c)[1] for c in _chats(REQUEST))
    base = prompt_tokens(llm, _chats(REQUEST)[0])[2]
    # 3 facets: each conversation is computed once, and the system prompt under the conversations once
    assert base > 0 and on["prefill_tokens"] == off["prefill_tokens"] - 2 * heads - (len(TEXTS) - 1) * base


def test_llm_prompts_and_backends_import_without_datasets():
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'datasets' or name.startswith('datasets.'):\n"
        "            raise ImportError('datasets is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import clio_hf, clio_hf.llm, clio_hf.prompts, clio_hf.chat_template, clio_hf.backends_vllm, clio_hf.backends_openai\n"
        "from clio_hf import load_llm, LLM, MAIN_FACETS, Facet\n"
        "assert 'datasets' not in sys.modules\n"
        "try:\n"
        "    import datasets\n"
        "except ImportError:\n"
        "    print('blocked')\n"
    )
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "blocked"  # the blocker really works, so the imports above really ran without it


def test_openai_spec_parsing():
    assert parse_openai_spec("openai:Qwen/Qwen3-8B@http://127.0.0.1:8000/v1") == ("Qwen/Qwen3-8B", "http://127.0.0.1:8000/v1")
    assert parse_openai_spec("openai:org/m@v2@https://api.example.org/v1") == ("org/m@v2", "https://api.example.org/v1")
    with pytest.raises(ValueError, match="openai:<model>@<base_url>"):
        parse_openai_spec("openai:gpt-4o")


def test_dry_run_counts_every_facet_prompt_as_rendered(llm):
    conversations = [conversation(t, "Sure.") for t in TEXTS]
    config = ClioConfig()
    plan, chats, opens = facet_plan(conversations, list(MAIN_FACETS), llm, config)
    assert opens == [c for c in chats if "1 to 5" not in c[-2]["content"]] and len(opens) == 2 * len(TEXTS)
    llm_facets = [f for f in MAIN_FACETS if f.method == "llm"]
    assert plan.prompts == len(chats) == len(TEXTS) * len(llm_facets)
    rendered = sum(llm.count_tokens(llm.render(c)) for c in chats)
    assert plan.prompt_tokens == rendered
    heads = sum(prompt_tokens(llm, c)[1] for c in _chats(REQUEST))
    base = prompt_tokens(llm, _chats(REQUEST)[0])[2]
    assert plan.prefill_tokens == rendered - (len(llm_facets) - 1) * heads - (len(TEXTS) - 1) * base
    # Request and Task generate up to max_new_tokens; Concerning chooses one digit.
    assert plan.max_new_tokens == len(TEXTS) * (2 * config.facets.max_new_tokens + 1)
    naming = naming_plan(100, list(MAIN_FACETS), llm, config)
    assert naming.prompts > 2 * 10 * config.hierarchy.name_samples and not naming.exact


class ClockedLLM:
    """A backend double whose work moves a fake clock: `prefill` prompt tokens/s for what its prefix cache does not
    hold, then `decode` generated tokens/s; every answer is `answer_tokens` long (then `</answer>`). Its cache keeps
    every conversation and system message it has seen."""

    model_id, prefix_reuse = "clocked", True

    def __init__(self, prefill: float, decode: float, answer_tokens: int):
        self.prefill, self.decode, self.answer_tokens, self.now = prefill, decode, answer_tokens, 0.0
        self.cached: set = set()

    def count_tokens(self, text):
        return len(text.split())

    def _prefill(self, chats):
        for chat in chats:
            full, head, base = prompt_tokens(self, chat)
            conversation, system = tuple(m["content"] for m in chat[:-2]), chat[0]["content"]
            self.now += (full - head if conversation in self.cached else full - base if system in self.cached else full) / self.prefill
            self.cached |= {conversation, system}

    def choose(self, chats, options):
        self._prefill(chats)
        return [0] * len(chats)

    def generate(self, chats, *, max_new_tokens, **kwargs):
        self._prefill(chats)
        tokens = min(max_new_tokens, self.answer_tokens + 1)
        self.now += tokens * len(chats) / self.decode
        return [" ".join(["word"] * self.answer_tokens) if tokens > self.answer_tokens else " ".join(["word"] * tokens)] * len(chats)


@pytest.mark.parametrize("answer_tokens", [7, 40])
def test_dry_run_calibration_counts_prefix_reuse_once(answer_tokens):
    """The measured rates are the backend's true ones, the estimate equals the time the stage then takes, and the
    bound equals it when every answer uses its whole budget."""
    config = ClioConfig()
    budget = config.facets.max_new_tokens

    def clocked():
        return ClockedLLM(prefill=400.0, decode=25.0, answer_tokens=answer_tokens)

    llm = clocked()
    plan, chats, opens = facet_plan([conversation(t * 6, "Sure.") for t in TEXTS], list(MAIN_FACETS), llm, config)
    rate = measure_rate(llm, opens, max_new_tokens=budget, clock=lambda: llm.now)
    assert rate.prefill_tokens_per_s == pytest.approx(400.0) and rate.generated_tokens_per_s == pytest.approx(25.0)
    assert rate.answer_share == pytest.approx(min(1.0, (answer_tokens + 1) / budget))
    stage, full = clocked(), clocked()
    full.answer_tokens = budget
    for chat in chats:  # the stage itself, prompt by prompt in the plan's order
        for run in (stage, full):
            if chat in opens:
                run.generate([chat], max_new_tokens=budget)
            else:
                run.choose([chat], list("12345"))
                run.now += 1 / 25.0  # a choice counts as one generated token
    assert rate.seconds(plan) == pytest.approx(stage.now)
    assert rate.seconds(plan, bound=True) == pytest.approx(full.now) == Rate(400.0, 25.0).seconds(plan)


def test_openai_choose_is_null_when_the_answer_names_no_option():
    from types import SimpleNamespace as NS

    from clio_hf.backends_openai import OpenAILLM

    def reply(text, top_tokens):
        logprobs = NS(content=[NS(top_logprobs=[NS(token=t, logprob=-1.0 - i) for i, t in enumerate(top_tokens)])])
        return NS(choices=[NS(message=NS(content=text), logprobs=logprobs)])

    llm = OpenAILLM("no-such-model", "http://127.0.0.1:9", tokenizer="/no/such/tokenizer", progress=False)
    assert llm._pick(reply("3", ["x", "3"]), list("12345")) == 2
    assert llm._pick(reply("4 because", ["because"]), list("12345")) == 3
    assert llm._pick(reply("no idea", ["no"]), list("12345")) is None  # never a made-up option 0 ("1")
    assert llm.usage["choose_fallbacks"] == 1
