"""Out-of-core clustering (`stream_base_clusters`) and the hierarchy's O(n d) outside-neighbour search."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from clio_hf.cluster import base_cluster_count, stream_base_clusters
from clio_hf.config import ClusterConfig
from clio_hf.hierarchy import _group_by_label, _nearest_outside


def _blobs(n: int, blobs: int, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((blobs, dim))
    truth = rng.integers(0, blobs, size=n)
    vectors = centres[truth] + 0.05 * rng.standard_normal((n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), truth


@pytest.fixture
def on_disk(tmp_path):
    vectors, truth = _blobs(3000, 8)
    features = datasets.Features({"e": datasets.List(datasets.Value("float32"), length=16)})
    datasets.Dataset.from_dict({"e": vectors.tolist()}, features=features).save_to_disk(tmp_path / "d")
    return datasets.load_from_disk(tmp_path / "d"), truth


def test_streamed_clusters_recover_the_blobs_numbered_by_size_whatever_the_batch(on_disk):
    ds, truth = on_disk
    config = ClusterConfig(rows_per_base_cluster=188, max_base_clusters=16, points_per_centroid=40)
    labels = stream_base_clusters(ds, "e", config, batch_size=257)
    assert base_cluster_count(len(ds), config) == 16 and labels.min() == 0 and labels.max() == 15
    for cluster in range(16):  # k-means may split a blob, but never puts two blobs in one cluster
        assert len(set(truth[labels == cluster])) == 1
    counts = np.bincount(labels)
    assert list(counts) == sorted(counts, reverse=True)
    assert np.array_equal(labels, stream_base_clusters(ds, "e", config, batch_size=100_000))


def test_base_cluster_count_is_capped_so_llm_calls_grow_with_clusters_not_rows():
    config = ClusterConfig(rows_per_base_cluster=10, max_base_clusters=2000)
    assert [base_cluster_count(n, config) for n in (1, 5, 1000, 1_000_000)] == [1, 1, 100, 2000]


def test_streamed_clusters_skip_missing_embeddings(tmp_path):
    features = datasets.Features({"e": datasets.List(datasets.Value("float32"), length=2)})
    datasets.Dataset.from_dict({"e": [[1.0, 0.0], None, [0.0, 1.0], [0.9, 0.1]]}, features=features).save_to_disk(tmp_path / "d")
    labels = stream_base_clusters(datasets.load_from_disk(tmp_path / "d"), "e", ClusterConfig(rows_per_base_cluster=2), batch_size=3)
    assert labels.tolist() == [0, -1, 1, 0]


def test_the_streamed_and_exact_paths_agree_and_annotate_records_which_ran(tmp_path):
    """A 20k-row seeded mixture: the sampled, streamed k-means finds the same clusters as k-means on every row."""
    from sklearn.metrics import adjusted_rand_score

    from clio_hf.cluster import cluster_facets
    from clio_hf.facets import REQUEST

    vectors, _ = _blobs(20_000, 50, dim=64, seed=1)
    vectors[7] = np.nan  # replaced by a null below
    features = datasets.Features({"request_embedding": datasets.List(datasets.Value("float32"), length=64),
                                  "duplicate_of": datasets.Value("int64")})
    rows = [None if i == 7 else v for i, v in enumerate(vectors.tolist())]
    datasets.Dataset.from_dict({"request_embedding": rows, "duplicate_of": [-1] * len(rows)}, features=features).save_to_disk(tmp_path / "d")
    ds = datasets.load_from_disk(tmp_path / "d")
    config = ClusterConfig(rows_per_base_cluster=400)
    exact = np.array(cluster_facets(ds, facets=[REQUEST], config=config)["request_cluster"])
    streamed = np.array(cluster_facets(ds, facets=[REQUEST], config=ClusterConfig(rows_per_base_cluster=400, exact_max_rows=1000))["request_cluster"])
    assert exact[7] == streamed[7] == -1 and exact.max() == streamed.max() == 49
    assert adjusted_rand_score(exact, streamed) >= 0.9



def _brute_force(vectors, labels, centroids, count):
    out = []
    for cluster, centroid in enumerate(centroids):
        order = np.argsort(-(vectors @ centroid), kind="stable")
        out.append(np.array([i for i in order if labels[i] != cluster][:count]))
    return out


def test_nearest_outside_is_exact_with_few_clusters_and_close_with_many():
    vectors, labels = _blobs(2000, 20, seed=1)
    centroids = np.stack([vectors[labels == c].mean(axis=0) for c in range(20)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    members = _group_by_label(labels, 20)
    assert all(np.array_equal(m, np.flatnonzero(labels == c)) for c, m in enumerate(members))
    found = _nearest_outside(vectors, members, centroids, 6)
    assert all(np.array_equal(a, b) for a, b in zip(found, _brute_force(vectors, labels, centroids, 6)))
    # Searching only the 5 nearest clusters: still outsiders only, and nearly always the same ones.
    few = _nearest_outside(vectors, members, centroids, 6, neighbour_clusters=5)
    exact = _brute_force(vectors, labels, centroids, 6)
    assert all(labels[i] != c for c, picks in enumerate(few) for i in picks)
    recall = np.mean([len(set(a) & set(b)) / 6 for a, b in zip(few, exact)])
    assert recall >= 0.9
