"""New rows into an existing tree: `assign` places rows a result has not seen under its base clusters.

The new rows go through the stages `annotate` ran (conversations, the same facet prompts, the same embedder, with the
same per-shard cache, so a killed `assign` resumes). Each clustered facet's embedding then goes to its nearest base
cluster (cosine) unless it is novel, `<facet>_cluster = -2`, under no node: it lies farther from that cluster's
centroid than the cluster's own rows reach, its novelty radius (`centroids_and_radii`), or it belongs to a group of new
rows denser among themselves than among the tree's rows (`emerging`). Node ids and names never change; sizes, numeric means, group counts, user counts and privacy decisions are
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
from .backends import LLM, Embedder, load_embedder, load_llm
from .checkpoint import materialise
from .cluster import base_cluster_count, embedding_matrix, kmeans, nearest
from .config import ClioConfig
from .conversations import broadcast_to_duplicates, to_conversations, unique_rows
from .embed import embed_facets
from .extract import extract_facets
from .facets import Facet
from .groups import count_groups, node_counts
from .hierarchy import name_new_base_clusters
from .models import cache_root
from .privacy import NUM_USERS, PII, PRIVACY_SCORE, audit_privacy, count_users, mark_published, scan_personal_data
from .projection import place_by_neighbours
from .prompts import PROMPT_VERSION
from .result import ClioResult
from .sources import load_source, source_identity
from .summary import facets_from_info
from .trends import count_periods

logger = logging.getLogger(__name__)

NOVEL = C.NOVEL_CLUSTER
NOVELTY_QUANTILE = 0.99
"""A cluster reaches as far as this quantile of its members' cosine distances to its centroid."""
EMERGING_NEIGHBOURS = 5
EMERGING_QUANTILE = 0.95
"""A new row is emerging when its density ratio exceeds this quantile of the ratios of the tree's own rows."""
REFERENCE_ROWS = 50_000
"""`emerging` compares with at most this many seeded rows of each side (exact faiss search, so time stays bounded)."""
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
    rebuild_novel: bool = False,
) -> ClioResult:
    """`result` with `new_rows` added: their facets, embeddings, base clusters (or -2, novel) and map points, and the
    tree's counts and privacy decisions recomputed over all rows.

    Args:
        result: a result of `annotate` (or of an earlier `assign`).
        new_rows: anything `load_source` reads; the same input columns as the result's rows.
        llm, embedder: default to the result's own specs; another model is refused (the tree's clusters and names
            would not describe its answers).
        rebuild_novel: then cluster and name the novel rows as new base nodes (`add_novel_clusters`).

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
    unique, duplicate_of, originals = unique_rows(conversations, prefix)  # a copy is asked and embedded once
    unique = extract_facets(unique, llm, facets=facets, config=config.facets, column_prefix=prefix)
    if embedder is not None:
        unique = embed_facets(unique, embedder, facets=facets, config=config.embed, column_prefix=prefix)
    new = broadcast_to_duplicates(conversations, unique, duplicate_of, originals)
    novel = {}
    for facet in clustered:
        ids, centroids, radii = base_centroids(result, facet, prefix)
        vectors, present = embedding_matrix(new, C.embedding_column(facet, prefix))
        labels = nearest_or_novel(vectors, present, centroids, radii)
        labels = np.where(labels >= 0, ids[np.maximum(labels, 0)], labels)  # a position among the base nodes -> its id
        old_vectors, old_present = _old_embeddings(result.data, facet, prefix)
        if old_vectors is not None:
            first = present & (duplicate_of < 0)  # a copy has its first occurrence's vector, hence its label
            rising = emerging(vectors[first], old_vectors[old_present & _originals(result.data, prefix)], seed=config.cluster.seed)
            labels[np.flatnonzero(first)[rising]] = NOVEL
            copies = np.flatnonzero(present & (duplicate_of >= 0))
            labels[copies] = labels[duplicate_of[copies]]
        novel[facet.column] = int((labels == NOVEL).sum())
        new = new.add_column(C.cluster_column(facet, prefix), labels.tolist(), feature=datasets.Value("int64"))
        new = _add_map_points(new, result.data, facet, vectors, present, config, prefix, (old_vectors, old_present))
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
    lineage.append({"run": "assign", "rows": len(new), "novel": novel, "source": source_identity(new_rows)})
    rows = dict(info.get("rows") or {}, input=len(data), data=len(data), hierarchy=len(hierarchy))
    logger.info("assign: %d new rows; novel per facet %s", len(new), novel)
    updated = ClioResult(data=data, hierarchy=hierarchy, info={**info, "rows": rows, "lineage": lineage})
    return add_novel_clusters(updated, llm=llm, embedder=embedder) if rebuild_novel else updated


def add_novel_clusters(result: ClioResult, *, llm: str | LLM | None = None, embedder: str | Embedder | None = None) -> ClioResult:
    """`result` with its novel rows (`<facet>_cluster` -2) clustered and named as new base nodes, the rest of the tree
    as it was.

    Per clustered facet: the novel rows get k-means clusters (one per `rows_per_base_cluster` rows, as `annotate`
    counts them), numbered after the facet's largest node id and named against all base clusters
    (`hierarchy.name_new_base_clusters`); each goes under the level-1 node whose rows' mean embedding is nearest its
    own (no parent in a one-level tree), with its centroid and novelty radius, so a later `assign` can place rows in
    it. The new nodes' names get the personal-data scan and the audit the run's config asks for; sizes, counts and
    privacy decisions are recomputed for the whole tree. Existing ids, names and parents never change.
    """
    info = result.info
    facets = facets_from_info(info)
    config = ClioConfig.from_dict(info.get("config") or {})
    prefix = info.get("column_prefix") or ""
    llm = _same_model("LLM", llm, info.get("llm"), load_llm) if not hasattr(llm, "generate") else llm
    embedder = _same_model("embedder", embedder, info.get("embedder"), load_embedder) if not hasattr(embedder, "encode") else embedder
    data, tree, added = result.data, result.hierarchy, {}
    for facet in (f for f in facets if f.clustered):
        column = C.cluster_column(facet, prefix)
        labels = np.asarray(data[column], dtype=np.int64)
        vectors, present = embedding_matrix(data, C.embedding_column(facet, prefix))
        novel = present & (labels == NOVEL)
        fit = novel & _originals(data, prefix)
        if fit.sum() < 2:
            continue
        k = base_cluster_count(int(fit.sum()), config.cluster)
        local = nearest(vectors[novel], kmeans(vectors[fit], k, niter=config.cluster.niter, seed=config.cluster.seed))
        _, local = np.unique(local, return_inverse=True)  # no empty clusters
        k = int(local.max()) + 1
        nodes = [n for n in tree.select_columns(["facet", "node_id", "level"]).to_list() if n["facet"] == facet.column]
        if not nodes:
            continue  # no tree to attach to (a facet without embeddings at annotate time)
        base_ids = sorted(n["node_id"] for n in nodes if n["level"] == 0)
        num_base, first_id = len(base_ids), max(n["node_id"] for n in nodes) + 1
        # contiguous ids while naming: the tree's base clusters by position (an earlier rebuild's come after the
        # parents' ids), then the new ones
        position = np.full(first_id, -1)
        position[base_ids] = np.arange(num_base)
        naming = np.where(labels >= 0, position[np.clip(labels, 0, first_id - 1)], labels)
        naming[novel] = num_base + local
        rows = name_new_base_clusters(_with_column(data, column, naming), llm, embedder, facet, range(num_base, num_base + k),
                                      config=config.hierarchy, column_prefix=prefix, min_rows=config.privacy.min_rows)
        centroids, radii = centroids_and_radii(vectors[novel], fit[novel], local)
        parents = _nearest_parents(tree, facet, centroids)
        for row in rows:
            j = row["node_id"] - num_base
            row.update(node_id=first_id + j, parent_id=parents[j], size_before=None,
                       **({CENTROID: centroids[j].tolist(), NOVELTY_RADIUS: float(radii[j])} if CENTROID in tree.column_names else {}))
        new_nodes = datasets.Dataset.from_list([{name: row.get(name) for name in tree.column_names} for row in rows],
                                               features=tree.features)
        privacy = config.privacy
        if PII in tree.column_names:
            new_nodes = scan_personal_data(new_nodes, config=privacy)
        if PRIVACY_SCORE in tree.column_names and privacy.audit:
            new_nodes = audit_privacy(new_nodes, llm, config=privacy)
        tree = datasets.concatenate_datasets([tree, new_nodes.select_columns(tree.column_names).cast(tree.features)])
        labels[novel] = first_id + local
        data = _with_column(data, column, labels)
        added[facet.column] = k
    if not added:
        return result
    tree = refresh_tree(tree, data, facets, config=config, info=info)
    lineage = list(info.get("lineage") or []) + [{"run": "rebuild-novel", "new_nodes": added}]
    logger.info("add_novel_clusters: new base nodes per facet %s", added)
    return ClioResult(data=data, hierarchy=tree, info={**info, "lineage": lineage, "rows": dict(info.get("rows") or {}, hierarchy=len(tree))})


def base_centroids(result: ClioResult, facet: Facet, prefix: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(node ids, centroids, radii) of a facet's base clusters, in id order: stored in the hierarchy when the result
    has them, else computed from its rows' embeddings and clusters. The ids run 0..k-1 after `annotate`; nodes that
    `add_novel_clusters` added come after the parents' ids."""
    stored = CENTROID in result.hierarchy.column_names
    columns = ["facet", "node_id", "level", *([CENTROID, NOVELTY_RADIUS] if stored else [])]
    base = sorted((n for n in result.hierarchy.select_columns(columns).to_list() if n["facet"] == facet.column and n["level"] == 0),
                  key=lambda n: n["node_id"])
    ids = np.asarray([n["node_id"] for n in base], dtype=np.int64)
    if stored and base and all(n[CENTROID] is not None for n in base):
        return ids, np.asarray([n[CENTROID] for n in base], dtype=np.float32), np.asarray([n[NOVELTY_RADIUS] for n in base])
    needed = [C.embedding_column(facet, prefix), C.cluster_column(facet, prefix)]
    if any(c not in result.data.column_names for c in needed):
        raise ValueError(f"assign: the result has neither centroids nor the columns {needed} for facet {facet.name!r} "
                         "(a pushed result without embeddings); assign to the local result instead.")
    vectors, present = embedding_matrix(result.data, needed[0])
    labels = np.asarray(result.data[needed[1]])
    position = np.full(max(int(labels.max()), int(ids.max(initial=-1))) + 2, -1)
    position[ids] = np.arange(len(ids))
    centroids, radii = centroids_and_radii(vectors, present & _originals(result.data, prefix),
                                           np.where(labels >= 0, position[np.maximum(labels, 0)], -1))
    return ids, centroids, radii


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


