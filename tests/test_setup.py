"""scripts/setup.sh on this checkout: a failed pip step stops it with pip's own message (no silent `|| true`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_failed_install_stops_setup_with_pips_message():
    env = dict(os.environ, CLIO_HF_EXTRA_PACKAGES="clio-hf-no-such-package==0.0.1")
    proc = subprocess.run(["bash", "scripts/setup.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode != 0, proc.stdout
    assert "No matching distribution found for clio-hf-no-such-package==0.0.1" in proc.stderr
    assert "setup: this step failed" in proc.stderr and "clio-hf-no-such-package" in proc.stderr.splitlines()[-1]
    assert "setup: torch already installed" in proc.stdout  # which torch branch ran is printed
    assert "installed_or_raise" not in proc.stdout + proc.stderr  # it stopped at the failed step, not later
