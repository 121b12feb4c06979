"""Stage 2: `extract_facets` asks every facet of every conversation and stores the answers as columns.

A quality lens (`clio_hf.lenses`) adds a second column, its score's one-sentence rationale, asked right after the
scores of each batch so that the conversation's cached keys and values are reused.

Each LLM facet runs over K contiguous shards, each its own cached `Dataset.map` whose fingerprint comes from the input
fingerprint, the shard, the facet, the model, the prompt version and the stage config. A killed run therefore keeps
every finished shard, and a changed facet recomputes that facet alone. Whoever computes the shards (this process, or
Ray actors through `write_shard`), `assemble_facets` joins them into columns without a model.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

import datasets
from datasets.fingerprint import Hasher

from . import columns as C
from . import prompts
from .backends import LLM
from .columns import rationale_column
from .config import FacetConfig
from .facets import MAIN_FACETS, Facet, Lens
from .language import detect_language_name
from .lenses import rationales

logger = logging.getLogger(__name__)

_LENS_VERSION = 1  # bump when a lens's shard (its score and rationale columns) is computed differently


def extract_facets(
    ds: datasets.Dataset,
    llm: LLM | None,
    *,
    facets: Sequence[Facet] = MAIN_FACETS,
    config: FacetConfig = FacetConfig(),
    column_prefix: str = "",
) -> datasets.Dataset:
    """Add one column per facet: a string (prefill included), or an int64 for numeric facets; null if unparseable.
    A `Lens` also adds `<lens>_rationale` (see `clio_hf.lenses`).

    Args:
        ds: rows with a `conversation` column (see `to_conversations`).
        llm: any `clio_hf.LLM`; may be None when every facet is computed without one (`method="language_id"`).
        facets: the questions to ask.
        config: token budget, retries, sharding, error policy.
        column_prefix: prefix of the columns read and added.

    Example:
        >>> ds = extract_facets(to_conversations(raw, llm), llm, facets=[clio_hf.facets.REQUEST])
        >>> ds["request"][0]
        "The user's overall request for the assistant is to write a haiku about autumn."
    """
    conversation = column_prefix + C.CONVERSATION
    C.require_columns(ds, [conversation, *(f.source_column for f in facets if f.method == "column")], "extract_facets")
    if len(ds) == 0:
        raise ValueError("extract_facets: the dataset is empty.")
    for facet in facets:
        if facet.method == "llm" and llm is None:
            raise ValueError(f"extract_facets: facet {facet.name!r} needs an LLM; pass llm=.")
    asked = [f for f in facets if f.method == "llm"]
    plans = plan_shards(ds, llm, facets=asked, config=config, column_prefix=column_prefix) if asked else []
    computed: dict[tuple[int, str], datasets.Dataset] = {}
    for plan in (p for p in plans if p.pending):
        batch = _FacetBatch(llm, plan.pending, config, column_prefix)
        for facet, column in zip(plan.pending, write_shard(plan.select(ds), plan, plan.pending, batch.task, config=config,
                                                           column_prefix=column_prefix)):
            computed[(plan.index, facet.column)] = column
    return assemble_facets(ds, plans, facets=facets, config=config, column_prefix=column_prefix, computed=computed)


def assemble_facets(
    ds: datasets.Dataset,
    plans: Sequence[ShardPlan],
    *,
    facets: Sequence[Facet] = MAIN_FACETS,
    config: FacetConfig = FacetConfig(),
    column_prefix: str = "",
    computed: dict[tuple[int, str], datasets.Dataset] | None = None,
) -> datasets.Dataset:
    """`ds` plus every facet's columns: each LLM facet's finished shards, joined in row order, and the LLM-free facets.

    No model is needed: a shard is read back from the `datasets` cache, where `write_shard` left it (in this process
    or on a Ray actor's behalf), unless `computed` holds it already ({(shard index, facet column): its dataset}, what
    `write_shard` returned). A shard that is neither is an error, never computed here.
    """
    C.require_columns(ds, [column_prefix + C.CONVERSATION, *(f.source_column for f in facets if f.method == "column")], "extract_facets")
    computed = computed or {}
    asked = [f for f in facets if f.method == "llm"]
    pieces: dict[str, list[datasets.Dataset]] = {f.column: [] for f in asked}
    for plan in plans if asked else []:
        finished = [f for f in asked if (plan.index, f.column) not in computed]
        loaded = dict(zip([f.column for f in finished],
                          write_shard(plan.select(ds), plan, finished, _not_computed, config=config, column_prefix=column_prefix)))
        for facet in asked:
            key = (plan.index, facet.column)
            pieces[facet.column].append(computed[key] if key in computed else loaded[facet.column])
    by_facet = {f.column: datasets.concatenate_datasets(pieces[f.column]) for f in asked}
    by_facet.update({f.column: _without_llm(ds, f, config, column_prefix) for f in facets if f.method != "llm"})
    columns = [by_facet[f.column] for f in facets]
    for facet, column in zip(facets, columns):
        failures = sum(v is None for v in column[C.facet_column(facet, column_prefix)])
        if failures:
            logger.warning("extract_facets: %d of %d %r values could not be parsed and are null.", failures, len(column), facet.name)
    # A facet read from a column of its own name replaces that column with the checked values.
    replaced = [c for c in (C.facet_column(f, column_prefix) for f in facets if f.method == "column") if c in ds.column_names]
    return datasets.concatenate_datasets([ds.remove_columns(replaced) if replaced else ds, *columns], axis=1)


def _without_llm(ds: datasets.Dataset, facet: Facet, config: FacetConfig, column_prefix: str) -> datasets.Dataset:
    """A facet no LLM is asked for (a given column, language detection): one cached pass over every row, no shards.

    Cheap per row, so resuming gains nothing from shards, while a million rows in shards of 64 would spend minutes on
    per-shard overhead alone.
    """
    outputs = facet_outputs(facet, column_prefix)

    def values(batch: dict, indices: list[int]) -> dict:
        answers = facet_batch_values(None, [facet], batch, indices, 0, config=config, column_prefix=column_prefix)
        return {column: answers[key] for column, (key, _) in outputs.items()}

    return ds.map(
        values,
        batched=True,
        batch_size=1_000,
        with_indices=True,
        remove_columns=ds.column_names,
        features=datasets.Features({column: feature for column, (_, feature) in outputs.items()}),
        new_fingerprint=Hasher.hash([ds._fingerprint, "extract_facets", facet.question_dict(), column_prefix]),
        desc=f"{facet.name}",
    )


@dataclass(frozen=True)
class ShardPlan:
    """One contiguous shard of `extract_facets`: its rows, each facet's cache fingerprint, and the LLM facets not yet cached."""

    index: int
    num_shards: int
    start: int
    stop: int
    fingerprints: dict[str, str]
    pending: tuple[Facet, ...]

    def select(self, ds: datasets.Dataset) -> datasets.Dataset:
        return ds.select(range(self.start, self.stop))


