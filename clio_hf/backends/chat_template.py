"""Rendering and token helpers shared by every backend, so each sends the model exactly the same text.

A prompt (see `protocols.ChatPrompt`) ends with the assistant's prefill. It is rendered once, here, with the model's own
chat template and `continue_final_message=True`; the transformers and vLLM backends then tokenize that text themselves,
so both see identical token ids and share the conversation prefix token for token. Nothing here imports `datasets`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .protocols import ChatPrompt


def render(tokenizer, prompt: ChatPrompt, template_kwargs: Mapping | None = None) -> str:
    """The prompt as the model sees it, ending inside the assistant's prefill (no end-of-turn after it)."""
    return tokenizer.apply_chat_template(prompt, tokenize=False, continue_final_message=True, **(template_kwargs or {}))


def render_head(tokenizer, prompt: ChatPrompt, template_kwargs: Mapping | None = None) -> str:
    """The shareable start of a prompt: every message but the final question and prefill ("" when there is none).

    For facet prompts this is the system prompt plus the conversation, identical across the facets of one row.
    """
    if len(prompt) < 3:
        return ""
    return tokenizer.apply_chat_template(prompt[:-2], tokenize=False, **(template_kwargs or {}))


def render_base(tokenizer, prompt: ChatPrompt, template_kwargs: Mapping | None = None) -> str:
    """The start of the head that every prompt with the same system message shares ("" when there is none)."""
    head = render_head(tokenizer, prompt, template_kwargs)
    if not head or prompt[0]["role"] != "system":
        return ""
    base = tokenizer.apply_chat_template(prompt[:1], tokenize=False, **(template_kwargs or {}))
    return base if head.startswith(base) and base != head else ""


def token_ids(tokenizer, text: str) -> list[int]:
    """Ids of already-rendered text: the template wrote the special tokens, so none are added."""
    return tokenizer(text, add_special_tokens=False).input_ids


def count_tokens(tokenizer, text: str) -> int:
    return len(token_ids(tokenizer, text))


def truncate_text(tokenizer, text: str, max_tokens: int) -> str:
    """The longest prefix of `text` that fits in `max_tokens` tokens, cut at a token boundary."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(encoding.input_ids) <= max_tokens:
        return text
    # A character split across byte-level tokens maps to every one of them, so a cut at a character's end can hold
    # one token too many; step back until the re-tokenized prefix fits.
    for kept in range(max_tokens, 0, -1):
        cut = text[: encoding.offset_mapping[kept - 1][1]]
        if count_tokens(tokenizer, cut) <= max_tokens:
            return cut
    return ""


def single_token_options(tokenizer, options: Sequence[str]) -> list[int] | None:
    """The token id of each option when every option is one distinct token, else None."""
    ids = [token_ids(tokenizer, o) for o in options]
    if any(len(i) != 1 for i in ids) or len({i[0] for i in ids}) != len(options):
        return None
    return [i[0] for i in ids]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the first stop string; engines may or may not cut there themselves, so every backend cuts again."""
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text
