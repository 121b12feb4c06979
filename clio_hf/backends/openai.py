"""The `openai:<model>@<base_url>` backend: any OpenAI-compatible chat-completions server.

Tested against `vllm serve`; llama.cpp's server and hosted APIs speak the same protocol. The prompts and the parsing are
the shared ones (`prompts.py`); only the transport lives here.

- Concurrency: at most `max_concurrency` requests in flight (an asyncio semaphore).
- Retries are the `openai` client's own: 408, 409, 429, 5xx, timeouts and refused connections, up to `max_retries`
  times per request, with exponential backoff and jitter (0.5 s doubling to 8 s) or the server's `Retry-After`; other
  errors (400, 401, 404) fail at once. Each prompt owns one result slot, filled once, so a retried request can neither
  lose nor duplicate an answer.
- The key comes from `OPENAI_API_KEY` (or `api_key=`) and is never logged.
- Prefill: `prefill="continue"` asks the server to continue the final assistant message (`continue_final_message`,
  a vLLM and llama.cpp extension); `prefill="instruct"` is for hosted APIs without it: the prefill is dropped from the
  messages, the model is asked to begin with it, and an echoed prefill is cut off. `prefill="auto"` (default) asks the
  server's model list once who serves the model (`owned_by`): `vllm` or `llamacpp` continue, anything else instructs.
- `choose`: one generated token with `logprobs`/`top_logprobs=20`; the option with the highest log-probability wins.
  When no option appears among the top tokens, the generated text is matched against the options instead, and if
  that fails too, the pick is None (a null value, counted as a parse failure; also in `usage["choose_fallbacks"]`),
  never a made-up option.
- Token counting uses the model's tokenizer when one can be loaded locally (`tokenizer=` or the model name), else an
  estimate of 4 characters per token (logged once).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence

from . import chat_template
from .protocols import ChatPrompt

logger = logging.getLogger(__name__)

OPENAI_INSTALL = "pip install 'clio_hf[openai]'"
CHARS_PER_TOKEN = 4


def parse_openai_spec(spec: str) -> tuple[str, str]:
    """`openai:<model>@<base_url>` -> (model, base_url); the model may itself contain `@`, the URL may not."""
    body = spec.removeprefix("openai:")
    model, at, base_url = body.rpartition("@")
    if not at or not model or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"LLM spec {spec!r}: expected openai:<model>@<base_url>, e.g. openai:Qwen/Qwen3-8B@http://127.0.0.1:8000/v1")
    return model, base_url


class OpenAILLM:
    """`clio_hf.LLM` over HTTP to an OpenAI-compatible server."""

    def __init__(self, model: str, base_url: str, *, api_key: str | None = None, max_concurrency: int = 16,
                 max_retries: int = 8, backoff_s: float | None = None, max_backoff_s: float | None = None,
                 timeout_s: float = 600.0, prefill: str = "auto", tokenizer: str | None = None,
                 chat_template_kwargs: dict | None = None, progress: bool = True):
        """`backoff_s` and `max_backoff_s` are accepted for older callers and ignored: the client's backoff applies."""
        try:
            import openai  # noqa: F401
        except ImportError as error:
            raise ModuleNotFoundError(f"The openai: backend needs the openai package: {OPENAI_INSTALL}") from error
        if prefill not in ("auto", "continue", "instruct"):
            raise ValueError(f"prefill must be 'auto', 'continue' or 'instruct', got {prefill!r}.")
        if backoff_s is not None or max_backoff_s is not None:
            logger.warning("OpenAILLM: backoff_s and max_backoff_s are ignored; the openai client's own backoff applies.")
        self.model, self.base_url = model, base_url.rstrip("/")
        self.model_id = f"openai:{model}@{self.base_url}"
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.max_concurrency, self.max_retries, self.timeout_s = max_concurrency, max_retries, timeout_s
        self.prefill, self.progress = prefill, progress
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.tokenizer = _local_tokenizer(tokenizer or model)
        self.usage = {"calls": 0, "prompts": 0, "prompt_tokens": 0, "prefill_tokens": 0, "generated_tokens": 0,
                      "requests": 0, "answers": 0, "retries": 0, "choose_fallbacks": 0}

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAILLM(model={self.model!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------------------------------------ tokens
    def count_tokens(self, text: str) -> int:
        if self.tokenizer is None:
            return -(-len(text) // CHARS_PER_TOKEN)
        return chat_template.count_tokens(self.tokenizer, text)

    def truncate_text(self, text: str, max_tokens: int) -> str:
        if self.tokenizer is None:
            return text[: max(0, max_tokens) * CHARS_PER_TOKEN]
        return chat_template.truncate_text(self.tokenizer, text, max_tokens)

    # ------------------------------------------------------------------------------------------------ LLM protocol
    def generate(self, prompts, *, max_new_tokens, stop=(), temperature=0.0, seeds=None):
        self._resolve_prefill()
        requests = [
            self._request(p, max_tokens=max_new_tokens, stop=list(stop) or None, temperature=temperature,
                          seed=None if seeds is None or temperature == 0 else int(seeds[i]) % (2**31))
            for i, p in enumerate(prompts)
        ]
        replies = self._send_all(requests)
        return [chat_template.cut_at_stop(self._strip_prefill(p, _text(r)), stop) for p, r in zip(prompts, replies)]

    def choose(self, prompts, options):
        self._resolve_prefill()
        requests = [self._request(p, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=20) for p in prompts]
        return [self._pick(reply, options) for reply in self._send_all(requests)]

    # ------------------------------------------------------------------------------------------------ internals
    def _resolve_prefill(self) -> None:
        if self.prefill == "auto":
            self.prefill = _run_coroutine(self._ask_prefill_mode())
            logger.info("%r: prefill=%r", self, self.prefill)

    async def _ask_prefill_mode(self) -> str:
        import openai

        async with openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, max_retries=self.max_retries,
                                      timeout=self.timeout_s) as client:
            return await _prefill_mode(client, self.model)

    def _request(self, prompt: ChatPrompt, **fields) -> dict:
        fields = {k: v for k, v in fields.items() if v is not None}
        if self.prefill == "continue":
            extra = {"add_generation_prompt": False, "continue_final_message": True}
            if self.chat_template_kwargs:
                extra["chat_template_kwargs"] = self.chat_template_kwargs
            return {"model": self.model, "messages": list(prompt), "extra_body": extra, **fields}
        *head, last = prompt
        messages = [dict(m) for m in head]
        if last["content"]:
            messages[-1]["content"] += f"\n\nBegin your reply with exactly: {last['content']}"
        return {"model": self.model, "messages": messages, **fields}

    def _strip_prefill(self, prompt: ChatPrompt, text: str) -> str:
        prefill = prompt[-1]["content"]
        if self.prefill == "instruct" and prefill and text.lstrip().startswith(prefill):
            return text.lstrip()[len(prefill):]
        return text

    def _pick(self, reply, options: Sequence[str]) -> int | None:
        choice = reply.choices[0]
        content = getattr(choice.logprobs, "content", None) or []
        if content:
            ranked = {t.token.strip(): t.logprob for t in content[0].top_logprobs}
            scored = [(ranked[o], -i) for i, o in enumerate(options) if o in ranked]
            if scored:
                return -max(scored)[1]
        text = (choice.message.content or "").strip()
        for i, option in enumerate(options):
            if text.startswith(option):
                return i
        self.usage["choose_fallbacks"] += 1
        return None

    def _send_all(self, requests: list[dict]) -> list:
        if not requests:
            return []
        self.usage["calls"] += 1
        self.usage["prompts"] += len(requests)
        return _run_coroutine(self._send_batch(requests))

    async def _send_batch(self, requests: list[dict]) -> list:
        import openai
        from tqdm.auto import tqdm

        replies: list = [None] * len(requests)
        gate = asyncio.Semaphore(self.max_concurrency)
        sent = [0]

        async def count(_request) -> None:  # every HTTP request, the client's retries included
            sent[0] += 1

        bar = tqdm(total=len(requests), desc=f"{self.model} requests", disable=not self.progress or len(requests) < 64)
        http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [count]})
        async with openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, max_retries=self.max_retries,
                                      timeout=self.timeout_s, http_client=http) as client:
            async def one(index: int) -> None:
                async with gate:
                    replies[index] = await self._send_one(client, requests[index], index)
                bar.update()

            try:
                await asyncio.gather(*(one(i) for i in range(len(requests))))
            finally:
                bar.close()
                retried = sent[0] - sum(r is not None for r in replies)
                self.usage["requests"] += sent[0]
                if retried > 0:
                    self.usage["retries"] += retried
                    logger.warning("%r: %d requests were sent again (retry after 429, 5xx, a timeout or a lost "
                                   "connection)", self, retried)
        return replies

    async def _send_one(self, client, request: dict, index: int):
        import openai

        try:
            reply = await client.chat.completions.create(**request)
        except openai.APIStatusError as error:
            if error.status_code < 500 and error.status_code not in (408, 409, 429):
                raise RuntimeError(f"{self!r}: prompt {index} was refused with HTTP {error.status_code}: {error.message}") from error
            raise RuntimeError(f"{self!r}: prompt {index} failed after {self.max_retries + 1} attempts; last error: "
                               f"HTTP {error.status_code}: {error.message}") from error
        except (openai.APITimeoutError, openai.APIConnectionError) as error:
            raise RuntimeError(f"{self!r}: prompt {index} failed after {self.max_retries + 1} attempts; last error: "
                               f"{type(error).__name__}: {error}") from error
        self.usage["answers"] += 1
        self._count(reply)
        return reply

    def _count(self, reply) -> None:
        usage = getattr(reply, "usage", None)
        if usage is None:
            return
        details = getattr(usage, "prompt_tokens_details", None)
        cached = (getattr(details, "cached_tokens", 0) or 0) if details else 0
        self.usage["prompt_tokens"] += usage.prompt_tokens or 0
        self.usage["prefill_tokens"] += (usage.prompt_tokens or 0) - cached
        self.usage["generated_tokens"] += usage.completion_tokens or 0