def plan_shards(ds: datasets.Dataset, llm: str | LLM | None, *, facets: Sequence[Facet], config: FacetConfig, column_prefix: str = "") -> list[ShardPlan]:
    """The shards `extract_facets` computes, in row order; every engine uses this plan, so they share one cache.

    `llm` is the model's id (what keys the cache), or an LLM object whose `model_id` is used; None only when no facet
    is an LLM facet.
    """
    model_id = llm if isinstance(llm, str) or llm is None else llm.model_id
    if model_id is None and any(f.method == "llm" for f in facets):
        raise ValueError("plan_shards: an LLM facet needs the model's id; pass llm=.")
    if len(ds) == 0:
        raise ValueError("extract_facets: the dataset is empty.")
    num_shards = min(config.num_shards or max(1, math.ceil(len(ds) / config.rows_per_shard)), len(ds))
    bounds = [round(i * len(ds) / num_shards) for i in range(num_shards + 1)]
    plans = []
    for index in range(num_shards):
        shard = ds.select(range(bounds[index], bounds[index + 1]))
        fingerprints = {
            f.column: Hasher.hash(
                [ds._fingerprint, "extract_facets", index, num_shards, f.question_dict(), model_id if f.method == "llm" else f.method,
                 prompts.PROMPT_VERSION, config.max_new_tokens, config.max_retries, config.retry_temperature, column_prefix]
                + ([_LENS_VERSION, config.rationale_max_new_tokens] if isinstance(f, Lens) else [])
            )
            for f in facets
        }
        pending = tuple(f for f in facets if f.method == "llm" and not is_cached(shard, fingerprints[f.column]))
        plans.append(ShardPlan(index, num_shards, bounds[index], bounds[index + 1], fingerprints, pending))
    return plans


def write_shard(shard: datasets.Dataset, plan: ShardPlan, facets: Sequence[Facet], task_of, *, config: FacetConfig, column_prefix: str = "") -> list[datasets.Dataset]:
    """One single-column dataset per facet, each a cached `map` over the shard; `task_of(facet)` is its batched function.

    A cached facet is loaded, not computed. The map's batches are `config.batch_size` rows from the shard's start,
    the same micro-batches `shard_batches` gives other engines, so greedy answers match across engines.
    """
    columns = []
    for facet in facets:
        columns.append(
            shard.map(
                task_of(facet),
                batched=True,
                batch_size=config.batch_size,
                with_indices=True,
                fn_kwargs={"offset": plan.start},
                remove_columns=shard.column_names,
                features=datasets.Features({column: feature for column, (_, feature) in facet_outputs(facet, column_prefix).items()}),
                new_fingerprint=plan.fingerprints[facet.column],
                desc=f"{facet.name} shard {plan.index + 1}/{plan.num_shards}",
            )
        )
    return columns


