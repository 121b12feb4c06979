"""Test doubles of the LLM and Embedder protocols, for unit tests of clio_hf's own logic (never for end-to-end tests)."""

from __future__ import annotations

import hashlib

import numpy as np


class ScriptedLLM:
    """Answers by a rule of the test's choosing; records every prompt it was sent.

    `reply(prompt_messages)` returns the generated text; `pick(prompt_messages, n_options)` the chosen index.
    """

    model_id = "scripted-llm"

    def __init__(self, reply=None, pick=None):
        self.reply = reply or (lambda prompt: " do something useful</answer>")
        self.pick = pick or (lambda prompt, n: 0)
        self.prompts: list = []

    def generate(self, prompts, *, max_new_tokens, stop=(), temperature=0.0, seeds=None):
        self.prompts += prompts
        outputs = []
        for p in prompts:
            text = self.reply(p)
            cuts = [text.find(s) for s in stop if s in text]
            outputs.append(text[: min(cuts)] if cuts else text)
        return outputs

    def choose(self, prompts, options):
        self.prompts += prompts
        return [self.pick(p, len(options)) % len(options) for p in prompts]

    def count_tokens(self, text):
        return len(text.split())

    def truncate_text(self, text, max_tokens):
        return " ".join(text.split()[:max_tokens])


class HashEmbedder:
    """Deterministic bag-of-words vectors: texts sharing words are similar, identical texts are identical."""

    model_id = "hash-embedder"

    def __init__(self, dim: int = 32):
        self.dim = dim

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0
            out[i, 0] += 1e-3
        return out


def conversation(user: str, assistant: str | None = "Sure.") -> list[dict]:
    turns = [{"role": "user", "content": user}]
    if assistant is not None:
        turns.append({"role": "assistant", "content": assistant})
    return turns


def said_by_users(values) -> list[list[dict]]:
    """Conversations in which each user said what the facet value says (prefill left out), so a facet's
    `conversation_weight` moves no embedding: unit tests of clustering and naming see the values alone."""
    from clio_hf import prompts
    from clio_hf.facets import REQUEST

    return [conversation(prompts.strip_prefill(v, REQUEST.prefill) if v else "") for v in values]

