"""Quality lenses: built-in numeric facets that rate a dataset's quality, each with a one-sentence rationale.

A lens is a numeric `Facet` (column `<lens>`, int64): like every numeric facet, its score is *chosen* by the LLM among
the allowed digits, so it always parses. Right after scoring a batch of rows, `extract_facets` asks, in the same
conversation, why that score was given (`rationales`), and stores the answer in `<lens>_rationale`. Asking after the
score (rather than before) keeps the score the model's first-token judgement, which greedy digit choice makes
reproducible; asking in the same pass lets the rationale reuse the conversation's key/value cache, still held from
scoring, so only the question is prefilled.

Bands, for summaries: on a 1-4 scale 1 Poor, 2 Low, 3 Medium, 4 Good; on a 1-5 scale 1 Poor, 2 Low, 3 Medium, 4-5 Good.

The lenses themselves (`Lens`, the built-in lenses, `LENSES`, `band`) are defined in `facets.py` beside the other
built-in facets, and `rationale_column` in `columns.py` with the other column names, so that neither of those modules
needs this one; they are imported here too, so `from clio_hf.lenses import Lens, LENSES` keeps working.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import datasets
from datasets.fingerprint import Hasher

from . import columns as C
from . import prompts
from .backends import LLM
from .columns import rationale_column
from .config import FacetConfig
from .facets import (BANDS, CODE_QUALITY, INSTRUCTION_FOLLOWING, LEARNING_VALUE, LENSES, SCALES, TEXTBOOK_QUALITY, Facet,
                     Lens, band)

__all__ = [
    "BANDS", "CODE_QUALITY", "INSTRUCTION_FOLLOWING", "LEARNING_VALUE", "LENSES", "SCALES", "TEXTBOOK_QUALITY", "Lens",
    "band", "check_lens_inputs", "explain_scores", "rationale_column", "rationales",
]

logger = logging.getLogger(__name__)

_VERSION = 1  # bump when the rationale row function changes, so cached maps are recomputed


def check_lens_inputs(ds: datasets.Dataset, facets: Sequence[Facet], *, columns: Sequence[str] | None = None,
                      column_prefix: str = "") -> None:
    """Stop before any facet is extracted if a lens that judges a response gets rows without one.

    A row qualifies when its conversation has an assistant turn with text, or when it was built from several columns
    (`columns=[instruction, output]`), whose one user turn then holds both parts.
    """
    judged = [f for f in facets if isinstance(f, Lens) and f.needs_response]
    if not judged or (columns is not None and len(columns) >= 2):
        return
    column = column_prefix + C.CONVERSATION
    for row, conversation in enumerate(ds[column]):
        if not any(turn["role"] == "assistant" and (turn["content"] or "").strip() for turn in conversation or []):
            raise ValueError(
                f"The lens {judged[0].name!r} needs an instruction and an output, but row {row} (column {column!r}) "
                "has no assistant turn. Pass columns=['instruction', 'output'] (CLI --columns instruction,output) or a "
                "conversation column with responses."
            )


def explain_scores(
    ds: datasets.Dataset,
    llm: LLM,
    *,
    facets: Sequence[Facet],
    config: FacetConfig = FacetConfig(),
    column_prefix: str = "",
) -> datasets.Dataset:
    """Add `<lens>_rationale` (string; null when the score is null or no answer parsed) for every `Lens` in `facets`
    that has a score column but no rationale column yet.

    `extract_facets` already writes rationales in the same pass as the scores; this is for scores that came without
    them (a dataset scored elsewhere, or an older result).

    Args:
        ds: rows with `conversation` and the lens score columns (see `extract_facets`).
        llm: any `clio_hf.LLM`.
        facets: the run's facets; those that are not lenses are left alone.
        config: `rationale_max_new_tokens`, retries, sharding.
        column_prefix: prefix of the columns read and added.

    Example:
        >>> ds = explain_scores(extract_facets(ds, llm, facets=[LEARNING_VALUE]), llm, facets=[LEARNING_VALUE])
        >>> ds["learning_value_rationale"][0]
        'Because it explains how binary search halves the interval.'
    """
    lenses = [f for f in facets if isinstance(f, Lens) and rationale_column(f, column_prefix) not in ds.column_names]
    if not lenses:
        return ds
    C.require_columns(ds, [column_prefix + C.CONVERSATION, *(C.facet_column(f, column_prefix) for f in lenses)], "explain_scores")
    num_shards = min(config.num_shards or max(1, math.ceil(len(ds) / config.rows_per_shard)), len(ds))
    bounds = [round(i * len(ds) / num_shards) for i in range(num_shards + 1)]
    features = datasets.Features({rationale_column(f, column_prefix): datasets.Value("string") for f in lenses})
    task = _RationaleTask(llm, lenses, config, column_prefix)
    pieces = []
    for index in range(num_shards):
        shard = ds.select(range(bounds[index], bounds[index + 1]))
        fingerprint = Hasher.hash([ds._fingerprint, "explain_scores", _VERSION, index, num_shards, [f.to_dict() for f in lenses],
                                   llm.model_id, prompts.PROMPT_VERSION, config.rationale_max_new_tokens,
                                   config.max_retries, config.retry_temperature, column_prefix])
        pieces.append(shard.map(task, batched=True, batch_size=config.batch_size, with_indices=True,
                                fn_kwargs={"offset": bounds[index]}, remove_columns=shard.column_names, features=features,
                                new_fingerprint=fingerprint, desc=f"Rationales shard {index + 1}/{num_shards}"))
    added = datasets.concatenate_datasets(pieces)
    for lens in lenses:
        missing = sum(v is None for v in added[rationale_column(lens, column_prefix)])
        if missing:
            logger.warning("explain_scores: %d of %d %r rationales are null.", missing, len(added), lens.name)
    return datasets.concatenate_datasets([ds, added], axis=1)


class _RationaleTask:
    """The batched row function of `explain_scores`: every lens of a batch of rows, back to back."""

    def __init__(self, llm: LLM, lenses: Sequence[Lens], config: FacetConfig, prefix: str):
        self.llm, self.lenses, self.config, self.prefix = llm, lenses, config, prefix

    def __call__(self, batch: dict, indices: list[int], offset: int) -> dict:
        texts = [prompts.transcript(c) for c in batch[self.prefix + C.CONVERSATION]]
        rows = [offset + i for i in indices]
        return {rationale_column(lens, self.prefix): rationales(self.llm, lens, texts, batch[C.facet_column(lens, self.prefix)], rows,
                                                                self.config)
                for lens in self.lenses}


def rationales(llm: LLM, lens: Lens, texts: Sequence[str], scores: Sequence[int | None], rows: Sequence[int],
               config: FacetConfig) -> list[str | None]:
    """Why each score was given: one sentence per transcript, null where the score is null or no answer parsed.

    The prompt continues the scoring prompt's conversation, so a backend with prefix reuse that saw the score asked
    moments ago (`extract_facets` calls this right after scoring a batch) prefills only the question.
    """
    values: list[str | None] = [None] * len(texts)
    scored = [i for i, s in enumerate(scores) if s is not None]
    chats = [prompts.facet_prompt(texts[i], prompts.rationale_question(lens, scores[i], band(scores[i], lens.numeric)),
                                  prompts.rationale_answer_prefill()) for i in scored]
    answers = prompts.ask_until_parsed(
        llm, chats, lambda _, text: prompts.parse_open_answer(text), retries=config.max_retries,
        max_new_tokens=config.rationale_max_new_tokens, temperature=config.retry_temperature, stop=["</answer>"],
        seed_key=lambda k, attempt: f"{rows[scored[k]]}:{lens.column}:rationale:{attempt}")
    for i, answer in zip(scored, answers):
        if answer is not None:
            values[i] = prompts.join_prefill(prompts.RATIONALE_PREFILL, answer)
    return values