def _not_computed(facet: Facet):
    """`assemble_facets`' stand-in row function: a finished shard is loaded, so running it means one is missing."""

    def missing(batch: dict, indices: list[int], offset: int) -> dict:
        raise RuntimeError(f"extract_facets: the shard of facet {facet.name!r} from row {offset} is not in the datasets "
                           "cache; assemble_facets reads finished shards and runs no model.")

    return missing


def facet_outputs(facet: Facet, column_prefix: str = "") -> dict[str, tuple[str, datasets.Value]]:
    """The columns one facet's map writes: {column: (key in `facet_batch_values`' answer, feature)}."""
    outputs = {C.facet_column(facet, column_prefix): (facet.column, datasets.Value("int64") if facet.numeric else datasets.Value("string"))}
    if isinstance(facet, Lens) and facet.method == "llm":
        outputs[rationale_column(facet, column_prefix)] = (rationale_column(facet), datasets.Value("string"))
    return outputs


def shard_batches(num_rows: int, batch_size: int) -> list[range]:
    """The micro-batches (positions within a shard) that `write_shard`'s map forms."""
    return [range(start, min(start + batch_size, num_rows)) for start in range(0, num_rows, batch_size)]


def facet_batch_values(llm: LLM | None, facets: Sequence[Facet], batch: dict, indices: list[int], offset: int, *,
                       config: FacetConfig, column_prefix: str = "") -> dict[str, list]:
    """Every facet's values for one micro-batch of rows (`indices` within the shard starting at row `offset`).

    The row function of every engine: the in-process map calls it, and so do the Ray actors. All open facets of the
    batch go to the LLM in one `generate` call, and numeric facets with the same options in one `choose` call: the
    facets of a row share the conversation prefix, and a bigger batch decodes more tokens per step.
    """
    conversation = column_prefix + C.CONVERSATION
    conversations = batch[conversation]
    # A conversation with no words in it has nothing to describe: every facet is null and no model is asked.
    spoken = [k for k, c in enumerate(conversations) if not C.is_empty_conversation(c)]
    if len(spoken) < len(conversations):
        answers = facet_batch_values(llm, facets, {name: [column[k] for k in spoken] for name, column in batch.items()},
                                     [indices[k] for k in spoken], offset, config=config, column_prefix=column_prefix) if spoken else {}
        position = {k: j for j, k in enumerate(spoken)}
        return {key: [answers[key][position[k]] if k in position else None for k in range(len(conversations))]
                for f in facets for key, _ in facet_outputs(f).values()}
    rows = [offset + i for i in indices]
    values: dict[str, list] = {}
    chats: dict[str, list] = {}
    for facet in facets:
        if facet.method == "language_id":
            values[facet.column] = [detect_language_name(c) for c in conversations]
            continue
        if facet.method == "column":
            values[facet.column] = [given_value(facet, v, row) for v, row in zip(batch[facet.source_column], rows)]
            continue
        if not chats:
            try:
                texts = [prompts.transcript(c) for c in conversations]
            except (TypeError, KeyError) as error:
                raise ValueError(f"extract_facets: row {rows[0]}..{rows[-1]}: column {conversation!r} is not a list of "
                                 f"{{role, content}} messages ({error}). Run to_conversations first.") from error
        question, prefill = prompts.facet_question(facet), prompts.facet_answer_prefill(facet)
        chats[facet.column] = [prompts.facet_prompt(t, question, prefill) for t in texts]
    asked = [f for f in facets if f.column in chats]
    by_options: dict[tuple[str, ...], list[Facet]] = {}
    for facet in asked:
        options = prompts.numeric_options(facet) if facet.numeric else None
        if options:
            by_options.setdefault(tuple(options), []).append(facet)
    for options, group in by_options.items():
        picks = llm.choose([chat for f in group for chat in chats[f.column]], list(options))
        for k, facet in enumerate(group):
            values[facet.column] = [int(options[p]) if p is not None else None for p in picks[k * len(rows) : (k + 1) * len(rows)]]
    for lens in (f for f in asked if isinstance(f, Lens)):  # now, while the conversations' caches are warm
        values[rationale_column(lens)] = rationales(llm, lens, texts, values[lens.column], rows, config)
    open_facets = [f for f in asked if f.column not in values]
    if open_facets:
        values.update(_generate_with_retries(llm, open_facets, chats, rows, config, conversations))
    return {key: values[key] for f in facets for key, _ in facet_outputs(f).values()}


