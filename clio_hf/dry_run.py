"""`annotate --dry-run`: what each LLM stage will send, and how long that should take, before any real generation.

The facet stage is counted exactly: every prompt is built and rendered as the backend will send it. The naming stages
depend on answers not yet known, so their prompt counts follow the configured cluster and level sizes and their tokens
come from a representative prompt (marked as estimates). Time comes from the backend's measured rate: a short
calibration on a few of the real open-answer facet prompts (a one-token pass for prefill speed, then a generation
that stops at `</answer>` for decode speed and the share of the token budget answers use).

Prefix reuse is counted the same way everywhere: `prefill_after_reuse` gives the tokens a backend that reuses a
conversation's cache still has to compute, both for the plan and for the calibration, so a rate measured on prompts
that reused prefixes is never applied to counts already reduced for reuse a second time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from . import prompts
from .backends import LLM, ChatPrompt, chat_template
from .cluster import base_cluster_count
from .config import ClioConfig
from .facets import Facet, Lens, band
from .hierarchy import level_targets

CALIBRATION_PROMPTS = 8
CALIBRATION_NEW_TOKENS = 16


@dataclass(frozen=True)
class StagePlan:
    stage: str
    prompts: int
    prompt_tokens: int
    prefill_tokens: int
    """Prompt tokens left to compute after prefix reuse (equals prompt_tokens when the backend does not reuse)."""
    max_new_tokens: int
    exact: bool
    choices: int = 0
    """Prompts answered by choosing one option (one token each, included in max_new_tokens)."""


@dataclass(frozen=True)
class Rate:
    prefill_tokens_per_s: float
    generated_tokens_per_s: float
    answer_share: float = 1.0
    """How much of its token budget an open answer used on the calibration prompts (answers stop at `</answer>`)."""

    def seconds(self, plan: StagePlan, *, bound: bool = False) -> float:
        """The stage's expected time, or with `bound` its upper bound: every answer uses its whole budget."""
        share = 1.0 if bound else self.answer_share
        generated = (plan.max_new_tokens - plan.choices) * share + plan.choices
        return plan.prefill_tokens / self.prefill_tokens_per_s + generated / self.generated_tokens_per_s


def prompt_tokens(llm: LLM, prompt: ChatPrompt) -> tuple[int, int, int]:
    """Tokens of (the rendered prompt, its shareable head, the head's system-message base), with the backend's chat
    template if it has one."""
    tokenizer = getattr(llm, "tokenizer", None)
    kwargs = getattr(llm, "chat_template_kwargs", None)
    if tokenizer is not None and hasattr(tokenizer, "apply_chat_template"):
        return tuple(chat_template.count_tokens(tokenizer, render(tokenizer, prompt, kwargs))
                     for render in (chat_template.render, chat_template.render_head, chat_template.render_base))
    per_message = [llm.count_tokens(m["content"]) + 4 for m in prompt]
    has_head = len(prompt) >= 3
    return sum(per_message), sum(per_message[:-2]) if has_head else 0, per_message[0] if has_head and prompt[0]["role"] == "system" else 0


class ReuseCounter:
    """Prompt tokens a backend still computes after prefix reuse, prompt by prompt in the order they are sent.

    With reuse a prompt whose head (the conversation) was seen skips the head; a new head whose system message was
    seen skips that base; `warm=True` counts prompts whose heads are all cached already (a second pass).
    """

    def __init__(self, llm: LLM, *, warm: bool = False):
        self.reuse, self.warm = bool(getattr(llm, "prefix_reuse", False)), warm
        self.heads: set[int] = set()
        self.bases: set[int] = set()

    def __call__(self, prompt: ChatPrompt, tokens: tuple[int, int, int]) -> int:
        full, head, base = tokens
        if not self.reuse:
            return full
        head_key = hash(tuple(m["content"] for m in prompt[:-2]))
        base_key = hash(prompt[0]["content"]) if prompt[0]["role"] == "system" else None
        computed = full - head if self.warm or head_key in self.heads else full - base if base_key in self.bases else full
        self.heads.add(head_key)
        self.bases.add(base_key)
        return computed