def _text(reply) -> str:
    return reply.choices[0].message.content or ""


# Servers known to accept `continue_final_message` (the `owned_by` of their model list).
_CONTINUING_SERVERS = ("vllm", "llamacpp")


async def _prefill_mode(client, model: str) -> str:
    """"continue" when the server says it is vLLM or llama.cpp, else "instruct" (hosted APIs reject the extension)."""
    try:
        listed = await client.models.list()
        owners = {m.id: getattr(m, "owned_by", None) for m in listed.data}
    except Exception as error:  # a server without a model list is no vLLM or llama.cpp
        logger.info("No model list at the server (%s); the prefill is asked for in words", type(error).__name__)
        return "instruct"
    owner = owners.get(model) or next(iter(owners.values()), None)
    return "continue" if owner in _CONTINUING_SERVERS else "instruct"


def _run_coroutine(coroutine):
    """Run to completion from sync code, also when the caller already runs an event loop (e.g. Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = asyncio.run(coroutine)
        except BaseException as error:  # re-raised in the caller's thread
            box["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def _local_tokenizer(name: str):
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception:  # any failure means "no local tokenizer": fall back to the estimate
        logger.warning("No local tokenizer for %r; counting tokens as %d characters each (pass tokenizer=PATH).",
                       name, CHARS_PER_TOKEN)
        return None