def _generate_with_retries(llm: LLM, facets: Sequence[Facet], chats: dict[str, list], rows: list[int],
                           config: FacetConfig, conversations: Sequence) -> dict[str, list]:
    """Greedy answers to every (facet, row), then seeded re-samples of the unusable ones, `max_retries` times.

    An answer that invents content or echoes our instructions is re-asked like an unparseable one; if every attempt
    did so, the value is the user's own opening words, marked `prompts.USERS_WORDS` (counted in the run record).
    Unparseable to the end stays null.
    """
    pairs = [(f, i) for f in facets for i in range(len(rows))]
    last_failure: dict[int, object] = {}  # why each pair's latest answer was rejected: `_UNGROUNDED` or None

    def parse(k: int, text: str):
        facet, i = pairs[k]
        value = _parse(facet, text, chats[facet.column][i])
        if value is None or value is _UNGROUNDED:
            last_failure[k] = value
            return None
        return value

    answers = prompts.ask_until_parsed(
        llm, [chats[f.column][i] for f, i in pairs], parse, retries=config.max_retries, max_new_tokens=config.max_new_tokens,
        temperature=config.retry_temperature, stop=["</answer>"], seed_key=lambda k, attempt: _seed_key(rows[pairs[k][1]], pairs[k][0].column, attempt))
    values = {f.column: [None] * len(rows) for f in facets}
    pending = []
    for (facet, i), answer, k in zip(pairs, answers, range(len(pairs))):
        if answer is None and last_failure.get(k) is _UNGROUNDED:
            answer = prompts.users_own_words(conversations[i])
            answer = prompts.join_prefill(facet.prefill, answer) if answer else None
        if answer is None:
            pending.append((facet, i))
        values[facet.column][i] = answer
    if pending and config.on_error == "raise":
        facet, i = pending[0]
        raise ValueError(f"extract_facets: row {rows[i]}, facet {facet.name!r}: no parseable answer after "
                         f"{config.max_retries + 1} attempts (on_error='raise').")
    return values


def given_value(facet: Facet, value, row: int):
    """A value of a `method="column"` facet, checked: text (blank is null), or an integer in range for a numeric one."""
    if value is None:
        return None
    if facet.numeric:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or not facet.numeric[0] <= value <= facet.numeric[1]:
            raise ValueError(f"extract_facets: row {row}, column {facet.source_column!r} (facet {facet.name!r}): expected a whole "
                             f"number from {facet.numeric[0]} to {facet.numeric[1]} or null; got {value!r}.")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"extract_facets: row {row}, column {facet.source_column!r} (facet {facet.name!r}): expected text or "
                         f"null; got {type(value).__name__} {value!r:.80}.")
    return value.strip() or None


def _parse(facet: Facet, text: str, chat: list):
    if facet.numeric:
        return prompts.parse_numeric(text, facet)
    answer = prompts.parse_open_answer(text)
    if answer is None:
        return None
    if prompts.echoes_instructions(answer, chat) or prompts.invents_content(answer, chat):
        return _UNGROUNDED
    return prompts.join_prefill(facet.prefill, answer)


_UNGROUNDED = object()  # `_parse`: an answer that reads well but is not about the conversation


def is_cached(shard: datasets.Dataset, fingerprint: str) -> bool:
    """Whether `map(new_fingerprint=fingerprint)` on this shard will load its result instead of computing it."""
    if not datasets.is_caching_enabled() or not shard.cache_files:
        return False
    return (Path(shard.cache_files[0]["filename"]).parent / f"cache-{fingerprint}.arrow").exists()


class _FacetBatch:
    """Computes every not-yet-cached LLM facet of a batch of rows together, then hands each facet's map its values.

    Asking all facets of the same rows back to back lets the backend reuse each conversation's prefix (its key/value
    cache) across facets, while every facet still gets a cache file of its own.
    """

    def __init__(self, llm: LLM | None, pending: Sequence[Facet], config: FacetConfig, prefix: str):
        self.llm, self.config, self.prefix = llm, config, prefix
        self.pending = {f.column: f for f in pending}
        self.memo: dict[int, dict[str, list]] = {}

    def task(self, facet: Facet):
        """The row function of one pending facet's map (`write_shard`'s `task_of`)."""
        return functools.partial(self._joint, facet)

    def _joint(self, facet: Facet, batch: dict, indices: list[int], offset: int) -> dict:
        memo_key = offset + indices[0]
        if memo_key not in self.memo:
            self.memo[memo_key] = facet_batch_values(self.llm, list(self.pending.values()), batch, indices, offset,
                                                     config=self.config, column_prefix=self.prefix)
        answers = self.memo[memo_key]
        out = {column: answers.pop(key) for column, (key, _) in facet_outputs(facet, self.prefix).items()}
        if not answers:
            del self.memo[memo_key]
        return out


def _seed_key(row: int, facet: str, attempt: int) -> str:
    """Re-sample seeds depend on (row, facet, attempt) only, so reruns and other batchings draw the same."""
    return f"{row}:{facet}:{attempt}"
