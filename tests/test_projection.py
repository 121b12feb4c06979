"""The topic map (`clio_hf.projection`): shapes, determinism, duplicates, nulls, PCA for tiny data, t-SNE below the UMAP
threshold, and a real UMAP fit on a sample with the rest placed beside their nearest fitted vectors."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from clio_hf.config import ProjectionConfig
from clio_hf.facets import LANGUAGE, REQUEST
from clio_hf.projection import place_by_neighbours, project, project_facets


def _unit(rows: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _dataset(vectors: np.ndarray, missing: tuple[int, ...] = ()) -> datasets.Dataset:
    feature = datasets.List(datasets.Value("float32"), length=vectors.shape[1])
    column = [None if i in missing else v.tolist() for i, v in enumerate(vectors)]
    return datasets.Dataset.from_dict({"id": list(range(len(vectors))), "request_embedding": column},
                                      features=datasets.Features({"id": datasets.Value("int64"), "request_embedding": feature}))


def test_small_data_gets_a_deterministic_pca():
    vectors = _unit(20)
    vectors = np.vstack([vectors, vectors[:3]])  # repeated answers share a point
    points = project(vectors)
    assert points.shape == (23, 2) and points.dtype == np.float32
    assert np.array_equal(points[20:], points[:3])
    assert np.array_equal(project(vectors), points)
    distinct = vectors[:20].astype(np.float64)  # the PCA is of the distinct vectors
    centred = distinct - distinct.mean(axis=0)
    top = np.linalg.svd(centred, full_matrices=False)[2][:2]
    assert np.allclose(np.abs(points[:20]), np.abs(centred @ top.T), atol=1e-4)  # the first two principal components
    assert project(vectors[:1]).tolist() == [[0.0, 0.0]]  # one row still gets a point


def test_project_facets_adds_float_columns_and_keeps_nulls():
    ds = _dataset(_unit(12), missing=(4,))
    out = project_facets(ds, facets=[REQUEST, LANGUAGE])
    assert out.column_names == ["id", "request_embedding", "request_x", "request_y"]  # only clustered facets
    assert out.features["request_x"] == datasets.Value("float32")
    assert out["request_x"][4] is None and out["request_y"][4] is None
    assert sum(v is None for v in out["request_x"]) == 1
    assert out.select_columns(["id", "request_embedding"]).to_dict() == ds.to_dict()
    assert project_facets(ds, facets=[REQUEST], config=ProjectionConfig(method="none")) is ds
    with pytest.raises(ValueError, match="no column"):
        project_facets(ds.remove_columns("request_embedding"), facets=[REQUEST])


def _three_groups() -> np.ndarray:
    rng = np.random.default_rng(1)
    centres = _unit(3, dim=24, seed=7) * 4
    vectors = np.vstack([c + rng.normal(scale=0.3, size=(30, 24)) for c in centres]).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _groups_stay_apart(points: np.ndarray) -> bool:
    labels = np.repeat(np.arange(3), 30)
    means = np.array([points[labels == k].mean(axis=0) for k in range(3)])
    spread = max(np.linalg.norm(points[labels == k] - means[k], axis=1).mean() for k in range(3))
    return min(np.linalg.norm(means[a] - means[b]) for a in range(3) for b in range(a + 1, 3)) > 2 * spread


def test_umap_fits_a_sample_and_places_the_rest_deterministically():
    vectors = _three_groups()  # well separated groups of directions: the map must keep them apart
    config = ProjectionConfig(fit_rows=60, min_umap_rows=48, n_neighbors=10, transform_batch_size=16)
    points = project(vectors, config)
    assert points.shape == (90, 2) and np.isfinite(points).all()
    assert np.array_equal(project(vectors, config), points)  # seeded: the same map again
    assert _groups_stay_apart(points)  # placed rows land with their group, not at random
    with pytest.raises(ValueError, match="n_neighbors"):
        project(vectors[:8], ProjectionConfig(method="umap"))


def test_a_vector_outside_the_fit_lands_beside_its_nearest_fitted_vectors():
    fitted = _unit(40, seed=3)
    fitted_points = np.random.default_rng(0).normal(size=(40, 2)) * 10
    config = ProjectionConfig(place_neighbors=3, transform_batch_size=7)
    near = fitted[:20] + 0.05 * _unit(20, seed=4)
    placed = place_by_neighbours(fitted, fitted_points, near / np.linalg.norm(near, axis=1, keepdims=True), config)
    distances = np.linalg.norm(placed[:, None] - fitted_points[None], axis=2)
    assert (distances.argmin(axis=1) == np.arange(20)).mean() >= 0.9  # beside the fitted vector it came from
    assert np.median(distances.min(axis=1)) < 0.2 * np.median(distances)
    opposite = place_by_neighbours(fitted, fitted_points, -fitted[:1], config)  # no similar neighbour: still a finite point
    assert np.isfinite(opposite).all()


def test_between_the_thresholds_a_seeded_tsne_draws_the_map(monkeypatch):
    vectors = _three_groups()
    import clio_hf.projection as projection

    monkeypatch.setattr(projection, "_umap", None)  # auto must not reach UMAP below min_umap_rows
    points = project(vectors)
    assert points.shape == (90, 2) and np.isfinite(points).all()
    assert np.array_equal(project(vectors), points)
    assert _groups_stay_apart(points)
    assert not np.allclose(points, project(vectors, ProjectionConfig(method="pca")))


def test_real_result_has_a_map_for_each_clustered_facet(real_result):
    data = real_result.data
    for facet in ("request", "task"):
        assert data.features[f"{facet}_x"] == datasets.Value("float32")
        has_vector = [v is not None for v in data[f"{facet}_embedding"]]
        assert [v is not None for v in data[f"{facet}_x"]] == has_vector
        points = np.array([(x, y) for x, y in zip(data[f"{facet}_x"], data[f"{facet}_y"]) if x is not None])
        assert len(np.unique(points, axis=0)) > 1
    assert real_result.info["config"]["projection"]["method"] == "auto"
