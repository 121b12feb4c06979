"""The `transformers` backend, the CPU default: `TransformersLLM` and the compute dtype it picks for a device.

`transformers` and `torch` are imported where they are used, so importing this module stays cheap. Inside this package
`import transformers` still means the library: Python 3 imports are absolute.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from . import chat_template
from .protocols import ChatPrompt

logger = logging.getLogger(__name__)


class TransformersLLM:
    """Batched `transformers` generation on the CPU or one GPU: left padding, length-sorted batches, inference mode.

    Prefix reuse: a prompt of three or more messages is split into its head (every message but the last question and
    the prefill) and the rest. The head's key/value cache is computed once and kept in a small LRU, so the facets of
    one conversation, which share the conversation as their head, prefill it once instead of once per facet. Each head
    in turn continues the system prompt's cached keys and values. `prefix_reuse=False` prefills every prompt whole
    (same greedy outputs; for measuring what reuse saves).

    Decoding is a loop of our own rather than `model.generate`: a row leaves the batch as soon as it stops.
    """

    def __init__(self, path: str, *, model_id: str | None = None, batch_size: int = 32, device: str | None = None,
                 prefix_cache_size: int = 32, prefix_reuse: bool = True, chat_template_kwargs: dict | None = None,
                 dtype: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_id = model_id or path
        self.batch_size = batch_size
        self.prefix_cache_size = prefix_cache_size
        self.prefix_reuse = prefix_reuse
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dtype = compute_dtype(self.device) if dtype == "auto" else dtype
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, self.dtype)).to(self.device).eval()
        self._prefixes: OrderedDict[str, tuple[list[int], list]] = OrderedDict()
        self.usage = {"calls": 0, "prompts": 0, "prompt_tokens": 0, "prefill_tokens": 0, "generated_tokens": 0}

    def render(self, prompt: ChatPrompt) -> str:
        return chat_template.render(self.tokenizer, prompt, self.chat_template_kwargs)

    def count_tokens(self, text: str) -> int:
        return chat_template.count_tokens(self.tokenizer, text)

    def truncate_text(self, text: str, max_tokens: int) -> str:
        return chat_template.truncate_text(self.tokenizer, text, max_tokens)

    def _split(self, prompt: ChatPrompt) -> tuple[tuple[str, str], list[int]]:
        """((base, head) texts, token ids of the rest).

        The head is "" when the prompt has no shareable part or reuse is off. The base is the start of the head that
        every prompt with the same system message shares ("" when there is none): heads are computed on top of it.
        """
        full = self.render(prompt)
        head = chat_template.render_head(self.tokenizer, prompt, self.chat_template_kwargs) if self.prefix_reuse else ""
        if not full.startswith(head):
            head = ""
        base = chat_template.render_base(self.tokenizer, prompt, self.chat_template_kwargs) if head else ""
        return (base, head), chat_template.token_ids(self.tokenizer, full[len(head):])

    def _prefix(self, head: str, base: str = "") -> tuple[list[int], list]:
        """Token ids and per-layer (key, value) tensors of a head, from the LRU or computed alone (no padding).

        A head that starts with `base` (the system message) continues the base's cached keys and values, so the system
        prompt is prefilled once per run instead of once per conversation.
        """
        import torch
        from transformers import DynamicCache

        if head in self._prefixes:
            self._prefixes.move_to_end(head)
            return self._prefixes[head]
        ids = self.tokenizer(head, add_special_tokens=False).input_ids
        past, start = None, 0
        if base:
            base_ids, base_kv = self._prefix(base)
            if ids[: len(base_ids)] == base_ids:  # the two texts tokenize apart at the boundary: reuse is exact
                past, start = DynamicCache(config=self.model.config), len(base_ids)
                for layer, (keys, values) in enumerate(base_kv):
                    past.update(keys, values, layer)
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids[start:]], device=self.device), past_key_values=past,
                             use_cache=True, logits_to_keep=1)
        entry = (ids, [(layer.keys, layer.values) for layer in out.past_key_values.layers])
        self.usage["prefill_tokens"] += len(ids) - start
        self._prefixes[head] = entry
        while len(self._prefixes) > self.prefix_cache_size:
            self._prefixes.popitem(last=False)
        return entry

    def _batches(self, prompts: Sequence[ChatPrompt]):
        """Length-sorted batches of (positions, input ids, attention mask, cache of the heads, head length).

        Each row is [left padding, head, padding, rest]: the heads come from the prefix cache, and the attention mask
        hides both padding runs, so positions count only real tokens and the result equals an unpadded run.
        """
        import torch
        from transformers import DynamicCache

        split = [self._split(p) for p in prompts]
        # Only the order matters here: similar lengths share a batch and waste little on padding.
        order = sorted(range(len(prompts)), key=lambda i: (len(split[i][0][1]) + 4 * len(split[i][1]), split[i][0][1]))
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            positions = order[start : start + self.batch_size]
            heads = [self._prefix(split[i][0][1], split[i][0][0]) if split[i][0][1] else ([], None) for i in positions]
            rests = [split[i][1] for i in positions]
            head_len, rest_len = max(len(h[0]) for h in heads), max(len(r) for r in rests)
            ids = torch.full((len(positions), head_len + rest_len), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, ((head_ids, _), rest) in enumerate(zip(heads, rests)):
                ids[row, head_len - len(head_ids) : head_len] = torch.tensor(head_ids, dtype=torch.long)
                mask[row, head_len - len(head_ids) : head_len] = 1
                ids[row, ids.shape[1] - len(rest) :] = torch.tensor(rest, dtype=torch.long)
                mask[row, ids.shape[1] - len(rest) :] = 1
            cache = None
            if head_len:
                cache = DynamicCache(config=self.model.config)
                for layer in range(len(next(h[1] for h in heads if h[1] is not None))):
                    keys = values = None
                    for row, (head_ids, kv) in enumerate(heads):
                        if kv is None:
                            continue
                        k, v = kv[layer]
                        if keys is None:
                            keys = k.new_zeros((len(positions), k.shape[1], head_len, k.shape[3]))
                            values = torch.zeros_like(keys)
                        keys[row, :, head_len - k.shape[2] :] = k[0]
                        values[row, :, head_len - v.shape[2] :] = v[0]
                    cache.update(keys, values, layer)
            self.usage["calls"] += 1
            self.usage["prompts"] += len(positions)
            self.usage["prompt_tokens"] += sum(len(h[0]) + len(r) for h, r in zip(heads, rests))
            self.usage["prefill_tokens"] += sum(len(r) for r in rests)
            yield positions, ids.to(self.device), mask.to(self.device), cache, head_len

    def generate(self, prompts, *, max_new_tokens, stop=(), temperature=0.0, seeds=None):
        results: list[str] = [""] * len(prompts)
        for positions, ids, mask, cache, head_len in self._batches(prompts):
            draws = [seeds[i] if seeds is not None else i for i in positions] if temperature > 0 else None
            for position, text in zip(positions, self._decode(ids, mask, cache, head_len, max_new_tokens, stop, temperature, draws)):
                results[position] = text
        return results

    def _decode(self, ids, mask, cache, head_len, max_new_tokens, stop, temperature, seeds) -> list[str]:
        """Greedy (or seeded) decoding of one batch, dropping each row from the batch as soon as it is finished.

        `model.generate` keeps every row until the last one stops; on a CPU a step costs about as much per row as
        the rows it carries, and facet answers end at very different lengths, so finished rows are cut out of the
        batch and its key/value cache.
        """
        import torch

        sampler = _SeededSampler(seeds, temperature) if seeds is not None else None
        eos = self.model.generation_config.eos_token_id
        eos = set([eos] if isinstance(eos, int) else eos or [])
        generated: list[list[int]] = [[] for _ in range(ids.shape[0])]
        texts = [""] * ids.shape[0]
        active = torch.arange(ids.shape[0])
        inputs, positions = ids[:, head_len:], (mask.cumsum(-1) - 1).clamp(min=0)[:, head_len:]
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                out = self.model(input_ids=inputs, attention_mask=mask, position_ids=positions, past_key_values=cache,
                                 use_cache=True, logits_to_keep=1)
                cache, scores = out.past_key_values, out.logits[:, -1, :].float()
                if sampler is not None:
                    scores = sampler(active.tolist(), scores)
                tokens = scores.argmax(dim=-1).tolist()
                keep = []
                for slot, (row, token) in enumerate(zip(active.tolist(), tokens)):
                    if token in eos:
                        continue
                    generated[row].append(token)
                    self.usage["generated_tokens"] += 1
                    texts[row] = self.tokenizer.decode(generated[row], skip_special_tokens=True)
                    if not any(s and s in texts[row] for s in stop):
                        keep.append(slot)
                if not keep:
                    break
                index = torch.tensor(keep, device=mask.device)
                if len(keep) < len(active):
                    cache.batch_select_indices(index)
                    active, mask, positions = active[index.cpu()], mask[index], positions[index]
                inputs = torch.tensor(tokens, device=mask.device)[index][:, None]
                positions = positions[:, -1:] + 1
                mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        return [chat_template.cut_at_stop(text, stop) for text in texts]

    def choose(self, prompts, options):
        return [max(range(len(options)), key=lambda i: row[i]) for row in self.option_logprobs(prompts, options)]

    def option_logprobs(self, prompts, options):
        """For each prompt, the log-probability of each option as the next token (options must be single tokens)."""
        import torch

        option_ids = chat_template.single_token_options(self.tokenizer, options)
        if option_ids is None:
            raise ValueError(f"choose() needs options that are single distinct tokens; got {list(options)!r}.")
        candidates = torch.tensor(option_ids, device=self.device)
        results: list[list[float]] = [[]] * len(prompts)
        for positions, ids, mask, cache, head_len in self._batches(prompts):
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)[:, head_len:]
            with torch.inference_mode():
                # The last position is every prompt's next token; logits for the others are never needed.
                logits = self.model(input_ids=ids[:, head_len:], attention_mask=mask, position_ids=position_ids,
                                    past_key_values=cache, logits_to_keep=1).logits[:, -1, :]
            logprobs = torch.log_softmax(logits.float(), dim=-1)[:, candidates].tolist()
            for position, row in zip(positions, logprobs):
                results[position] = row
        return results


def compute_dtype(device: str, cpu_flags: set[str] | None = None) -> str:
    """bfloat16 on a GPU and on CPUs with bfloat16 matrix units (AMX, AVX-512 BF16), float32 elsewhere.

    Measured on a 2-core CPU with AMX: SmolLM2-135M prefills 776 -> 2,832 tokens/s and Qwen2.5-Coder-0.5B ~210 -> ~400
    in bfloat16. On a 2-core AMD EPYC without them bfloat16 is emulated: 8 facet prompts took 4.7x (SmolLM2) and 5.3x
    (Qwen 0.5B) longer than in float32.
    """
    if device != "cpu":
        return "bfloat16"
    if cpu_flags is None:
        try:
            cpu_flags = set(Path("/proc/cpuinfo").read_text().split())
        except OSError:
            cpu_flags = set()
    return "bfloat16" if {"amx_bf16", "avx512_bf16"} & cpu_flags else "float32"


class _SeededSampler:
    """Sampling whose draw for a row depends only on that row's seed, not on what else is in the batch.

    Adding Gumbel noise from a per-row generator to the scaled logits and taking the argmax samples from
    softmax(logits / temperature). Each row draws once per step it is still decoding.
    """

    def __init__(self, seeds: Sequence[int], temperature: float):
        import torch

        self.generators = [torch.Generator().manual_seed(int(s) % (2**63)) for s in seeds]
        self.temperature = temperature

    def __call__(self, rows: Sequence[int], scores):
        import torch

        uniform = torch.stack([torch.rand(scores.shape[1], generator=self.generators[r]) for r in rows]).to(scores.device)
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
        return scores / self.temperature + gumbel
