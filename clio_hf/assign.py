"""New rows into an existing tree: `assign` places rows a result has not seen under its base clusters.

The new rows go through the stages `annotate` ran (conversations, the same facet prompts, the same embedder, with the
same per-shard cache, so a killed `assign` resumes). Each clustered facet's embedding then goes to its nearest base
cluster (cosine) unless it lies farther from that cluster's centroid than the cluster's own rows reach, its novelty
radius (`centroids_and_radii`): such a row is novel, `<facet>_cluster = -2`, under no
node. Node ids and names never change; sizes, numeric means, group counts, user counts and privacy decisions are
recomputed for the whole tree, and the run record keeps the lineage.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from datasets.fingerprint import Hasher

from . import columns as C
from .checkpoint import materialise
from .cluster import embedding_matrix
from .config import ClioConfig
from .conversations import to_conversations
from .embed import Embedder, embed_facets, load_embedder
from .extract import extract_facets
from .facets import Facet
from .groups import count_groups
from .llm import LLM, load_llm
from .models import cache_root
from .privacy import NUM_USERS, count_users, mark_published
from .projection import place_by_neighbours
from .prompts import PROMPT_VERSION
from .result import ClioResult
from .sources import load_source
from .summary import facets_from_info

logger = logging.getLogger(__name__)

NOVEL = C.NOVEL_CLUSTER
NOVELTY_QUANTILE = 0.95
"""A cluster reaches as far as this quantile of its members' cosine distances to its centroid."""
MIN_OWN_RADIUS = 5
"""Clusters with fewer rows than this use the radius of all clusters' rows pooled (too few distances to rank)."""
CENTROID, NOVELTY_RADIUS = "centroid", "novelty_radius"
SIZE_BEFORE = "size_before"  # a node's size before the last assigned batch


