"""Stage 4b: `project_facets` puts every row of each clustered facet on a 2D topic map (`<facet>_x`, `<facet>_y`).

UMAP with the cosine metric, seeded, on the facet embeddings. Identical vectors (duplicates, repeated answers) are
placed once and share their point, so repeated text neither distorts the neighbour graph nor costs time. For scale,
UMAP is fitted on a seeded sample of `fit_rows` distinct vectors and every other vector is placed at the weighted mean
of its nearest fitted vectors' points (faiss), so memory and fit time stay bounded however many rows there are. Below
`min_umap_rows` distinct vectors, where UMAP's kernel compile would cost more than the map, a seeded t-SNE (cosine)
draws it; below `min_neighbour_rows`, where a neighbour graph has too few points to mean anything, an exact PCA stands
in (scikit-learn's, with a fixed sign per axis so it is deterministic).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import datasets
import numpy as np
import pyarrow as pa
from datasets.utils import tqdm  # honours datasets.disable_progress_bars()

from . import columns as C
from .cluster import embedding_matrix
from .config import ProjectionConfig
from .facets import MAIN_FACETS, Facet

logger = logging.getLogger(__name__)

UMAP_INSTALL = "pip install umap-learn"


def project_facets(
    ds: datasets.Dataset,
    *,
    facets: Sequence[Facet] = MAIN_FACETS,
    config: ProjectionConfig = ProjectionConfig(),
    column_prefix: str = "",
) -> datasets.Dataset:
    """Add `<facet>_x` and `<facet>_y` (float32; null where the embedding is null) for every clustered facet.

    Args:
        ds: rows with `<facet>_embedding` columns (see `embed_facets`).
        facets: the run's facets; only clustered ones are projected.
        config: method (`auto`, `umap`, `pca`, `none`), sample size, UMAP parameters, seed.
        column_prefix: prefix of the columns read and added.

    Example:
        >>> ds = project_facets(embed_facets(ds, embedder, facets=[REQUEST]), facets=[REQUEST])
        >>> ds["request_x"][:2]
        [3.91, -1.27]
    """
    if config.method == "none":
        return ds
    clustered = [f for f in facets if f.clustered]
    C.require_columns(ds, [C.embedding_column(f, column_prefix) for f in clustered], "project_facets")
    for facet in clustered:
        vectors, present = embedding_matrix(ds, C.embedding_column(facet, column_prefix))
        if not present.all():
            vectors = vectors[present]  # a copy; with every row present (the usual case) the matrix is used as it is
        coordinates = project(vectors, config) if len(vectors) else np.zeros((0, 2), np.float32)
        for axis, name in enumerate(C.projection_columns(facet, column_prefix)):
            values = np.zeros(len(ds), dtype=np.float32)
            values[present] = coordinates[:, axis]
            ds = ds.add_column(name, pa.array(values, mask=~present), feature=datasets.Value("float32"))
        logger.info("project_facets: %s -> %d points", facet.name, int(present.sum()))
    return ds


def project(vectors: np.ndarray, config: ProjectionConfig = ProjectionConfig()) -> np.ndarray:
    """(n, 2) float32 coordinates of (n, d) vectors; identical rows get identical points."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    firsts, inverse = distinct_rows(vectors)
    distinct = vectors if len(firsts) == len(vectors) else vectors[firsts]
    method = config.method
    if method == "auto":
        method = "pca" if len(distinct) < config.min_neighbour_rows else "tsne" if len(distinct) < config.min_umap_rows else "umap"
    if method == "umap" and len(distinct) <= config.n_neighbors:
        raise ValueError(f"project: UMAP needs more than n_neighbors={config.n_neighbors} distinct vectors; got "
                         f"{len(distinct)}. Use method='auto' or 'pca'.")
    if method == "tsne" and len(distinct) < 4:
        raise ValueError(f"project: t-SNE needs at least 4 distinct vectors; got {len(distinct)}. Use method='auto' or 'pca'.")
    points = {"umap": _umap, "tsne": _tsne, "pca": lambda v, _: _pca(v)}[method](distinct, config)
    return points[inverse].astype(np.float32)