def emerging(new: np.ndarray, old: np.ndarray, *, neighbours: int = EMERGING_NEIGHBOURS,
             quantile: float = EMERGING_QUANTILE, seed: int = 0) -> np.ndarray:
    """Which `new` rows (unit vectors, no two copies of one row) form a group the tree has no room for.

    A row's density ratio is the distance to its `neighbours`-th nearest old row over the distance to its
    `neighbours`-th nearest other new row: near 1 where the batch is like the tree, large inside a topic the tree never
    saw, however close that topic sits to a cluster's centroid (which a radius cannot tell). The threshold comes from
    the tree's own rows, split three seeded times into a pseudo-batch of the same relative size and the rest: a row is
    emerging above the `quantile` of their ratios, so about 1 - `quantile` of a batch like the tree is.
    """
    rising = np.zeros(len(new), dtype=bool)
    rng = np.random.default_rng(seed)
    old = _sample(old, REFERENCE_ROWS, rng)
    reference = _sample(np.arange(len(new)), min(len(old), REFERENCE_ROWS), rng)
    if len(reference) <= neighbours or len(old) < 4 * (neighbours + 1):
        return rising  # too few rows on either side to estimate a density
    ratio = _density_ratio(new, new[reference], old, neighbours, in_batch=reference)
    pseudo_size = round(len(old) * len(reference) / (len(reference) + len(old)))
    if pseudo_size <= neighbours:
        return rising
    null = []
    for _ in range(3):
        order = rng.permutation(len(old))
        pseudo, rest = old[order[:pseudo_size]], old[order[pseudo_size:]]
        null.append(_density_ratio(pseudo, pseudo, rest, neighbours, in_batch=np.arange(pseudo_size)))
    return ratio > np.quantile(np.concatenate(null), quantile)