def assign(
    result: ClioResult,
    new_rows: str | datasets.Dataset,
    *,
    llm: str | LLM | None = None,
    embedder: str | Embedder | None = None,
    split: str = "train",
    limit: int | None = None,
    conversation_column: str | None = None,
    text_column: str | None = None,
    columns: Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ClioResult:
    """`result` with `new_rows` added: their facets, embeddings, base clusters (or -2, novel) and map points, and the
    tree's counts and privacy decisions recomputed over all rows.

    Args:
        result: a result of `annotate` (or of an earlier `assign`).
        new_rows: anything `load_source` reads; the same input columns as the result's rows.
        llm, embedder: default to the result's own specs; another model is refused (the tree's clusters and names
            would not describe its answers).

    Example:
        >>> week2 = clio_hf.assign(clio_hf.ClioResult.load("results/week1"), "chats-week2.jsonl")
        >>> (np.array(week2.data["request_cluster"]) == -2).sum()
        12
    """
    info = result.info
    facets = facets_from_info(info)
    clustered = [f for f in facets if f.clustered]
    if not facets:
        raise ValueError("assign: the result's run record names no facets; it cannot be extended.")
    config = ClioConfig.from_dict(info.get("config") or {})
    prefix = info.get("column_prefix") or ""
    if info.get("prompt_version") != PROMPT_VERSION:
        raise ValueError(f"assign: the result was made with prompt version {info.get('prompt_version')!r}, this clio_hf "
                         f"asks with {PROMPT_VERSION!r}; new answers would not match its tree. Run annotate again.")
    needs_llm = any(f.method == "llm" for f in facets)
    llm = _same_model("LLM", llm, info.get("llm"), load_llm) if needs_llm or llm is not None else None
    embedder = _same_model("embedder", embedder, info.get("embedder"), load_embedder) if clustered else None

    raw = load_source(new_rows, split=split, limit=limit)
    expected = info.get("input_columns") or [c for c in result.data.column_names if c not in C.added_columns(facets, prefix)]
    if sorted(raw.column_names) != sorted(expected):
        raise ValueError(f"assign: the new rows have the columns {raw.column_names}; the result's rows have {expected}.")
    workdir = Path(cache_dir or cache_root()) / "runs" / "assign" / Hasher.hash([raw._fingerprint, info.get("created_at"), PROMPT_VERSION])
    # kept on disk: a rerun skips this and finds the facet shards under the same stable cache folder
    conversations = materialise(workdir / "conversations", lambda: to_conversations(
        raw, llm, config=config.conversation, conversation_column=conversation_column, text_column=text_column,
        columns=columns, column_prefix=prefix))
    new = extract_facets(conversations, llm, facets=facets, config=config.facets, column_prefix=prefix)
    if embedder is not None:
        new = embed_facets(new, embedder, facets=facets, config=config.embed, column_prefix=prefix)
    novel = {}
    for facet in clustered:
        centroids, radii = base_centroids(result, facet, prefix)
        vectors, present = embedding_matrix(new, C.embedding_column(facet, prefix))
        labels = nearest_or_novel(vectors, present, centroids, radii)
        novel[facet.column] = int((labels == NOVEL).sum())
        new = new.add_column(C.cluster_column(facet, prefix), labels.tolist(), feature=datasets.Value("int64"))
        new = _add_map_points(new, result.data, facet, vectors, present, config, prefix)
    old_rows = len(result.data)
    duplicate = prefix + C.DUPLICATE_OF
    new = new.map(lambda b: {duplicate: [d + old_rows if d >= 0 else d for d in b[duplicate]]}, batched=True,
                  desc="Row numbers")  # duplicates point into the combined table
    data = datasets.concatenate_datasets([result.data, new.select_columns(result.data.column_names).cast(result.data.features)])
    hierarchy = refresh_tree(result.hierarchy, data, facets, config=config, info=info)
    # each node's size before this batch: what the Space's "what changed" view and `clio-hf diff` start from
    before = {(f, n): s for f, n, s in zip(result.hierarchy["facet"], result.hierarchy["node_id"], result.hierarchy["size"])}
    if SIZE_BEFORE in hierarchy.column_names:
        hierarchy = hierarchy.remove_columns(SIZE_BEFORE)
    hierarchy = hierarchy.add_column(SIZE_BEFORE, [before.get((f, n)) for f, n in zip(hierarchy["facet"], hierarchy["node_id"])],
                                     feature=datasets.Value("int64"))
    lineage = list(info.get("lineage") or [{"run": "annotate", "rows": old_rows, "created_at": info.get("created_at")}])
    lineage.append({"run": "assign", "rows": len(new), "novel": novel, "source": _describe(new_rows)})
    rows = dict(info.get("rows") or {}, input=len(data), data=len(data), hierarchy=len(hierarchy))
    logger.info("assign: %d new rows; novel per facet %s", len(new), novel)
    return ClioResult(data=data, hierarchy=hierarchy, info={**info, "rows": rows, "lineage": lineage})


def base_centroids(result: ClioResult, facet: Facet, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """(centroids, radii) of a facet's base clusters: stored in the hierarchy when the result has them, else computed
    from its rows' embeddings and clusters."""
    tree = result.hierarchy
    if CENTROID in tree.column_names:
        base = sorted((n, c, r) for f, n, lv, c, r in zip(tree["facet"], tree["node_id"], tree["level"], tree[CENTROID],
                                                            tree[NOVELTY_RADIUS]) if f == facet.column and lv == 0)
        if base and all(c is not None for _, c, _ in base):
            return np.asarray([c for _, c, _ in base], dtype=np.float32), np.asarray([r for _, _, r in base])
    needed = [C.embedding_column(facet, prefix), C.cluster_column(facet, prefix)]
    if any(c not in result.data.column_names for c in needed):
        raise ValueError(f"assign: the result has neither centroids nor the columns {needed} for facet {facet.name!r} "
                         "(a pushed result without embeddings); assign to the local result instead.")
    vectors, present = embedding_matrix(result.data, needed[0])
    return centroids_and_radii(vectors, present & _originals(result.data, prefix), np.asarray(result.data[needed[1]]))


def centroids_and_radii(vectors: np.ndarray, present: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each base cluster's normalised mean vector and novelty radius.

    The radius is the `NOVELTY_QUANTILE` of its members' leave-one-out distances: each member's cosine distance to the
    mean of the *other* members, which is how far a new row of the same kind lands (a member's distance to a mean it
    is part of is biased low, the more so the smaller the cluster). A cluster of fewer than `MIN_OWN_RADIUS` rows takes
    the quantile over all clusters' members instead.
    """
    members = present & (labels >= 0)
    k = int(labels[members].max()) + 1 if members.any() else 0
    own, vectors = labels[members], vectors[members].astype(np.float64)
    sums = np.zeros((k, vectors.shape[1]))
    np.add.at(sums, own, vectors)
    centroids = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    sizes = np.bincount(own, minlength=k)
    others = sums[own] - vectors  # the other members' sum, for each member
    alone = sizes[own] == 1
    distances = 1.0 - np.einsum("ij,ij->i", others, vectors) / np.maximum(np.linalg.norm(others, axis=1), 1e-12)
    pooled = float(np.quantile(distances[~alone], NOVELTY_QUANTILE)) if (~alone).any() else 1.0
    radii = np.array([np.quantile(distances[own == c], NOVELTY_QUANTILE) if sizes[c] >= MIN_OWN_RADIUS else pooled
                      for c in range(k)])
    return centroids, radii


def nearest_or_novel(vectors: np.ndarray, present: np.ndarray, centroids: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Each row's nearest base cluster, `NOVEL` beyond that cluster's radius, -1 without an embedding."""
    labels = np.full(len(vectors), -1, dtype=np.int64)
    if not present.any() or len(centroids) == 0:
        return labels
    similarity = vectors[present] @ centroids.T
    nearest = similarity.argmax(axis=1)
    distance = 1.0 - similarity[np.arange(len(nearest)), nearest]
    labels[present] = np.where(distance > radii[nearest], NOVEL, nearest)
    return labels


def with_centroids(hierarchy: datasets.Dataset, data: datasets.Dataset, facets: Sequence[Facet], prefix: str = "") -> datasets.Dataset:
    """The hierarchy plus `centroid` and `novelty_radius` on base nodes (null above), what `assign` needs."""
    centroid_of: dict[tuple[str, int], tuple[list[float], float]] = {}
    dimension = None
    for facet in (f for f in facets if f.clustered and C.embedding_column(f, prefix) in data.column_names):
        vectors, present = embedding_matrix(data, C.embedding_column(facet, prefix))
        dimension = vectors.shape[1]
        centroids, radii = centroids_and_radii(vectors, present & _originals(data, prefix),
                                               np.asarray(data[C.cluster_column(facet, prefix)]))
        for node, (centroid, radius) in enumerate(zip(centroids, radii)):
            centroid_of[(facet.column, node)] = (centroid.tolist(), float(radius))
    if dimension is None:
        return hierarchy
    keys = [(f, n) if lv == 0 else None for f, n, lv in zip(hierarchy["facet"], hierarchy["node_id"], hierarchy["level"])]
    found = [centroid_of.get(k) if k else None for k in keys]
    hierarchy = hierarchy.add_column(CENTROID, [f[0] if f else None for f in found],
                                     feature=datasets.List(datasets.Value("float32"), length=dimension))
    return hierarchy.add_column(NOVELTY_RADIUS, [f[1] if f else None for f in found], feature=datasets.Value("float64"))


def refresh_tree(hierarchy: datasets.Dataset, data: datasets.Dataset, facets: Sequence[Facet], *, config: ClioConfig,
                 info: dict) -> datasets.Dataset:
    """Sizes, numeric means, group and user counts and privacy decisions of every node, from `data`; ids, names,
    summaries, personal-data findings and audit ratings are kept (they depend on the names alone)."""
    prefix = info.get("column_prefix") or ""
    nodes = hierarchy.select_columns(["facet", "node_id", "level", "parent_id"]).to_list()
    numeric = [f for f in facets if f.numeric and C.mean_column(f) in hierarchy.column_names]
    sums: dict[tuple, list[float]] = {(n["facet"], n["node_id"]): [0.0] * (1 + 2 * len(numeric)) for n in nodes}
    values = {f.column: data[C.facet_column(f, prefix)] for f in numeric}
    for facet in dict.fromkeys(hierarchy["facet"]):
        for row, cluster in enumerate(data[prefix + f"{facet}_cluster"]):
            if cluster is None or cluster < 0 or (facet, cluster) not in sums:
                continue
            total = sums[(facet, cluster)]
            total[0] += 1
            for k, f in enumerate(numeric):
                value = values[f.column][row]
                if value is not None:
                    total[1 + 2 * k] += value
                    total[2 + 2 * k] += 1
    for node in sorted(nodes, key=lambda n: n["level"]):  # children before parents
        if node["parent_id"] is not None:
            parent, child = sums[(node["facet"], node["parent_id"])], sums[(node["facet"], node["node_id"])]
            sums[(node["facet"], node["parent_id"])] = [a + b for a, b in zip(parent, child)]
    keyed = [sums[(n["facet"], n["node_id"])] for n in nodes]
    tree = C.replace_column(hierarchy, "size", [int(s[0]) for s in keyed], datasets.Value("int64"))
    for k, f in enumerate(numeric):
        tree = C.replace_column(tree, C.mean_column(f), [s[1 + 2 * k] / s[2 + 2 * k] if s[2 + 2 * k] else None for s in keyed],
                        hierarchy.features[C.mean_column(f)])
    group_column = info.get("group_column")
    if group_column is not None and C.GROUP_COUNTS in tree.column_names:
        tree = count_groups(tree.remove_columns(C.GROUP_COUNTS), data, group_column=group_column, column_prefix=prefix)
    user_column = (info.get("privacy") or {}).get("user_column")
    if user_column is not None and NUM_USERS in tree.column_names:
        tree = count_users(tree, data, user_column=user_column, column_prefix=prefix)
    return mark_published(tree, config=config.privacy)


def _same_model(kind: str, given, recorded: str | None, load):
    """The result's model, loaded; a different one is refused by name."""
    if recorded is None:
        raise ValueError(f"assign: the result's run record names no {kind}; pass it as it was given to annotate.")
    given_id = given if isinstance(given, str) or given is None else given.model_id
    if given_id is not None and given_id != recorded:
        raise ValueError(f"assign: the result was made with the {kind} {recorded!r}; got {given_id!r}. New rows must be "
                         f"described by the same {kind} as the tree, or their clusters and names would not match.")
    return load(given if given is not None else recorded)


def _add_map_points(new: datasets.Dataset, old: datasets.Dataset, facet: Facet, vectors: np.ndarray, present: np.ndarray,
                    config: ClioConfig, prefix: str) -> datasets.Dataset:
    """New rows' points on the existing map: beside their nearest old rows (`projection.place_by_neighbours`)."""
    x_name, y_name = C.projection_columns(facet, prefix)
    if x_name not in old.column_names:
        return new
    old_vectors, old_present = embedding_matrix(old, C.embedding_column(facet, prefix))
    points = np.column_stack([np.asarray(old[x_name], dtype=np.float64), np.asarray(old[y_name], dtype=np.float64)])
    placed_on = old_present & np.isfinite(points).all(axis=1)
    coordinates = np.zeros((len(new), 2), dtype=np.float32)
    if present.any() and placed_on.any():
        coordinates[present] = place_by_neighbours(old_vectors[placed_on], points[placed_on], vectors[present], config.projection)
    for axis, name in enumerate((x_name, y_name)):
        new = new.add_column(name, pa.array(coordinates[:, axis], mask=~present), feature=datasets.Value("float32"))
    return new


def _originals(data: datasets.Dataset, prefix: str) -> np.ndarray:
    """Rows that are not a copy of an earlier row: a duplicate would sit at distance 0 from its twin and shrink radii."""
    column = prefix + C.DUPLICATE_OF
    return np.asarray(data[column]) < 0 if column in data.column_names else np.ones(len(data), dtype=bool)


def _describe(source) -> str:
    return f"dataset:{source._fingerprint}" if isinstance(source, datasets.Dataset) else f"local:{Path(str(source)).name}" \
        if Path(str(source)).exists() else str(source)
