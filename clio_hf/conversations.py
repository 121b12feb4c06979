"""Rows to conversations: `to_conversations` adds a normalised, truncated `conversation` and a `duplicate_of` column.

Where the conversation comes from, unless an override says (first rule that matches):
1. a column `messages`, `conversations` or `conversation` (in that order) holds a list of messages, each
   `{role, content}` (OpenAI) or `{from, value}` (ShareGPT);
2. else the first of `text`, `prompt`, `content`, `markdown`, `instruction`, `question`, `query`, `input` is plain text,
   which becomes one user turn.
Overrides: `conversation_column=` (a list-of-messages column, either shape), `text_column=` (one user turn) or
`columns=[A, B]` (several text columns in one user turn, written `"A:\\n<value>\\n\\nB:\\n<value>"`).

Truncation to `config.max_tokens` keeps whole turns from the start; see `_fit` for the exact rule.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence

import datasets
import numpy as np
from datasets.fingerprint import Hasher

from .columns import CONVERSATION, DUPLICATE_OF, MESSAGE_FEATURE, check_no_collisions
from .config import ConversationConfig

logger = logging.getLogger(__name__)

STAGE = "to_conversations"
MESSAGE_COLUMNS = ("messages", "conversations", "conversation")
TEXT_COLUMNS = ("text", "prompt", "content", "markdown", "instruction", "question", "query", "input")
ROLE_ALIASES = {
    **dict.fromkeys(("user", "human"), "user"),
    **dict.fromkeys(("assistant", "gpt", "chatgpt", "bing", "bard", "model", "bot"), "assistant"),
    **dict.fromkeys(("system", "developer"), "system"),
}
TURN_OVERHEAD = 4
"""Tokens counted per turn on top of its content: about what a chat template spends on the role header and end mark."""
CHARS_PER_TOKEN = 4
WINDOW_CHARS_PER_TOKEN = 5
_WINDOW_SLACK = 16
_OVER = 2**62  # the size of a text known only to be over the budget: never kept whole when the budget is shared
_VERSION = 1  # bump when the output of the row function changes, so cached maps are recomputed
_KEY = "__clio_dedup_key"
_TRUNCATED = "__clio_truncated"
# Arrow and tokenizers cannot take NUL characters or lone surrogates (left by broken UTF-16 in the source).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class ApproximateTokens:
    """The token counter used when no LLM is given: one token per 4 characters, rounded up."""

    model_id = f"approx-{CHARS_PER_TOKEN}-chars-per-token"

    def count_tokens(self, text: str) -> int:
        return -(-len(text) // CHARS_PER_TOKEN)

    def truncate_text(self, text: str, max_tokens: int) -> str:
        return text[: max(max_tokens, 0) * CHARS_PER_TOKEN]


def to_conversations(
    ds: datasets.Dataset,
    llm=None,
    *,
    config: ConversationConfig = ConversationConfig(),
    conversation_column: str | None = None,
    text_column: str | None = None,
    columns: Sequence[str] | None = None,
    column_prefix: str = "",
    **map_kwargs,
) -> datasets.Dataset:
    """Add `conversation` (normalised, truncated messages) and `duplicate_of` columns; input columns stay as they are.

    The source column is detected as the module docstring says, unless an override names it. Roles are mapped
    case-insensitively (`config.roles` first, then `ROLE_ALIASES`); any other role is an error. Content that is None
    becomes "", a number or boolean `str()`, a list of OpenAI content parts the newline-joined texts of its parts; NUL characters and lone
    surrogates are removed. Rows that open with an assistant turn or have fewer than two turns stay as they are.
    With `config.dedup`, a row whose key was seen before gets `duplicate_of` = the first such row's index (else -1).
    The key is the `config.dedup_key` column (null never matches), or else the exact normalised and truncated
    conversation: what the LLM will see.

    Args:
        ds: the rows.
        llm: anything with `count_tokens(text)` and `truncate_text(text, max_tokens)`, such as an `LLM`. None
            approximates one token per 4 characters.
        config: `max_tokens` (see `_fit` for the cut), `dedup`, `dedup_key` and extra `roles`.
        conversation_column: a column of message lists, `{role, content}` or `{from, value}`.
        text_column: a plain text column, read as one user turn.
        columns: several text columns joined into one user turn as `"A:\\n<value>\\n\\nB:\\n<value>"`.
        column_prefix: prefix of the two added columns, for inputs that already have columns of those names.
        **map_kwargs: passed on to `Dataset.map` (`num_proc`, `batch_size`, ...).

    Returns:
        A new dataset: the input columns, then `<prefix>conversation` and `<prefix>duplicate_of` (int64).

    Raises:
        ValueError: no rows; no usable column (listing the columns and the overrides); an added column that already
            exists; a row that holds no conversation or an unknown role (naming the row, the column and the value).

    Example:
        >>> ds = datasets.Dataset.from_dict({"text": ["hi", "hi"]})
        >>> to_conversations(ds)[1]
        {'text': 'hi', 'conversation': [{'role': 'user', 'content': 'hi'}], 'duplicate_of': 0}
    """
    if len(ds) == 0:
        raise ValueError(f"{STAGE}: the dataset has no rows.")
    if config.max_tokens < 4 * TURN_OVERHEAD:
        raise ValueError(f"{STAGE}: max_tokens={config.max_tokens} is too small; use at least {4 * TURN_OVERHEAD}.")
    kind, sources = _detect_source(ds, conversation_column, text_column, columns)
    check_no_collisions(ds.column_names, [], column_prefix)
    if config.dedup and config.dedup_key is not None and config.dedup_key not in ds.column_names:
        raise ValueError(
            f"{STAGE}: dedup_key={config.dedup_key!r} is not a column. Available columns: {ds.column_names}."
        )
    tokens = llm if llm is not None else ApproximateTokens()
    model_id = getattr(tokens, "model_id", type(tokens).__qualname__)
    output = column_prefix + CONVERSATION
    features = ds.features.copy()
    features.update({output: MESSAGE_FEATURE, _KEY: datasets.Value("string"), _TRUNCATED: datasets.Value("bool")})
    fingerprint = Hasher.hash(
        [ds._fingerprint, STAGE, _VERSION, TURN_OVERHEAD, config, kind, sources, output, model_id]
    )
    options = {"batched": True, "desc": "Building conversations", **map_kwargs}
    row_options = dict(kind=kind, sources=sources, tokens=tokens, max_tokens=config.max_tokens, output=output,
                       roles={**ROLE_ALIASES, **dict(config.roles)})
    mapped = ds.map(
        _conversation_batch,
        with_indices=True,
        fn_kwargs=row_options,
        features=features,
        new_fingerprint=fingerprint,
        **options,
    )
    if not config.dedup:
        duplicate_of = [-1] * len(mapped)
    elif config.dedup_key is not None:
        duplicate_of = _duplicate_of([_hashable(value) for value in mapped[config.dedup_key]])
    else:
        duplicate_of = _duplicate_of(mapped[_KEY])
    truncated = sum(mapped[_TRUNCATED])
    result = mapped.remove_columns([_KEY, _TRUNCATED]).add_column(
        column_prefix + DUPLICATE_OF, duplicate_of, feature=datasets.Value("int64")
    )
    logger.info(
        "%s: %d rows from %s %s, %d truncated to %d tokens (%s), %d duplicates",
        STAGE, len(result), kind, list(sources), truncated, config.max_tokens, model_id,
        sum(d >= 0 for d in duplicate_of),
    )
    return result


def unique_rows(conversations: datasets.Dataset, column_prefix: str = "") -> tuple[datasets.Dataset, np.ndarray, np.ndarray]:
    """(the original rows, `duplicate_of` as an array, the originals' row indices): the rows later stages compute.

    The selection's fingerprint follows from the input's alone, so the stages after it find their cache on a rerun.
    """
    duplicate_of = np.asarray(conversations[column_prefix + DUPLICATE_OF])
    originals = np.flatnonzero(duplicate_of < 0)
    unique = conversations.select(originals, new_fingerprint=Hasher.hash([conversations._fingerprint, "originals"]))
    return unique, duplicate_of, originals


def broadcast_to_duplicates(conversations: datasets.Dataset, unique: datasets.Dataset, duplicate_of: np.ndarray,
                            originals: np.ndarray) -> datasets.Dataset:
    """Every row of `conversations` plus the columns added to `unique` (see `unique_rows`), a duplicate getting its
    original's values: duplicates are computed once and share them."""
    added = [c for c in unique.column_names if c not in conversations.column_names]
    position = np.full(len(duplicate_of), -1, dtype=np.int64)
    position[originals] = np.arange(len(originals))
    source_rows = np.where(duplicate_of < 0, np.arange(len(duplicate_of)), duplicate_of)
    values = unique.select_columns(added).select(position[source_rows]).flatten_indices()
    return datasets.concatenate_datasets([conversations, values], axis=1)


def source_columns(ds, conversation_column=None, text_column=None, columns=None) -> list[str]:
    """The input columns `to_conversations` reads the conversation from: raw text that a push leaves out."""
    return list(_detect_source(ds, conversation_column, text_column, columns)[1])


def _detect_source(ds, conversation_column, text_column, columns) -> tuple[str, tuple[str, ...]]:
    """(`messages` | `text` | `columns`, the column names) for the override given, or detected by name."""
    given = {"conversation_column": conversation_column, "text_column": text_column, "columns": columns}
    given = {option: value for option, value in given.items() if value}
    if len(given) > 1:
        raise ValueError(f"{STAGE}: pass one of conversation_column=, text_column= and columns=; got {sorted(given)}.")
    if given:
        option, value = next(iter(given.items()))
        names = (value,) if isinstance(value, str) else tuple(value)
        missing = [name for name in names if name not in ds.column_names]
        if missing:
            raise ValueError(
                f"{STAGE}: {option}= names missing column(s) {missing}. Available columns: {ds.column_names}."
            )
        return {"conversation_column": "messages", "text_column": "text", "columns": "columns"}[option], names
    for name in MESSAGE_COLUMNS:
        if name in ds.column_names:
            return "messages", (name,)
    for name in TEXT_COLUMNS:
        if name in ds.column_names:
            return "text", (name,)
    raise ValueError(
        f"{STAGE}: cannot tell which column holds the conversation. Available columns: {ds.column_names}. "
        f"Detected names: {list(MESSAGE_COLUMNS)} (lists of messages), then {list(TEXT_COLUMNS)} (plain text). "
        "Choose one with conversation_column= (CLI --conversation-column), text_column= (--text-column) "
        "or columns=[A, B] (--columns A,B)."
    )


def _conversation_batch(batch: dict, indices: list[int], *, kind, sources, tokens, max_tokens, output, roles) -> dict:
    conversations, keys, truncated = [], [], []
    for position, index in enumerate(indices):
        if kind == "messages":
            turns = _messages(batch[sources[0]][position], index, sources[0], roles)
        elif kind == "text":
            turns = [{"role": "user", "content": _content(batch[sources[0]][position], index, sources[0])}]
        else:
            parts = [f"{name}:\n{_content(batch[name][position], index, name)}" for name in sources]
            turns = [{"role": "user", "content": "\n\n".join(parts)}]
        kept, was_cut = _fit(turns, tokens, max_tokens)
        conversations.append(kept)
        truncated.append(was_cut)
        keys.append(_conversation_key(kept))
    return {output: conversations, _KEY: keys, _TRUNCATED: truncated}


def _messages(value, index: int, column: str, roles: dict[str, str] = ROLE_ALIASES) -> list[dict[str, str]]:
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        # A `Sequence({...})` feature reads as a dict of lists; zip it back into messages.
        if len({len(v) for v in value.values()}) == 1:
            value = [dict(zip(value, fields)) for fields in zip(*value.values())]
    if not isinstance(value, list):
        raise _row_error(
            index, column, value,
            "expected a list of messages ({role, content} or {from, value}); "
            "for plain text pass text_column= (CLI --text-column)",
        )
    turns = []
    for number, message in enumerate(value):
        if not isinstance(message, dict):
            raise _row_error(index, column, message, f"message {number} is not a {{role, content}} mapping")
        role = message.get("role") if message.get("role") is not None else message.get("from")
        role_name = roles.get(role.strip().lower()) if isinstance(role, str) else None
        if role_name is None:
            raise _row_error(
                index, column, role,
                f"message {number} has an unknown role (known, any case: {sorted(roles)}); map it with "
                "ConversationConfig(roles={NAME: 'user'|'assistant'|'system'|'skip'}) (CLI --roles NAME=skip)",
            )
        if role_name == "skip":
            continue
        content = message.get("content") if message.get("content") is not None else message.get("value")
        turns.append({"role": role_name, "content": _content(content, index, column)})
    return turns


def _content(value, index: int, column: str) -> str:
    if isinstance(value, str):
        return _UNSTORABLE.sub("", value)
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)):
        return str(value)
    if isinstance(value, list) and all(isinstance(part, dict) for part in value):
        return _UNSTORABLE.sub("", "\n".join(part["text"] for part in value if isinstance(part.get("text"), str)))
    raise _row_error(index, column, value, "expected text (a string, a number, None or a list of {type, text} parts)")


