"""Stage 5: `build_hierarchy` names the base clusters and builds the multi-level tree above them.

Per clustered facet. Each base cluster gets name candidates: the LLM's proposals from a sample of its values and the
nearest values outside it (after the Clio paper; greedy plus seeded samples), its keyphrases (class-based TF-IDF terms
that at least `min_rows` rows of the facet contain) and a value that many rows share word for word. Every candidate
is scored by how much closer it sits to the cluster's members than to the nearest other clusters' members, minus a
penalty for filler, and the best one wins; its score is kept (`name_score`). Parents are found by Ward's
agglomerative clustering of their children's mean embeddings, weighted by rows, level by level, with level sizes
shrinking geometrically; the top level takes the finest cut (up to `max_top_nodes` nodes) that separates about as well
as the best. Each parent is then named the same way from the LLM's proposals given its children's names and from the
keyphrases of all the rows under it. On the quality benchmark this grouping beat the LLM's proposed categories and
votes (docs/quality.md). A node the LLM could not name is named by its
keyphrases, marked `name_source="fallback"`: never a placeholder, never one member's words.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets
import numpy as np
from datasets.utils import tqdm  # honours datasets.disable_progress_bars()

from . import columns as C
from . import layout as L
from . import prompts
from .backends import LLM, Embedder
from .cluster import embedding_matrix
from .config import HierarchyConfig
from .embed import normalise
from .facets import MAIN_FACETS, Facet
from .keyphrases import Keyphrases, phrase_name, phrase_summary

logger = logging.getLogger(__name__)

# Keys cached trees: bump when a change to this module changes the names or the shape of a tree.
NAMING_VERSION = 6

# Where a node's name came from: the LLM; a keyphrase or a shared value that outscored the LLM's; a keyphrase because
# the LLM gave nothing usable.
NAME_SOURCES = ("llm", "keyphrase", "shared_value", "fallback")

_SILHOUETTE_TOLERANCE = 0.05

# Keyphrases per node: shown to the LLM as a hint and used for keyphrase name candidates. A keyphrase must cover
# `_MIN_TERM_SHARE` of the node's rows: in a big mixed parent, the words of a few similar rows are not its subject.
_TERMS = 5
_MIN_TERM_SHARE = 0.1

# Items named per chunk: the transformers backend keeps 32 prompt heads, so a chunk's heads are all still cached when
# its samples run.
_NAMING_CHUNK = 16


@dataclass
class _Node:
    level: int
    name: str
    summary: str
    name_source: str
    size: int
    sums: dict[str, tuple[float, int]]
    children: list[int] = field(default_factory=list)
    parent: int | None = None
    node_id: int = -1
    vector_sum: np.ndarray | None = None  # sum of its rows' embeddings: centroids and name scores at every level
    name_score: float | None = None
    keyphrases: list[str] = field(default_factory=list)  # its top terms, each held by >= min_rows rows


def build_hierarchy(
    ds: datasets.Dataset,
    llm: LLM,
    embedder: Embedder,
    *,
    facets: Sequence[Facet] = MAIN_FACETS,
    config: HierarchyConfig = HierarchyConfig(),
    column_prefix: str = "",
    min_rows: int = 5,
) -> datasets.Dataset:
    """The companion dataset: one row per node of every clustered facet's tree (columns in the contract).

    Args:
        ds: rows with `<facet>`, `<facet>_embedding` and `<facet>_cluster` columns (see `cluster_facets`).
        llm: names clusters and assigns parents.
        embedder: embeds names to pick among samples, for neighbourhoods and for name dedup.
        facets: the facets of the run; numeric ones give `<facet>_mean` columns.
        min_rows: a keyphrase or a shared value may become a name only when at least this many rows hold it (the
            privacy gates' `min_rows`).
    """
    clustered = [f for f in facets if f.clustered]
    needed = [c for f in clustered for c in (C.facet_column(f, column_prefix), C.embedding_column(f, column_prefix), C.cluster_column(f, column_prefix))]
    C.require_columns(ds, needed, "build_hierarchy")
    numeric = [f for f in facets if f.numeric and C.facet_column(f, column_prefix) in ds.column_names]
    features = C.HIERARCHY_FEATURES.copy()
    for facet in numeric:
        features[C.mean_column(facet)] = datasets.Value("float64")
    rows = []
    for facet in clustered:
        tree = _FacetTree(ds, llm, embedder, facet, numeric, config, column_prefix, min_rows)
        rows += tree.rows()
        logger.info("build_hierarchy: %s -> %d nodes, %d fallback names", facet.name, len(tree.nodes), tree.fallbacks)
    return datasets.Dataset.from_list(rows, features=features) if rows else _empty(features)


def name_new_base_clusters(
    ds: datasets.Dataset,
    llm: LLM,
    embedder: Embedder,
    facet: Facet,
    new_clusters: Sequence[int],
    *,
    config: HierarchyConfig = HierarchyConfig(),
    column_prefix: str = "",
    min_rows: int = 5,
) -> list[dict]:
    """Hierarchy rows (level 0, no parent) naming the base clusters `new_clusters` of `ds`, whose other base clusters
    are already named: each name is chosen against the nearest of all base clusters, as `build_hierarchy` chooses
    it. For `assign(rebuild_novel=True)`, which gives the novel rows their own clusters."""
    tree = _FacetTree(ds, llm, embedder, facet, [], config, column_prefix, min_rows, only=list(new_clusters))
    wanted = set(new_clusters)
    return [row for row in tree.rows() if row["node_id"] in wanted]


def _empty(features: datasets.Features) -> datasets.Dataset:
    return datasets.Dataset.from_dict({name: [] for name in features}, features=features)


def level_targets(num_base: int, config: HierarchyConfig) -> list[int]:
    """Node counts of the levels above the base: geometric, ending at most at `max_top_nodes`."""
    if num_base < 3:
        return []
    top = min(config.max_top_nodes, max(1, math.ceil(num_base / config.branching)))
    levels = max(1, math.ceil(math.log(num_base / top) / math.log(config.branching) - 1e-9))
    levels = min(levels, config.max_levels)
    targets, previous = [], num_base
    for level in range(1, levels + 1):
        target = max(top, round(num_base * (top / num_base) ** (level / levels)))
        target = min(target, previous - 1)
        if target < 1:
            break
        targets.append(target)
        previous = target
    return targets


class _FacetTree:
    def __init__(self, ds, llm, embedder, facet: Facet, numeric: Sequence[Facet], config: HierarchyConfig, prefix: str,
                 min_rows: int, only: list[int] | None = None):
        self.llm, self.embedder, self.facet, self.config, self.min_rows = llm, embedder, facet, config, min_rows
        self.forbidden = prompts.prompt_examples(facet)
        self.fallbacks = 0
        # `[:]` reads a column in one pass; indexing a `datasets` Column row by row costs a table slice per row
        labels = np.asarray(ds[C.cluster_column(facet, prefix)][:], dtype=np.int64)
        duplicates = ds[prefix + C.DUPLICATE_OF][:] if prefix + C.DUPLICATE_OF in ds.column_names else None
        originals = np.asarray(duplicates) < 0 if duplicates is not None else np.ones(len(ds), dtype=bool)
        values = ds[C.facet_column(facet, prefix)][:]
        vectors, _ = embedding_matrix(ds, C.embedding_column(facet, prefix))
        self.numeric_values = {f.column: ds[C.facet_column(f, prefix)][:] for f in numeric}

        # Distinct answers of original rows: what naming prompts show and where contrastive neighbours come from.
        self.answers: list[str] = []
        answer_rows: list[int] = []
        seen: dict[str, int] = {}
        answer_of_row = np.full(len(ds), -1)
        for row in np.flatnonzero((labels >= 0) & originals):
            answer = prompts.strip_prefill(values[row], facet.prefill)
            if answer not in seen:
                seen[answer] = len(self.answers)
                self.answers.append(answer)
                answer_rows.append(row)
            answer_of_row[row] = seen[answer]
        if len(answer_rows) == len(vectors):  # every row its own answer (rows ascend): no second copy of the matrix
            self.answer_vectors = vectors
        else:
            self.answer_vectors = vectors[answer_rows] if answer_rows else np.zeros((0, vectors.shape[1]), np.float32)
        self.answer_labels = labels[answer_rows]
        self.rows_per_answer = np.bincount(answer_of_row[answer_of_row >= 0], minlength=len(self.answers))
        self.keyphrases = Keyphrases(self.answers, self.rows_per_answer, min_rows=min_rows)
        self.nodes: list[_Node] = []
        self._build_base(labels, vectors, only)
        if only is None:
            self._build_levels()

    # ------------------------------------------------------------------------------------------------ base level
    def _build_base(self, labels: np.ndarray, vectors: np.ndarray, only: list[int] | None = None) -> None:
        """Makes every base node and names those in `only` (default: all), against all of them."""
        num_base = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0
        named = list(range(num_base)) if only is None else only
        insides = []
        rows_of, members_of = _group_by_label(labels, num_base), _group_by_label(self.answer_labels, num_base)
        for cluster in range(num_base):
            rows = rows_of[cluster]
            sums = {col: _sum_count(vals[r] for r in rows) for col, vals in self.numeric_values.items()}
            self.nodes.append(_Node(0, "", "", "", len(rows), sums, vector_sum=vectors[rows].sum(axis=0), node_id=cluster))
            rng = self._rng(0, cluster)
            insides.append([self.answers[i] for i in rng.permutation(members_of[cluster])[: self.config.inside_samples]])
        centroids = normalise(self._means(list(range(num_base))))
        outsides = [[self.answers[i] for i in nearest_answers]
                    for nearest_answers in _nearest_outside(self.answer_vectors, members_of, centroids, self.config.outside_samples)]

        terms = self.keyphrases.top(self.answer_labels, num_base, count=_TERMS, min_share=_MIN_TERM_SHARE)
        for cluster in range(num_base):
            self.nodes[cluster].keyphrases = list(terms[cluster])

        def prompt(cluster: int):
            return prompts.cluster_name_prompt(self.facet, insides[cluster], outsides[cluster], terms[cluster])

        proposals = [[(name, None if summary and prompts.copies_member(summary, shown) else summary)
                      for name, summary in answers if not prompts.copies_member(name, shown)]
                     for answers, shown in zip(self._sample_names(named, prompt, level=0),
                                               (insides[c] + outsides[c] for c in named))]
        shared = [self._shared_value(members_of[cluster]) for cluster in named]
        self._choose_names(named, proposals, [terms[c] for c in named], extra=shared, against=list(range(num_base)))

    def _shared_value(self, members: np.ndarray) -> list[tuple[str, str | None, str]]:
        """The cluster's most common value as a name candidate, only when `min_rows` rows share it word for word."""
        if not len(members):
            return []
        top = members[int(np.argmax(self.rows_per_answer[members]))]
        name = prompts.clean_name(self.answers[top], self.forbidden) if self.rows_per_answer[top] >= self.min_rows else None
        return [(name, None, "shared_value")] if name and len(name.split()) <= 10 else []

    # ------------------------------------------------------------------------------------------------ upper levels
    def _build_levels(self) -> None:
        current = list(range(len(self.nodes)))
        self.node_of_base = np.arange(len(current))  # each base cluster's ancestor at the level being built
        targets = level_targets(len(current), self.config)
        for level, target in enumerate(targets, start=1):
            target = min(target, len(current) - 1)  # an earlier level may have shrunk more than planned
            if target < 1:
                break
            means = self._means(current)
            merges = _ward_tree(means, np.array([self.nodes[i].size for i in current]))
            if level == len(targets):  # the top: as many nodes as the data separates best, within max_top_nodes
                groups = self._best_top_grouping(normalise(means), merges)
            else:
                groups = _cut(merges, target)
            current = self._build_level(current, level, groups)

    def _best_top_grouping(self, centroids: np.ndarray, merges: list[tuple[int, int]]) -> np.ndarray:
        """Of the cuts of the merge tree into k = 2..max_top_nodes groups, the finest that separates about as well as the
        best (silhouette, cosine, within `_SILHOUETTE_TOLERANCE`)."""
        from sklearn.metrics import silhouette_score

        scored = []
        for k in range(2, min(self.config.max_top_nodes, len(centroids) - 1) + 1):
            groups = _cut(merges, k)
            if 2 <= len(set(groups.tolist())) < len(centroids):
                scored.append((float(silhouette_score(centroids, groups, metric="cosine")), k, groups))
        if not scored:
            return np.zeros(len(centroids), dtype=np.int64)
        # Silhouettes this close are noise at a few dozen centroids; of groupings that separate equally well, the
        # finest tells a reader the most (measured on the labelled corpora: docs/quality.md).
        best = max(score for score, _, _ in scored)
        return max((s for s in scored if s[0] >= best - _SILHOUETTE_TOLERANCE), key=lambda s: s[1])[2]

    def _build_level(self, children: list[int], level: int, groups: np.ndarray) -> list[int]:
        """Makes the parents of `children` (child j goes under parent `groups[j]`), then names each parent."""
        parents = [[children[j] for j in np.flatnonzero(groups == g)] for g in sorted(set(groups.tolist()))]
        ids = []
        for members in parents:
            kids = [self.nodes[m] for m in members]
            sums = {col: (sum(k.sums[col][0] for k in kids), sum(k.sums[col][1] for k in kids)) for col in self.numeric_values}
            self.nodes.append(_Node(level, "", "", "", sum(k.size for k in kids), sums, children=list(members),
                                    vector_sum=np.sum([k.vector_sum for k in kids], axis=0)))
            ids.append(len(self.nodes) - 1)
            for m in members:
                self.nodes[m].parent = ids[-1]
        self.node_of_base = np.array([self.nodes[n].parent for n in self.node_of_base], dtype=np.int64)
        position = np.full(len(self.nodes), -1)
        position[ids] = np.arange(len(ids))

        terms = self.keyphrases.top(position[self.node_of_base][self.answer_labels], len(ids), count=_TERMS,
                                    min_share=_MIN_TERM_SHARE)
        for p, node_terms in zip(ids, terms, strict=True):
            self.nodes[p].keyphrases = list(node_terms)

        def prompt(p: int):
            return prompts.rename_parent_prompt(self.facet, [self.nodes[m].name for m in self.nodes[p].children][:10],
                                                terms[ids.index(p)])

        multi = [p for p in ids if len(self.nodes[p].children) > 1]  # a parent of one child copies it: no drift
        proposals = dict(zip(multi, self._sample_names(multi, prompt, level)))
        self._choose_names(ids, [proposals.get(p, []) for p in ids], terms)
        return ids

    # ------------------------------------------------------------------------------------------------ choosing names
    def _choose_names(self, ids: list[int], proposals: list[list[tuple[str, str | None]]], terms: list[list[str]],
                      extra: Sequence[list] | None = None, against: list[int] | None = None) -> None:
        """Names the nodes `ids` of one level: each candidate is scored by how much closer it sits to the node's own
        members than to the members of the nearest sibling nodes (among `against`, default `ids`), minus a penalty
        for filler; the best wins.

        Candidates: the LLM's proposals, names made of the node's keyphrases `terms[p]` (terms that `min_rows` rows
        of the facet contain) and `extra` (a value enough rows share).
        """
        candidates = []
        for p, node_id in enumerate(ids):
            node = self.nodes[node_id]
            if len(node.children) == 1:
                candidates.append([])
                continue
            own = [(name, summary, "llm") for name, summary in proposals[p]] + list(extra[p] if extra else [])
            own += [(phrase_name(terms[p][:n]), None, "keyphrase") for n in range(1, self.config.keyphrase_terms + 1)
                    if len(terms[p]) >= n and not prompts.is_filler(phrase_name(terms[p][:n]))]
            candidates.append(list(dict.fromkeys(own)))
        texts = sorted({text for own in candidates for name, summary, _ in own for text in (name, summary) if text})
        vector_of = dict(zip(texts, normalise(self.embedder.encode(texts)))) if texts else {}
        means = self._means(ids)
        siblings = ids if against is None else against
        sibling_means = means if against is None else self._means(siblings)
        similar = normalise(means) @ normalise(sibling_means).T
        position = {node: j for j, node in enumerate(siblings)}
        for p, node in enumerate(ids):
            if node in position:
                similar[p, position[node]] = -np.inf  # a node is not its own sibling
        neighbours = np.argsort(-similar, axis=1, kind="stable")[:, : min(self.config.contrast_neighbors, len(siblings) - 1)]

        def contrast(text: str, p: int) -> float:
            v = vector_of[text]
            return float(v @ means[p]) - (float(np.max(sibling_means[neighbours[p]] @ v)) if len(neighbours[p]) else 0.0)

        chosen: list[np.ndarray] = []
        for p in sorted(range(len(ids)), key=lambda p: (-self.nodes[ids[p]].size, p)):  # big nodes pick first
            node = self.nodes[ids[p]]
            if len(node.children) == 1:
                kid = self.nodes[node.children[0]]
                node.name, node.summary, node.name_source, node.name_score = kid.name, kid.summary, kid.name_source, kid.name_score
                continue
            scored = []
            for rank, (name, summary, source) in enumerate(candidates[p]):
                v = vector_of[name]
                score = contrast(name, p) - (self.config.filler_penalty if prompts.is_filler(name) else 0.0)
                repeats = any(float(v @ c) >= 0.9 for c in chosen)  # a sibling already carries (nearly) this name
                scored.append((repeats, -score, rank, name, summary, source, v))
            if scored:
                _, negative, _, name, summary, source, v = min(scored, key=lambda s: s[:3])
                node.name, node.name_score, node.name_source = name, round(-negative, 4), source
                # The winner's own summary; else whichever LLM summary fits the node, measured the same way.
                fit, best_summary = max(((contrast(s, p), s) for *_, s, _, _ in scored if s), default=(0.0, None))
                node.summary = summary or (best_summary if fit > 0 else self._terms_summary(terms[p], node))
                if not proposals[p] and source != "shared_value":
                    node.name_source = "fallback"  # the LLM gave nothing usable
                chosen.append(v)
            else:
                node.name, node.summary, node.name_source = self._last_resort(ids[p])
            if node.name_source == "fallback":
                self.fallbacks += 1

    def _terms_summary(self, terms: list[str], node: _Node) -> str:
        if node.level > 0:
            return _children_summary([self.nodes[k] for k in node.children])
        return phrase_summary(terms, node.size) if terms else f"{node.size} rows."

    def _last_resort(self, node_id: int) -> tuple[str, str, str]:
        """No LLM name and no term that two of the node's rows share: the node's most distinctive terms that `min_rows`
        rows of the facet contain, or failing that any of its terms (such a node is too small or too scattered for
        the privacy gates to publish as it stands)."""
        node = self.nodes[node_id]
        mine = (self.node_of_base[self.answer_labels] if node.level else self.answer_labels) == node_id
        groups = np.where(mine, 0, -1)
        terms = (self.keyphrases.top(groups, 1, count=3, min_group_rows=1)[0]
                 or self.keyphrases.top(groups, 1, count=3, min_group_rows=1, any_term=True)[0])
        if terms:
            return phrase_name(terms), self._terms_summary(terms, node), "fallback"
        return f"{self.facet.name} values without words in common", f"{node.size} rows.", "fallback"

    # ------------------------------------------------------------------------------------------------ helpers
    def _sample_names(self, items: list[int], make_prompt, level: int) -> list[list[tuple[str, str | None]]]:
        """Every usable (name, summary) the LLM proposes per item: greedy first, then `name_samples - 1` seeded samples.

        Every sample of an item sees the same prompt (the seed alone varies it), so a backend with prefix reuse
        prefills each item's material once. Items go in chunks small enough for that reuse to survive between the
        greedy call and the sampled call; within a call, decoding steps, not prompts, cost the time.
        """
        answers: list[list[tuple[str, str | None]]] = [[] for _ in items]
        slots = list(enumerate(items))
        what = "base clusters" if level == 0 else f"level {level} parents"
        progress = tqdm(total=len(slots), desc=f"Naming {self.facet.name} {what}", unit="cluster", disable=not slots)
        for start in range(0, len(slots), _NAMING_CHUNK):
            chunk = slots[start : start + _NAMING_CHUNK]
            chats = {item: make_prompt(item) for _, item in chunk}
            greedy = [(slot, item, 0) for slot, item in chunk]
            sampled = [(slot, item, sample) for sample in range(1, self.config.name_samples) for slot, item in chunk]
            for batch in (greedy, sampled):
                if not batch:
                    continue
                temperature = self.config.sample_temperature if batch is sampled else 0.0
                outputs = self.llm.generate(
                    [chats[item] for _, item, _ in batch],
                    max_new_tokens=self.config.name_max_new_tokens,
                    stop=prompts.NAME_STOP,
                    temperature=temperature,
                    seeds=[_seed(self.facet.column, level, item, sample) for _, item, sample in batch] if temperature else None,
                )
                for (slot, _, _), text in zip(batch, outputs):
                    parsed = prompts.parse_name_and_summary(text, self.forbidden)
                    if parsed and parsed not in answers[slot]:
                        answers[slot].append(parsed)
            progress.update(len(chunk))
        progress.close()
        return answers

    def _means(self, ids: list[int]) -> np.ndarray:
        """The nodes' rows' mean embeddings, (len(ids), d): Ward's input, and a name's mean similarity to the rows."""
        if not ids:
            return np.zeros((0, self.answer_vectors.shape[1]), np.float32)
        return np.stack([self.nodes[i].vector_sum / max(self.nodes[i].size, 1) for i in ids])

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, zlib.crc32(self.facet.column.encode()), *key])

    def rows(self) -> list[dict]:
        next_id = sum(1 for n in self.nodes if n.level == 0)
        for level in sorted({n.level for n in self.nodes} - {0}):
            for node in sorted((n for n in self.nodes if n.level == level), key=lambda n: (-n.size, n.name)):
                node.node_id, next_id = next_id, next_id + 1
        out = []
        for node in sorted(self.nodes, key=lambda n: n.node_id):
            row = {
                "facet": self.facet.column, "node_id": node.node_id, "level": node.level,
                "parent_id": None if node.parent is None else self.nodes[node.parent].node_id,
                "name": node.name, "summary": node.summary, "name_source": node.name_source, "size": node.size,
                "name_score": node.name_score, "keyphrases": node.keyphrases,
            }
            for col, (total, count) in node.sums.items():
                row[L.mean_column(col)] = total / count if count else None
            out.append(row)
        return out