def prefill_after_reuse(llm: LLM, chats: list[ChatPrompt], *, warm: bool = False) -> int:
    count = ReuseCounter(llm, warm=warm)
    return sum(count(chat, prompt_tokens(llm, chat)) for chat in chats)


def facet_plan(conversations: list[list[dict]], facets: list[Facet], llm: LLM, config: ClioConfig
               ) -> tuple[StagePlan, list[ChatPrompt], list[ChatPrompt]]:
    """The facet stage's plan, every prompt it sends in order, and those among them answered in open text."""
    chats, opens, total, prefill, new_tokens = [], [], 0, 0, 0
    count = ReuseCounter(llm)
    texts = [prompts.transcript(c) for c in conversations]
    for text in texts:
        for facet in (f for f in facets if f.method == "llm"):
            chat = prompts.facet_prompt(text, prompts.facet_question(facet), prompts.facet_answer_prefill(facet))
            tokens = prompt_tokens(llm, chat)
            total += tokens[0]
            prefill += count(chat, tokens)
            chosen = facet.numeric and prompts.numeric_options(facet)
            new_tokens += 1 if chosen else config.facets.max_new_tokens
            chats.append(chat)
            if not chosen:
                opens.append(chat)
            if isinstance(facet, Lens):  # its rationale, asked right after the score (the score only changes a digit)
                top = facet.numeric[1]
                why = prompts.facet_prompt(text, prompts.rationale_question(facet, top, band(top, facet.numeric)),
                                           prompts.rationale_answer_prefill())
                tokens = prompt_tokens(llm, why)
                total, prefill, new_tokens = total + tokens[0], prefill + count(why, tokens), new_tokens + config.facets.rationale_max_new_tokens
                chats.append(why)
                opens.append(why)
    return StagePlan("extract_facets", len(chats), total, prefill, new_tokens, exact=True, choices=len(chats) - len(opens)), chats, opens


def naming_plan(rows: int, facets: list[Facet], llm: LLM, config: ClioConfig) -> StagePlan:
    """Naming base clusters and renaming parents, sized like `cluster_facets`/`build_hierarchy`."""
    h = config.hierarchy
    answer = "The user's overall request for the assistant is to " + "do a typical thing with some details " * 2
    count = tokens = 0
    for facet in (f for f in facets if f.clustered):
        base = base_cluster_count(rows, config.cluster)
        name_tokens = prompt_tokens(llm, prompts.cluster_name_prompt(facet, [answer] * h.inside_samples, [answer] * h.outside_samples))[0]
        count += base * h.name_samples
        tokens += base * h.name_samples * name_tokens
        children = base
        for target in level_targets(base, h):  # parents are grouped by embeddings; only their renaming asks the LLM
            target = min(target, h.max_top_nodes)
            group = ["A group name of some words"] * min(children, h.branching)
            rename = prompt_tokens(llm, prompts.rename_parent_prompt(facet, group))[0]
            count += target * h.name_samples
            tokens += target * h.name_samples * rename
            children = target
    new_tokens = count * h.name_max_new_tokens
    return StagePlan("build_hierarchy", count, tokens, tokens, new_tokens, exact=False)