def _fit(turns: list[dict], tokens, max_tokens: int) -> tuple[list[dict], bool]:
    """The conversation cut to `max_tokens` (content tokens + `TURN_OVERHEAD` per turn), and whether it was cut.

    The *first exchange* is every turn up to and including the first assistant reply that follows a user turn (so
    leading system turns and an opening assistant turn belong to it); without such a reply, up to the first user turn.
    - All turns fit: unchanged, even if the last turn is a user turn.
    - The first exchange fits: the longest prefix of whole turns that fits, cut back to end on an assistant turn
      (a prefix may end on a user turn only if no reply exists at all).
    - The first exchange alone is over budget: the budget is shared between its turns, shortest first, each taking
      at most an equal share of what is left (two turns: half each, the shorter one's unused part going to the
      other), and each turn over its share is cut with `truncate_text`. A single long user turn is cut to the budget.
    """
    end, replied = _first_exchange(turns)
    sizes: list[int] = []
    cuts: dict[int, tuple[int, str]] = {}
    used = 0
    for position, turn in enumerate(turns):
        cap = max_tokens - used - TURN_OVERHEAD
        size, cut = _measure(tokens, turn["content"], cap)
        sizes.append(size)
        if cut is not None:
            cuts[position] = (cap, cut)
        if used + size + TURN_OVERHEAD > max_tokens:
            break
        used += size + TURN_OVERHEAD
    else:
        return turns, False
    fitting = len(sizes) - 1
    if fitting >= end:
        if not replied:
            return turns[:fitting], True
        last_reply = max(i for i in range(end - 1, fitting) if turns[i]["role"] == "assistant")
        return turns[: last_reply + 1], True
    budget = max(max_tokens - TURN_OVERHEAD * end, 0)
    # Beyond an equal share a size only decides how much budget is left over, so longer turns count as _OVER.
    for position in range(len(sizes), end):
        size, cut = _measure(tokens, turns[position]["content"], budget // end)
        sizes.append(size)
        if cut is not None:
            cuts[position] = (budget // end, cut)
    shares = _share(sizes, budget)
    kept = []
    for position, (turn, size, share) in enumerate(zip(turns[:end], sizes, shares)):
        if size > share:
            cap, cut = cuts.get(position, (None, None))
            turn = {"role": turn["role"], "content": cut if cap == share else _truncate(tokens, turn["content"], share)}
        kept.append(turn)
    return kept, True


# Tokenizing is the slow part: ShareGPT turns run to 100k characters and a CPU tokenizer reads about 1 MB/s. So a
# long text is tokenized on a prefix of `WINDOW_CHARS_PER_TOKEN` characters per token needed, doubled until enough.
# BPE tokens are local: a prefix's tokens are the whole text's, but for a word cut at the window's end (the slack).
def _measure(tokens, text: str, cap: int) -> tuple[int, str | None]:
    """(tokens in `text`, or `_OVER` if only known to be above `cap`; `text` cut to `cap` tokens if that was computed).

    A long text is cut to `cap` rather than counted: it is usually over the budget, and the cut is then reused.
    """
    if cap < 0:
        return _OVER, None
    if len(text) > (cap + _WINDOW_SLACK) * WINDOW_CHARS_PER_TOKEN:
        cut = _truncate(tokens, text, cap)
        if len(cut) < len(text):
            return _OVER, cut
    return tokens.count_tokens(text), None


def _truncate(tokens, text: str, max_tokens: int) -> str:
    """`tokens.truncate_text(text, max_tokens)`, tokenizing only as much of a long text as it needs."""
    window = (max_tokens + _WINDOW_SLACK) * WINDOW_CHARS_PER_TOKEN
    while window < len(text):
        cut = tokens.truncate_text(text[:window], max_tokens)
        if len(cut) < window - _WINDOW_SLACK * WINDOW_CHARS_PER_TOKEN:
            return cut
        window *= 2
    return tokens.truncate_text(text, max_tokens)


def _first_exchange(turns: list[dict]) -> tuple[int, bool]:
    """(number of turns in the first exchange, whether it ends with an assistant reply to a user turn)."""
    seen_user = False
    for position, turn in enumerate(turns):
        if turn["role"] == "user":
            seen_user = True
        elif turn["role"] == "assistant" and seen_user:
            return position + 1, True
    first_user = next((i for i, turn in enumerate(turns) if turn["role"] == "user"), 0)
    return first_user + 1, False


def _share(sizes: list[int], budget: int) -> list[int]:
    """Water-filling: each turn, shortest first, gets min(its size, an equal part of the budget still unassigned)."""
    shares = [0] * len(sizes)
    left = budget
    for rank, position in enumerate(sorted(range(len(sizes)), key=sizes.__getitem__)):
        shares[position] = min(sizes[position], left // (len(sizes) - rank))
        left -= shares[position]
    return shares


def _conversation_key(turns: list[dict]) -> str:
    text = "\x1e".join(f"{turn['role']}\x1f{turn['content']}" for turn in turns)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _hashable(value):
    return value if value is None or isinstance(value, (str, int, float, bytes)) else json.dumps(value, default=repr)


def _duplicate_of(keys: list) -> list[int]:
    """For each key, the index of its first occurrence, or -1 at that first occurrence; None never matches."""
    first: dict = {}
    result = []
    for index, key in enumerate(keys):
        original = first.setdefault(key, index) if key is not None else index
        result.append(original if original != index else -1)
    return result


def _row_error(index: int, column: str, value, problem: str) -> ValueError:
    excerpt = repr(value)
    excerpt = excerpt if len(excerpt) <= 120 else excerpt[:117] + "..."
    return ValueError(f"{STAGE}: row {index}, column {column!r}: {problem}; got {type(value).__name__} {excerpt}")
