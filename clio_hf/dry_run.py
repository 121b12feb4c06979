"""`annotate --dry-run`: what each LLM stage will send, and how long that should take, before any real generation.

The facet stage is counted exactly: every prompt is built and rendered as the backend will send it. The naming stages
depend on answers not yet known, so their prompt counts follow the configured cluster and level sizes and their tokens
come from a representative prompt (marked as estimates). Time comes from the backend's measured rate: a short
calibration on a few of the real facet prompts (a one-token pass for prefill speed, then a 16-token generation for
decode speed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from . import chat_template, prompts
from .config import ClioConfig
from .facets import Facet
from .hierarchy import level_targets
from .llm import LLM, ChatPrompt

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


@dataclass(frozen=True)
class Rate:
    prefill_tokens_per_s: float
    generated_tokens_per_s: float

    def seconds(self, plan: StagePlan) -> float:
        return plan.prefill_tokens / self.prefill_tokens_per_s + plan.max_new_tokens / self.generated_tokens_per_s


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


def facet_plan(conversations: list[list[dict]], facets: list[Facet], llm: LLM, config: ClioConfig) -> tuple[StagePlan, list[ChatPrompt]]:
    reuse = bool(getattr(llm, "prefix_reuse", False))
    chats, total, prefill, new_tokens = [], 0, 0, 0
    texts = [prompts.transcript(c) for c in conversations]
    for row, text in enumerate(texts):
        for index, facet in enumerate(f for f in facets if f.method == "llm"):
            chat = prompts.facet_prompt(text, prompts.facet_question(facet), prompts.facet_answer_prefill(facet))
            full, head, base = prompt_tokens(llm, chat)
            total += full
            # with reuse, a row's later facets skip its head, and every head after the first skips the system base
            prefill += full if not reuse else full - head if index > 0 else full - base if row > 0 else full
            new_tokens += 1 if facet.numeric and prompts.numeric_options(facet) else config.facets.max_new_tokens
            chats.append(chat)
    return StagePlan("extract_facets", len(chats), total, prefill, new_tokens, exact=True), chats


def naming_plan(rows: int, facets: list[Facet], llm: LLM, config: ClioConfig) -> StagePlan:
    """Naming, parent proposals, assignments and parent renaming, sized like `cluster_facets`/`build_hierarchy`."""
    h = config.hierarchy
    answer = "The user's overall request for the assistant is to " + "do a typical thing with some details " * 2
    count = tokens = 0
    for facet in (f for f in facets if f.clustered):
        base = max(1, min(config.cluster.max_base_clusters, round(rows / config.cluster.rows_per_base_cluster)))
        name_tokens = prompt_tokens(llm, prompts.cluster_name_prompt(facet, [answer] * h.inside_samples, [answer] * h.outside_samples))[0]
        count += base * h.name_samples
        tokens += base * h.name_samples * name_tokens
        children = base
        for target in level_targets(base, h):
            hoods = max(1, round(children / h.neighborhood_size))
            group = [("A group name of some words", "A summary sentence of the group of conversations.")] * min(children, h.neighborhood_size)
            propose = prompt_tokens(llm, prompts.propose_parents_prompt(facet, group, target))[0]
            assign = prompt_tokens(llm, prompts.assign_parent_prompt(group[0], ["A parent category name"] * h.max_candidates))[0]
            rename = prompt_tokens(llm, prompts.rename_parent_prompt(facet, [g[0] for g in group[: h.branching]]))[0]
            count += hoods + children * h.assign_samples + target * h.name_samples
            tokens += hoods * propose + children * h.assign_samples * assign + target * h.name_samples * rename
            children = target
    new_tokens = count * h.name_max_new_tokens
    return StagePlan("build_hierarchy", count, tokens, tokens, new_tokens, exact=False)


def measure_rate(llm: LLM, sample: list[ChatPrompt]) -> Rate:
    """Prefill and decode speed of this backend on real prompts (a few seconds; the only generation a dry run does)."""
    sample = sample[:CALIBRATION_PROMPTS]
    sent = sum(prompt_tokens(llm, p)[0] for p in sample)
    start = time.perf_counter()
    llm.choose(sample, ["1", "2"])
    prefill_s = time.perf_counter() - start
    start = time.perf_counter()
    llm.generate(sample, max_new_tokens=CALIBRATION_NEW_TOKENS)
    decode_s = max(1e-3, time.perf_counter() - start - prefill_s)
    return Rate(sent / max(prefill_s, 1e-3), len(sample) * CALIBRATION_NEW_TOKENS / decode_s)


def format_plan(plans: list[StagePlan], rate: Rate | None, rows: int, unique: int) -> str:
    lines = [f"dry run: {rows} rows, {unique} unique conversations; nothing was generated except a short calibration.",
             f"{'stage':<16} {'prompts':>8} {'prompt tok':>11} {'prefill tok':>12} {'max new tok':>12} {'est. time':>10}"]
    for plan in plans:
        seconds = f"{rate.seconds(plan):>9.0f}s" if rate else f"{'-':>10}"
        mark = "" if plan.exact else "  (estimate: depends on the clusters)"
        lines.append(f"{plan.stage:<16} {plan.prompts:>8} {plan.prompt_tokens:>11} {plan.prefill_tokens:>12} "
                     f"{plan.max_new_tokens:>12} {seconds}{mark}")
    if rate:
        total = sum(rate.seconds(p) for p in plans)
        lines.append(f"measured rate: {rate.prefill_tokens_per_s:.0f} prefill tok/s, {rate.generated_tokens_per_s:.1f} "
                     f"generated tok/s; total about {total / 60:.1f} min (upper bound: assumes every answer uses its "
                     f"max new tokens)")
    return "\n".join(lines)


def plan_annotation(source, *, llm: str | LLM, facets, config: ClioConfig = ClioConfig(), calibrate: bool = True,
                    column_prefix: str = "", **source_options) -> str:
    """The dry-run report for `annotate(source, ...)` with the same options: a table per LLM stage.

    `source_options` are `annotate`'s row and column options (split, limit, sample, seed, stream,
    conversation_column, text_column, columns).
    """
    from . import columns as C
    from .conversations import to_conversations
    from .facets import resolve_facets
    from .llm import load_llm
    from .sources import load_source

    facets = list(resolve_facets(facets))
    where = {k: source_options.pop(k) for k in ("conversation_column", "text_column", "columns") if k in source_options}
    raw = load_source(source, **source_options)
    llm = load_llm(llm)
    conversations = to_conversations(raw, llm, config=config.conversation, column_prefix=column_prefix, **where)
    unique = [c for c, d in zip(conversations[column_prefix + C.CONVERSATION], conversations[column_prefix + C.DUPLICATE_OF]) if d < 0]
    facet_stage, chats = facet_plan(unique, facets, llm, config)
    plans = [facet_stage, naming_plan(len(unique), facets, llm, config)]
    rate = measure_rate(llm, chats) if calibrate and chats else None
    return format_plan(plans, rate, len(raw), len(unique))