def _density_ratio(rows: np.ndarray, batch: np.ndarray, old: np.ndarray, neighbours: int, *, in_batch: np.ndarray) -> np.ndarray:
    """Each row's k-th nearest distance to `old` over its k-th nearest distance to the other `batch` rows (`rows[i]` is
    `batch[j]` where `in_batch[j] == i`)."""
    to_old = 1.0 - _kth_similarity(rows, old, neighbours)
    itself = np.zeros(len(rows), dtype=np.int64)
    itself[in_batch] = 1  # a row of the batch finds itself first
    nearest = _top_similarities(rows, batch, neighbours + 1)
    to_batch = 1.0 - nearest[np.arange(len(rows)), neighbours - 1 + itself]
    return to_old / np.maximum(to_batch, 1e-6)


def _kth_similarity(queries: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    return _top_similarities(queries, points, k)[:, k - 1]


def _top_similarities(queries: np.ndarray, points: np.ndarray, k: int) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatIP(points.shape[1])
    index.add(np.ascontiguousarray(points, dtype=np.float32))
    similarities, _ = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return similarities


def _sample(rows: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) <= size else rows[np.sort(rng.choice(len(rows), size, replace=False))]


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
    """Sizes, numeric means, group, user and time counts and privacy decisions of every node, from `data`; ids, names,
    summaries, personal-data findings and audit ratings are kept (they depend on the names alone)."""
    prefix = info.get("column_prefix") or ""
    sizes = node_counts(hierarchy, data, [None] * len(data), prefix, "refresh_tree")
    tree = C.replace_column(hierarchy, "size", [sum(c.values()) for c in sizes], datasets.Value("int64"))
    for f in (f for f in facets if f.numeric and C.mean_column(f) in hierarchy.column_names):
        counts = node_counts(hierarchy, data, data[C.facet_column(f, prefix)], prefix, "refresh_tree")
        means = [_mean({v: n for v, n in c.items() if v is not None}) for c in counts]
        tree = C.replace_column(tree, C.mean_column(f), means, hierarchy.features[C.mean_column(f)])
    group_column = info.get("group_column")
    if group_column is not None and C.GROUP_COUNTS in tree.column_names:
        tree = count_groups(tree.remove_columns(C.GROUP_COUNTS), data, group_column=group_column, column_prefix=prefix)
    user_column = (info.get("privacy") or {}).get("user_column")
    if user_column is not None and NUM_USERS in tree.column_names:
        tree = count_users(tree, data, user_column=user_column, column_prefix=prefix)
    time_column = info.get("time_column")
    if time_column is not None and C.TIME_COUNTS in tree.column_names:
        tree, _ = count_periods(tree.remove_columns(C.TIME_COUNTS), data, time_column=time_column, column_prefix=prefix,
                                period=info.get("time_period"))
    return mark_published(tree, config=config.privacy)


def _mean(counts: dict[float, int]) -> float | None:
    return sum(value * n for value, n in counts.items()) / sum(counts.values()) if counts else None


def _nearest_parents(tree: datasets.Dataset, facet: Facet, centroids: np.ndarray) -> list[int | None]:
    """For each centroid, the level-1 node of `facet` whose rows' mean embedding (its base children's centroids,
    weighted by size) is nearest; None for all where the tree has one level."""
    nodes = [n for n in tree.select_columns(["facet", "node_id", "level", "parent_id", "size", CENTROID]).to_list()
             if n["facet"] == facet.column]
    parents = sorted({n["parent_id"] for n in nodes if n["level"] == 0 and n["parent_id"] is not None})
    if not parents or any(n[CENTROID] is None for n in nodes if n["level"] == 0):
        return [None] * len(centroids)
    sums = {p: np.zeros(centroids.shape[1]) for p in parents}
    for n in nodes:
        if n["level"] == 0 and n["parent_id"] is not None:
            sums[n["parent_id"]] += n["size"] * np.asarray(n[CENTROID], dtype=np.float64)
    means = np.stack([sums[p] / max(np.linalg.norm(sums[p]), 1e-12) for p in parents])
    return [parents[i] for i in (centroids @ means.T).argmax(axis=1)]


def _with_column(ds: datasets.Dataset, name: str, values: np.ndarray) -> datasets.Dataset:
    """`ds` with the int64 column `name` replaced, in its place."""
    return C.replace_column(ds, name, values.tolist(), datasets.Value("int64")).select_columns(ds.column_names)


def _same_model(kind: str, given, recorded: str | None, load):
    """The result's model, loaded; a different one is refused by name."""
    if recorded is None:
        raise ValueError(f"assign: the result's run record names no {kind}; pass it as it was given to annotate.")
    given_id = given if isinstance(given, str) or given is None else given.model_id
    if given_id is not None and given_id != recorded:
        raise ValueError(f"assign: the result was made with the {kind} {recorded!r}; got {given_id!r}. New rows must be "
                         f"described by the same {kind} as the tree, or their clusters and names would not match.")
    return load(given if given is not None else recorded)


def _old_embeddings(data: datasets.Dataset, facet: Facet, prefix: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The result's own rows' embeddings of `facet`; (None, None) where a pushed result left them out."""
    column = C.embedding_column(facet, prefix)
    if column not in data.column_names:
        logger.info("assign: the result has no %s; novelty by the clusters' radii alone", column)
        return None, None
    return embedding_matrix(data, column)


def _add_map_points(new: datasets.Dataset, old: datasets.Dataset, facet: Facet, vectors: np.ndarray, present: np.ndarray,
                    config: ClioConfig, prefix: str, old_embeddings: tuple) -> datasets.Dataset:
    """New rows' points on the existing map: beside their nearest old rows (`projection.place_by_neighbours`)."""
    x_name, y_name = C.projection_columns(facet, prefix)
    old_vectors, old_present = old_embeddings
    if x_name not in old.column_names or old_vectors is None:
        return new
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