def _ward_tree(means: np.ndarray, sizes: np.ndarray) -> list[tuple[int, int]]:
    """Ward's agglomerative merges of clusters given their rows' mean embeddings and row counts: each step joins the
    pair whose merge adds least to the rows' within-group sum of squares, size × size / (size + size) × distance².

    Weighting by rows matters: unweighted, a 3-row outlier cluster costs as much as a 300-row one, and cuts leave tiny
    outliers on their own while everything else lumps into one node. Lance-Williams updates on a dense matrix: O(n²)
    memory and about n² work per merge in numpy, well under a second for the 1,000 clusters of a large run.
    """
    n = len(means)
    means = np.asarray(means, dtype=np.float64)
    sizes = np.asarray(sizes, dtype=np.float64).copy()
    squared = np.maximum((means ** 2).sum(1)[:, None] + (means ** 2).sum(1)[None, :] - 2 * means @ means.T, 0)
    cost = sizes[:, None] * sizes[None, :] / np.maximum(sizes[:, None] + sizes[None, :], 1e-12) * squared
    np.fill_diagonal(cost, np.inf)
    merges = []
    for _ in range(n - 1):
        i, j = divmod(int(np.argmin(cost)), n)
        i, j = min(i, j), max(i, j)
        ni, nj, nk = sizes[i], sizes[j], sizes
        joined = ((ni + nk) * cost[i] + (nj + nk) * cost[j] - nk * cost[i, j]) / (ni + nj + nk)
        cost[i], cost[:, i] = joined, joined
        cost[i, i] = np.inf
        cost[j], cost[:, j] = np.inf, np.inf  # a merged-away cluster's costs stay infinite: joined ones from it too
        sizes[i] += nj
        merges.append((i, j))
    return merges


