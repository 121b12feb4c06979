"""Offline language identification for the Language facet (py3langid; names from langcodes).

A 135M model copies the examples of a language question instead of answering it; a character n-gram classifier
trained on 97 languages is both faster and right far more often, so the built-in Language facet is computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

_MAX_CHARS = 2000


@lru_cache(maxsize=256)
def language_name(code: str) -> str:
    import langcodes

    return langcodes.Language.get(code).display_name("en")


def detect_language_name(conversation: Sequence[dict]) -> str | None:
    """English name of the main language of the user turns (all turns if there is no user turn); None if no text."""
    turns = [t["content"] or "" for t in conversation if t["role"] == "user"] or [t["content"] or "" for t in conversation]
    text = " ".join(" ".join(turns).split())[:_MAX_CHARS]
    if sum(ch.isalpha() for ch in text) < 3:
        return None
    import py3langid

    code, _ = py3langid.classify(text)
    return language_name(code)
