"""Pytest fixtures for tests that talk to the local Hub server (tests/hub_server.py).

Use them from a test module with (tests/ is on sys.path under pytest's default import mode, as tests/ has no
__init__.py; in a package layout use `from .hub_fixtures import ...`)

    from hub_fixtures import hub_server, hub_env, run_hub_client  # noqa: F401  (pytest finds fixtures by name)

`hub_server` is a running HubServer (session scope, but each importing module gets its own: pytest ties an imported
fixture to the module that imports it); `hub_env` is the environment a client needs. `huggingface_hub` and
`datasets` read these variables at import time, so Hub client code must run in a subprocess:

    def test_push(hub_server, hub_env):
        run_hub_client("from huggingface_hub import HfApi; HfApi().create_repo('user/x', repo_type='dataset')", hub_env)
        assert len(hub_server.commits("user/x")) == 1
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    from hub_server import HubServer
except ImportError:  # tests/ imported as a package
    from .hub_server import HubServer

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def hub_server():
    server = HubServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def hub_env(hub_server, tmp_path_factory) -> dict[str, str]:
    """Environment for a client subprocess: the local endpoint, a dummy token, classic LFS, a private HF_HOME."""
    home = tmp_path_factory.mktemp("hf_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=hub_server.url,
        HF_TOKEN="hf_dummy",
        HF_HUB_DISABLE_XET="1",  # hub 2.x would take the Xet path, which this server does not speak
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        PYTHONPATH=os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def run_hub_client(code: str, env: dict[str, str], *args: str, check: bool = True, timeout: float = 120):
    """Run `code` with `python -c` in a subprocess with `env`; extra args land in sys.argv[1:]."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"client failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