def _cut(merges: list[tuple[int, int]], k: int) -> np.ndarray:
    """Each cluster's group (0-based, in order of first member) once the merges have left k groups."""
    n = len(merges) + 1
    owner = np.arange(n)
    for i, j in merges[: max(0, n - k)]:
        owner[owner == j] = i
    _, groups = np.unique(owner, return_inverse=True)
    return groups.astype(np.int64)


def _group_by_label(labels: np.ndarray, count: int) -> list[np.ndarray]:
    """Positions holding each label 0..count-1, ascending: one sort instead of a scan per label."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(count + 1))
    return [order[bounds[c]:bounds[c + 1]] for c in range(count)]


def _nearest_outside(vectors: np.ndarray, members_of: list[np.ndarray], centroids: np.ndarray, count: int,
                     neighbour_clusters: int = 32) -> list[np.ndarray]:
    """Per cluster, the `count` vectors nearest its centroid among the members of other clusters, ties by position.

    Only the `neighbour_clusters` clusters with the nearest centroids are searched, which is where the nearest
    outsiders live; that keeps this O(n d) at 1M rows and thousands of clusters instead of O(k n d). With at most that
    many other clusters it is the exact search.
    """
    similar = centroids @ centroids.T
    np.fill_diagonal(similar, -np.inf)
    neighbours = np.argsort(-similar, axis=1, kind="stable")[:, :min(neighbour_clusters, len(centroids) - 1)]  # self sorts last
    out = []
    for cluster, centroid in enumerate(centroids):
        pool = np.sort(np.concatenate([members_of[c] for c in neighbours[cluster]] or [np.zeros(0, dtype=np.int64)]))
        out.append(pool[np.argsort(-(vectors[pool] @ centroid), kind="stable")[:count]])
    return out


def _children_summary(kids: Sequence[_Node]) -> str:
    names = [k.name for k in sorted(kids, key=lambda k: -k.size)][:3]
    return f"Covers {len(kids)} groups, such as: " + "; ".join(names) + "."


def _sum_count(values) -> tuple[float, int]:
    present = [v for v in values if v is not None]
    return float(sum(present)), len(present)


def _seed(*key) -> int:
    return zlib.crc32(":".join(map(str, key)).encode())