def distinct_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(firsts, inverse): the index of each distinct row's first occurrence, in row order, and for every row the
    position of its distinct row in `firsts`. Rows are compared by a hash of their bytes (equal bytes, equal vector),
    so no sorted copy of the matrix is made (`np.unique(axis=0)` needs two: 3 GB at 1M x 384)."""
    first_of: dict[int, int] = {}
    firsts: list[int] = []
    inverse = np.empty(len(vectors), dtype=np.int64)
    for row in range(len(vectors)):
        key = hash(vectors[row].tobytes())
        position = first_of.get(key)
        if position is None or not np.array_equal(vectors[firsts[position]], vectors[row]):  # new, or a hash collision
            position = len(firsts)
            first_of.setdefault(key, position)
            firsts.append(row)
        inverse[row] = position
    return np.asarray(firsts, dtype=np.int64), inverse


def _pca(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components (scikit-learn's exact PCA); each axis's largest loading is positive, so
    the result is unique."""
    from sklearn.decomposition import PCA

    vectors = vectors.astype(np.float64)
    if len(vectors) < 2:  # one point: nothing to spread
        return np.zeros((len(vectors), 2))
    components = min(2, len(vectors), vectors.shape[1])
    pca = PCA(n_components=components, svd_solver="full").fit(vectors)
    axes = pca.components_.T
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(components)])
    points = pca.transform(vectors) * np.where(signs == 0, 1, signs)
    return np.pad(points, ((0, 0), (0, 2 - components)))


def _tsne(vectors: np.ndarray, config: ProjectionConfig) -> np.ndarray:
    try:
        from sklearn.manifold import TSNE
    except ImportError as error:
        raise ImportError("The topic map of a small dataset needs scikit-learn: pip install scikit-learn "
                          "(or ProjectionConfig(method='pca'))") from error
    perplexity = min(30.0, (len(vectors) - 1) / 3)
    return TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity, random_state=config.seed).fit_transform(vectors)


def _umap(vectors: np.ndarray, config: ProjectionConfig) -> np.ndarray:
    try:
        import umap
    except ImportError as error:
        raise ImportError(f"The topic map needs umap-learn: {UMAP_INSTALL} (or ProjectionConfig(method='pca'))") from error
    rng = np.random.default_rng(config.seed)
    fit = np.sort(rng.choice(len(vectors), size=config.fit_rows, replace=False)) if len(vectors) > config.fit_rows else np.arange(len(vectors))
    reducer = umap.UMAP(n_components=2, metric="cosine", n_neighbors=config.n_neighbors, min_dist=config.min_dist,
                        random_state=config.seed, n_jobs=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")  # "n_jobs overridden by random_state"
        points = np.zeros((len(vectors), 2), dtype=np.float64)
        points[fit] = reducer.fit_transform(vectors[fit])
    rest = np.setdiff1d(np.arange(len(vectors)), fit)
    if len(rest):
        logger.info("project: UMAP fitted on %d of %d distinct vectors; placing the rest by their nearest fitted ones", len(fit), len(vectors))
        points[rest] = place_by_neighbours(vectors[fit], points[fit], vectors[rest], config)
    return points


def place_by_neighbours(fitted: np.ndarray, fitted_points: np.ndarray, vectors: np.ndarray,
                        config: ProjectionConfig = ProjectionConfig()) -> np.ndarray:
    """Map points for `vectors` not in the UMAP fit: the similarity-weighted mean of their `place_neighbors` nearest
    fitted vectors' points (cosine, exact faiss search).

    Measured against `UMAP.transform` on 20,000-40,000 placed rows (docs/scale.md): 2.5x faster, and more faithful (a
    placed point's 10 nearest fitted points on the map hold 0.51 of its 10 nearest in the embedding space; 0.44-0.45
    for transform). Weights are similarity**16: neighbours at similar distance share the pull, a clearly nearest one
    dominates, so a row between two map regions is not dropped into the empty space between them.
    """
    import faiss

    index = faiss.IndexFlatIP(fitted.shape[1])
    index.add(np.ascontiguousarray(fitted, dtype=np.float32))
    points = np.zeros((len(vectors), 2), dtype=np.float64)
    for start in tqdm(range(0, len(vectors), config.transform_batch_size), desc="Topic map: placing rows"):
        batch = np.ascontiguousarray(vectors[start : start + config.transform_batch_size], dtype=np.float32)
        similarities, neighbours = index.search(batch, min(config.place_neighbors, len(fitted)))
        weights = np.maximum(similarities, 0.0) ** 16 + 1e-30  # + 1e-30: never divide by zero
        points[start : start + len(batch)] = (fitted_points[neighbours] * weights[..., None]).sum(1) / weights.sum(1, keepdims=True)
    return points
