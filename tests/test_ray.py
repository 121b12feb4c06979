"""engine="ray" on a local Ray cluster (2 CPUs) with the packaged SmolLM2-135M and MiniLM on real ShareGPT rows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import ray  # a missing Ray fails this module: CI must not count skipped Ray tests as a pass

import clio_hf  # noqa: E402
from clio_hf.distributed import RayEngine, job_runtime_env  # noqa: E402
from clio_hf.embed import embed_facets, load_embedder  # noqa: E402
from clio_hf.extract import extract_facets  # noqa: E402
from clio_hf.facets import CONCERNING, LANGUAGE, REQUEST  # noqa: E402
from clio_hf.llm import load_llm  # noqa: E402
from clio_hf.sources import load_source  # noqa: E402

ROWS = 6
FACETS = [REQUEST, CONCERNING, LANGUAGE]
CONFIG = clio_hf.ClioConfig(
    conversation=clio_hf.ConversationConfig(max_tokens=64),
    facets=clio_hf.FacetConfig(max_new_tokens=12, max_retries=0, rows_per_shard=2, batch_size=2),
    hierarchy=clio_hf.HierarchyConfig(name_samples=1, name_max_new_tokens=16),
)
SHARDS = 3


@pytest.fixture(scope="module")
def cluster():
    """A local 2-CPU Ray cluster, or the running one at $CLIO_TEST_RAY_ADDRESS (e.g. started beforehand with
    `ray start --head --num-cpus 2`, when a busy machine starts Ray's daemons too slowly for `ray.init`)."""
    os.environ.setdefault("RAY_agent_register_timeout_ms", "300000")
    address = os.environ.get("CLIO_TEST_RAY_ADDRESS")
    ray.init(address=address, runtime_env=job_runtime_env()) if address else ray.init(num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def llm():
    return load_llm("smollm2-135m")


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "sharegpt"
    load_source("sharegpt", limit=ROWS).save_to_disk(path)
    return path


@pytest.fixture(scope="module")
def in_process(raw_dir, llm, tmp_path_factory):
    """The in-process facets of the rows, on a cache of their own."""
    conversations = clio_hf.to_conversations(datasets.load_from_disk(raw_dir), llm, config=CONFIG.conversation)
    return extract_facets(_on_disk(conversations, tmp_path_factory.mktemp("local")), llm, facets=FACETS, config=CONFIG.facets), \
        _on_disk(conversations, tmp_path_factory.mktemp("cold"))


def _on_disk(ds: datasets.Dataset, folder: Path) -> datasets.Dataset:
    """A copy with a cache of its own (the datasets cache lives beside a dataset's files)."""
    ds.save_to_disk(folder / "data")
    return datasets.load_from_disk(folder / "data")


def test_ray_workers_compute_the_same_facets_from_a_cold_cache(cluster, in_process):
    local, cold = in_process
    engine = RayEngine(num_workers=2)
    remote = engine.extract_facets(cold, "smollm2-135m", facets=FACETS, config=CONFIG.facets)
    for facet in FACETS:
        assert remote[facet.column] == local[facet.column], facet.name
    assert remote["conversation"] == local["conversation"]
    assert all(v for v in local[REQUEST.column]), "the test needs real answers to compare"
    # Every LLM facet of every row was asked on a Ray worker process, none on the driver (it holds no model).
    assert sorted(w["shard"] for w in engine.work) == list(range(SHARDS))
    assert sum(w["prompts"] for w in engine.work) == ROWS * 2  # request (generated) + concerning (chosen)
    assert all(w["pid"] != os.getpid() for w in engine.work)
    # The shards landed in the datasets cache, under the in-process fingerprints: a local rerun computes nothing.
    again = RayEngine(num_workers=2).extract_facets(cold, "smollm2-135m", facets=FACETS, config=CONFIG.facets)
    assert again[REQUEST.column] == local[REQUEST.column]
    assert extract_facets(cold, _NoCalls(), facets=FACETS, config=CONFIG.facets)[CONCERNING.column] == local[CONCERNING.column]


def test_ray_embeddings_match_in_process(cluster, in_process, tmp_path):
    values = in_process[0].select_columns([REQUEST.column, "conversation"])
    engine = RayEngine(num_workers=2)
    remote = engine.embed_facets(_on_disk(values, tmp_path / "ray"), "minilm-l6", dimension=384, facets=[REQUEST])
    expected = embed_facets(_on_disk(values, tmp_path / "local"), load_embedder("minilm-l6"), facets=[REQUEST])
    np.testing.assert_allclose(np.asarray(remote["request_embedding"]), np.asarray(expected["request_embedding"]), atol=1e-5)
    assert engine.work and all(w["stage"] == "embed_facets" and w["pid"] != os.getpid() for w in engine.work)


RESUME_SCRIPT = r"""
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
import clio_hf
raw, cache, address = sys.argv[1:4]
config = clio_hf.ClioConfig(
    conversation=clio_hf.ConversationConfig(max_tokens=64),
    facets=clio_hf.FacetConfig(max_new_tokens=12, max_retries=0, rows_per_shard=2, batch_size=2),
    hierarchy=clio_hf.HierarchyConfig(name_samples=1, name_max_new_tokens=16),
)
result = clio_hf.annotate(raw, facets="request", llm="smollm2-135m", config=config, cache_dir=cache, engine="ray",
                          ray_address=address, num_workers=1)
json.dump({"request": list(result.data["request"]), "engine": result.info["engine"], "nodes": len(result.hierarchy)}, open(cache + "/out.json", "w"))
"""


def _shards_written(log: str) -> int:
    return len(re.findall(r"shard \d+/\d+ written", log))


def _annotate(raw_dir: Path, cache: Path, address: str, log: Path, kill_after_shards: int | None = None):
    cmd = [sys.executable, "-c", RESUME_SCRIPT, str(raw_dir), str(cache), address]
    with log.open("w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        deadline = time.time() + 480
        while proc.poll() is None and time.time() < deadline:
            if kill_after_shards is not None and _shards_written(log.read_text()) >= kill_after_shards:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return None
            time.sleep(0.2)
    assert proc.returncode == 0, log.read_text()[-3000:]
    return json.loads((cache / "out.json").read_text())


def test_killed_driver_resumes_without_recomputing_finished_shards(cluster, raw_dir, in_process, tmp_path):
    local, _ = in_process
    cache = tmp_path / "cache"
    assert _annotate(raw_dir, cache, cluster, tmp_path / "first.log", kill_after_shards=1) is None
    landed = sorted(cache.rglob("cache-*.arrow"))
    assert landed, "a finished shard was written before the kill"
    stamps = {p: p.stat().st_mtime_ns for p in landed}
    resumed = _annotate(raw_dir, cache, cluster, tmp_path / "second.log")
    first_written = _shards_written((tmp_path / "first.log").read_text())
    assert 1 <= resumed["engine"]["shards_computed"] <= SHARDS - first_written, "the rerun computed only unfinished shards"
    assert all(p.stat().st_mtime_ns == stamps[p] for p in landed), "finished shards were not rewritten"
    assert resumed["request"] == list(local[REQUEST.column])
    assert resumed["nodes"] >= 1


def test_cli_exposes_the_engine_flags_and_rejects_workers_without_ray(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    help_text = subprocess.run([sys.executable, "-m", "clio_hf.cli", "annotate", "--help"], capture_output=True, text=True, env=env).stdout
    assert "--engine" in help_text and "--ray-address" in help_text and "--num-workers" in help_text
    bad = subprocess.run([sys.executable, "-m", "clio_hf.cli", "annotate", "sharegpt", "--limit", "2", "--num-workers", "2",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "num_workers= need engine='ray'" in bad.stderr


class _NoCalls:
    model_id = "smollm2-135m"

    def generate(self, *args, **kwargs):
        raise AssertionError("a cached facet was recomputed")

    choose = generate