def measure_rate(llm: LLM, sample: list[ChatPrompt], *, max_new_tokens: int = CALIBRATION_NEW_TOKENS,
                 clock=time.perf_counter) -> Rate:
    """Prefill and decode speed of this backend on real open-answer prompts, and how much of `max_new_tokens` their
    answers use (a few seconds; the only generation a dry run does).

    Both rates count what the backend computed: the one-token pass computes `prefill_after_reuse` of the sample (the
    plan's own count), and the generation that follows, whose heads are cached by then, prefills only the rest before
    decoding the tokens it actually generated (up to `</answer>`, as a real run stops).
    """
    sample = sample[:CALIBRATION_PROMPTS]
    # The first call of a process pays one-time costs (kernel selection, allocator growth) a long run does not.
    llm.generate([[{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": ""}]], max_new_tokens=2)
    start = clock()
    llm.choose(sample, ["1", "2"])
    prefill_rate = prefill_after_reuse(llm, sample) / max(clock() - start, 1e-3)
    start = clock()
    outputs = llm.generate(sample, max_new_tokens=max_new_tokens, stop=["</answer>"])
    generate_s = clock() - start
    decode_s = max(1e-3, generate_s - prefill_after_reuse(llm, sample, warm=True) / prefill_rate)
    # +1: the stop string's first token, cut from the text
    generated = sum(min(max_new_tokens, llm.count_tokens(text) + 1) for text in outputs)
    return Rate(prefill_rate, generated / decode_s, generated / (len(sample) * max_new_tokens))


def format_plan(plans: list[StagePlan], rate: Rate | None, rows: int, unique: int) -> str:
    lines = [f"dry run: {rows} rows, {unique} unique conversations; nothing was generated except a short calibration.",
             f"{'stage':<16} {'prompts':>8} {'prompt tok':>11} {'prefill tok':>12} {'max new tok':>12} {'est. time':>10}"]
    for plan in plans:
        seconds = f"{rate.seconds(plan):>9.0f}s" if rate else f"{'-':>10}"
        mark = "" if plan.exact else "  (estimate: depends on the clusters)"
        lines.append(f"{plan.stage:<16} {plan.prompts:>8} {plan.prompt_tokens:>11} {plan.prefill_tokens:>12} "
                     f"{plan.max_new_tokens:>12} {seconds}{mark}")
    if rate:
        total, bound = sum(rate.seconds(p) for p in plans), sum(rate.seconds(p, bound=True) for p in plans)
        lines.append(f"measured rate: {rate.prefill_tokens_per_s:.0f} prefill tok/s, {rate.generated_tokens_per_s:.1f} "
                     f"generated tok/s, answers using {rate.answer_share:.0%} of their token budget; total about "
                     f"{total / 60:.1f} min, at most {bound / 60:.1f} min if every answer used its whole budget")
    return "\n".join(lines)


def plan_annotation(source, *, llm: str | LLM, facets, config: ClioConfig = ClioConfig(), calibrate: bool = True,
                    column_prefix: str = "", **source_options) -> str:
    """The dry-run report for `annotate(source, ...)` with the same options: a table per LLM stage.

    `source_options` are `load_source`'s options (split, limit, sample, seed, stream, revision, name, data_files) and
    `annotate`'s column options (conversation_column, text_column, columns).
    """
    plans, rate, rows, unique = estimate_annotation(source, llm=llm, facets=facets, config=config, calibrate=calibrate,
                                                    column_prefix=column_prefix, **source_options)
    return format_plan(plans, rate, rows, unique)


def estimate_annotation(source, *, llm: str | LLM, facets, config: ClioConfig = ClioConfig(), calibrate: bool = True,
                        column_prefix: str = "", **source_options) -> tuple[list[StagePlan], Rate | None, int, int]:
    """`plan_annotation`'s numbers: the stage plans, the measured rate (None without calibration), rows, unique rows."""
    from . import columns as C
    from .backends import load_llm
    from .conversations import to_conversations
    from .facets import resolve_facets
    from .sources import load_source

    facets = list(resolve_facets(facets))
    where = {k: source_options.pop(k) for k in ("conversation_column", "text_column", "columns") if k in source_options}
    raw = load_source(source, **source_options)
    llm = load_llm(llm)
    conversations = to_conversations(raw, llm, config=config.conversation, column_prefix=column_prefix, **where)
    unique = [c for c, d in zip(conversations[column_prefix + C.CONVERSATION], conversations[column_prefix + C.DUPLICATE_OF]) if d < 0]
    facet_stage, _, opens = facet_plan(unique, facets, llm, config)
    plans = [facet_stage, naming_plan(len(unique), facets, llm, config)]
    rate = measure_rate(llm, opens, max_new_tokens=config.facets.max_new_tokens) if calibrate and opens else None
    return plans, rate, len(raw), len(unique)
