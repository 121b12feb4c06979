"""The two small interfaces clio_hf asks of its models, `LLM` and `Embedder`, and the prompt type an LLM takes.

Prompts are chat message lists whose last message is the assistant's prefill; every backend continues that message.
This module imports nothing heavy (no torch, transformers, datasets or numpy) and no other clio_hf module, so any module
can name these types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

Message = dict[str, str]
ChatPrompt = list[Message]


@runtime_checkable
class LLM(Protocol):
    """What clio_hf needs from a language model.

    A backend may also offer `option_logprobs(prompts, options) -> list[list[float]]`, each option's log-probability
    as the next token; the privacy audit then calibrates its ratings with them (`clio_hf.privacy`).
    """

    model_id: str

    def generate(
        self,
        prompts: Sequence[ChatPrompt],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        seeds: Sequence[int] | None = None,
    ) -> list[str]:
        """Continue each prompt's final (assistant) message; return only the new text, cut before the first stop string.

        `temperature=0` is greedy. With sampling, `seeds[i]` alone decides prompt i's draw.
        """
        ...

    def choose(self, prompts: Sequence[ChatPrompt], options: Sequence[str]) -> list[int | None]:
        """For each prompt, the index of the option the model rates most likely as the continuation (None where a
        backend could not tell, e.g. a server whose answer names no option)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def truncate_text(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text` that fits in `max_tokens` tokens."""
        ...


@runtime_checkable
class Embedder(Protocol):
    model_id: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), dim)."""
        ...
