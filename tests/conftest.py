"""Shared fixtures. The real-model run is computed once per session and shared by the read-only tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

E2E_ROWS = 40
E2E_DUPLICATES = [3, 7, 3]  # rows appended again at the end, so dedup is exercised on real data


@pytest.fixture(scope="session")
def sharegpt_source():
    import datasets

    from clio_hf.sources import load_source

    rows = load_source("sharegpt", limit=E2E_ROWS)
    return datasets.concatenate_datasets([rows, rows.select(E2E_DUPLICATES)])


@pytest.fixture(scope="session")
def real_result(sharegpt_source, tmp_path_factory):
    """`annotate` with the packaged SmolLM2-135M and MiniLM on real ShareGPT rows, small token budgets."""
    import clio_hf

    config = clio_hf.ClioConfig(
        conversation=clio_hf.ConversationConfig(max_tokens=256),
        facets=clio_hf.FacetConfig(max_new_tokens=32, max_retries=1),
        cluster=clio_hf.ClusterConfig(rows_per_base_cluster=6),
        hierarchy=clio_hf.HierarchyConfig(name_samples=2, assign_samples=2),
    )
    return clio_hf.annotate(sharegpt_source, config=config, cache_dir=tmp_path_factory.mktemp("clio-cache"))
