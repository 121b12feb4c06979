"""Stage 4: `cluster_facets` puts every row of a clustered facet in a base cluster (seeded faiss spherical k-means)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import datasets
import numpy as np
import pyarrow as pa

from . import columns as C
from .config import ClusterConfig
from .facets import MAIN_FACETS, Facet

logger = logging.getLogger(__name__)


def cluster_facets(
    ds: datasets.Dataset,
    *,
    facets: Sequence[Facet] = MAIN_FACETS,
    config: ClusterConfig = ClusterConfig(),
    column_prefix: str = "",
) -> datasets.Dataset:
    """Add `<facet>_cluster` (int64) for every clustered facet: base cluster ids 0..k-1 by size, largest first.

    k is about one cluster per `rows_per_base_cluster` rows, at most `max_base_clusters`, and never more than the
    number of distinct vectors, so even a single row works. K-means trains on original rows only (not on
    `duplicate_of` copies, which would weigh repeated text); every row with an embedding is then assigned, so
    duplicates land with their original. Rows without a value get -1.
    """
    clustered = [f for f in facets if f.clustered]
    C.require_columns(ds, [C.embedding_column(f, column_prefix) for f in clustered], "cluster_facets")
    duplicate_column = column_prefix + C.DUPLICATE_OF
    originals = (
        np.asarray(ds[duplicate_column][:]) < 0 if duplicate_column in ds.column_names else np.ones(len(ds), dtype=bool)
    )
    for facet in clustered:
        vectors, present = embedding_matrix(ds, C.embedding_column(facet, column_prefix))
        labels = assign_base_clusters(vectors, present, originals, config)
        ds = ds.add_column(C.cluster_column(facet, column_prefix), labels.tolist(), feature=datasets.Value("int64"))
        logger.info("cluster_facets: %s -> %d base clusters over %d rows", facet.name, labels.max() + 1, int(present.sum()))
    return ds


def embedding_matrix(ds: datasets.Dataset, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, present): an (n, d) float32 matrix with zero rows where the embedding is null, and the mask."""
    chunks = ds.select_columns([column]).with_format("arrow")[:].column(column).chunks
    dimension = ds.features[column].length
    vectors = np.zeros((len(ds), dimension), dtype=np.float32)
    present = np.zeros(len(ds), dtype=bool)
    start = 0
    for chunk in chunks:  # chunk by chunk into the one output matrix: at 1M x 384 each extra copy is 1.5 GB
        end = start + len(chunk)
        present[start:end] = ~chunk.is_null().to_numpy(zero_copy_only=False)
        # a null fixed-size list still owns its `dimension` child slots, so the child array lines up with the rows
        values = chunk.values.slice(chunk.offset * dimension, len(chunk) * dimension)
        block = values.to_numpy(zero_copy_only=False).reshape(len(chunk), dimension)
        vectors[start:end][present[start:end]] = block[present[start:end]]
        start = end
    return vectors, present


def assign_base_clusters(vectors: np.ndarray, present: np.ndarray, originals: np.ndarray, config: ClusterConfig) -> np.ndarray:
    labels = np.full(len(vectors), -1, dtype=np.int64)
    fit_rows = np.flatnonzero(present & originals)
    if len(fit_rows) == 0:
        fit_rows = np.flatnonzero(present)
    if len(fit_rows) == 0:
        return labels
    fit = np.ascontiguousarray(vectors[fit_rows])
    distinct = len(np.unique(fit.round(6), axis=0))
    k = int(np.clip(round(len(fit) / config.rows_per_base_cluster), 1, min(config.max_base_clusters, distinct)))
    centroids = kmeans(fit, k, niter=config.niter, seed=config.seed)
    raw = nearest(vectors[present], centroids)
    # Renumber by size (all rows, duplicates included), largest first; ties by the k-means id for determinism.
    counts = np.bincount(raw, minlength=k)
    order = sorted((c for c in range(k) if counts[c] > 0), key=lambda c: (-counts[c], c))
    renumber = np.full(k, -1, dtype=np.int64)
    renumber[order] = np.arange(len(order))
    labels[present] = renumber[raw]
    return labels


def kmeans(vectors: np.ndarray, k: int, *, niter: int = 25, seed: int = 0) -> np.ndarray:
    """Seeded spherical k-means centroids (k, d); trains on every point (no silent subsampling)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if k <= 1:
        centroid = vectors.mean(axis=0, keepdims=True)
        return centroid / max(float(np.linalg.norm(centroid)), 1e-12)
    km = faiss.Kmeans(
        vectors.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
        min_points_per_centroid=1, max_points_per_centroid=max(256, len(vectors) // k + 1),
    )
    km.train(vectors)
    return km.centroids


def nearest(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, ids = index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return ids[:, 0].astype(np.int64)


# ---------------------------------------------------------------------------------------------------- out of core
# For 1M+ rows: the embeddings stay in an Arrow file (a `datasets.Dataset` column, memory-mapped) and are read in
# batches; k-means trains on a seeded sample and every row is assigned in one streamed pass.


def base_cluster_count(num_rows: int, config: ClusterConfig) -> int:
    """One base cluster per `rows_per_base_cluster` rows, capped by `max_base_clusters` (so LLM calls grow with clusters)."""
    return int(np.clip(round(num_rows / config.rows_per_base_cluster), 1, config.max_base_clusters))


def stream_base_clusters(ds: datasets.Dataset, column: str, config: ClusterConfig, *, points_per_centroid: int = 64,
                         batch_size: int = 65536) -> np.ndarray:
    """Base cluster ids (0..k-1 by size, largest first) of every row of an embedding column, in bounded memory.

    K-means trains on `points_per_centroid * k` rows drawn without replacement (seeded), then rows are assigned
    `batch_size` at a time, so memory holds the sample and one batch, never the whole matrix. Every row must have
    an embedding.
    """
    k = base_cluster_count(len(ds), config)
    sample = np.sort(np.random.default_rng(config.seed).choice(len(ds), size=min(len(ds), k * points_per_centroid), replace=False))
    centroids = kmeans(_vectors(ds.select(sample).select_columns([column]).with_format("arrow")[:].column(column)), k,
                       niter=config.niter, seed=config.seed)
    raw = np.empty(len(ds), dtype=np.int64)
    for start in range(0, len(ds), batch_size):
        batch = ds.select_columns([column]).with_format("arrow")[start:start + batch_size].column(column)
        raw[start:start + len(batch)] = nearest(_vectors(batch), centroids)
    counts = np.bincount(raw, minlength=k)
    order = sorted((c for c in range(k) if counts[c] > 0), key=lambda c: (-counts[c], c))
    renumber = np.full(k, -1, dtype=np.int64)
    renumber[order] = np.arange(len(order))
    return renumber[raw]


def _vectors(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    if array.null_count:
        raise ValueError(f"stream_base_clusters: {array.null_count} rows have no embedding; drop or fill them first.")
    return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), array.type.list_size)
