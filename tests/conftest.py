"""Shared fixtures. The real-model run is computed once and shared by every read-only test.

It is saved under `~/.cache/clio_hf/test-results/<hash of the clio_hf sources and this file>` (or `$CLIO_HF_CACHE`), so the test
phases that CI runs as separate pytest invocations (core pipeline, Hub and Space) annotate only once, and a code
change makes a new one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

E2E_ROWS = 40
# The real-model tests run the packaged SmolLM2-135M, not the default Qwen2.5-Coder-0.5B: they check the machinery,
# and the 135M model keeps the suite inside CI's budget (the default's quality is scripts/eval_quality.py's job).
TEST_LLM = "smollm2-135m"
E2E_DUPLICATES = [3, 7, 3]  # rows appended again at the end, so dedup is exercised on real data
TIME_COLUMN = "created_at"
PACKAGE = Path(__file__).parent.parent / "clio_hf"


def kill_when_logged(cmd: list[str], log: Path, lines: int, *, timeout: float = 240) -> None:
    """Start `cmd`, wait until it has written `lines` lines to `log`, then SIGKILL it (the resume tests' kill -9)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < lines):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _code_hash() -> str:
    digest = hashlib.sha256()
    for path in [*sorted(PACKAGE.rglob("*.py")), Path(__file__)]:  # this file too: it holds the run's config
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def sharegpt_source():
    import datasets

    from clio_hf.sources import load_source

    rows = load_source("sharegpt", limit=E2E_ROWS)
    rows = datasets.concatenate_datasets([rows, rows.select(E2E_DUPLICATES)])
    # a time column (ShareGPT has none): rows spread over 8 weeks, so the time features run on the real result
    return rows.add_column(TIME_COLUMN, [f"2026-10-{1 + (i * 37) % 28:02d}T{(i * 7) % 24:02d}:00:00Z" if i % 2 else
                                         f"2026-11-{1 + (i * 11) % 28:02d}T{(i * 5) % 24:02d}:30:00Z" for i in range(len(rows))])


@pytest.fixture(scope="session")
def real_result_dir(sharegpt_source, tmp_path_factory) -> Path:
    """A folder holding `annotate`'s result with the packaged SmolLM2-135M and MiniLM on real ShareGPT rows, read from a
    local JSON Lines file (so a push must not publish its path), with the main facets, one lens and a time column."""
    import clio_hf
    from clio_hf.lenses import LEARNING_VALUE

    cache = Path(os.environ.get("CLIO_HF_CACHE", Path.home() / ".cache" / "clio_hf"))
    folder = cache / "test-results" / f"sharegpt-{E2E_ROWS}-{_code_hash()}"
    if not (folder / "clio_run.json").exists():
        config = clio_hf.ClioConfig(
            conversation=clio_hf.ConversationConfig(max_tokens=192),
            facets=clio_hf.FacetConfig(max_new_tokens=32, max_retries=1, rationale_max_new_tokens=16),
            cluster=clio_hf.ClusterConfig(rows_per_base_cluster=6),
            hierarchy=clio_hf.HierarchyConfig(name_samples=1),
        )  # the privacy gates at their defaults: rows, the personal-data check and the calibrated audit
        local_source = tmp_path_factory.mktemp("local-source") / "sharegpt-rows.jsonl"
        sharegpt_source.to_json(local_source, lines=True)
        result = clio_hf.annotate(str(local_source), facets=[*clio_hf.MAIN_FACETS, LEARNING_VALUE], llm=TEST_LLM, config=config,
                                  time_column=TIME_COLUMN, cache_dir=tmp_path_factory.mktemp("clio-cache"))
        staging = folder.with_name(folder.name + ".partial")
        result.save_to_disk(staging)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    return folder


@pytest.fixture(scope="session")
def real_result(real_result_dir):
    from clio_hf.result import ClioResult

    return ClioResult.load(real_result_dir)
