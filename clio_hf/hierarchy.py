"""Stage 5: `build_hierarchy` names the base clusters contrastively and builds the multi-level tree.

Per clustered facet, after the Clio paper: each base cluster is named from a sample of its values and the nearest
values outside it (several samples; the answer nearest the cluster's centroid wins). Then, level by level, with level
sizes shrinking geometrically towards `max_top_nodes`: neighbourhoods of similar clusters get LLM-proposed parent
names, near-duplicate names merge, every child picks one parent by a vote over shuffled candidate lists (the LLM
chooses a number, so even a tiny model gives a valid answer), and each parent is renamed from its children. Every
level must shrink and the number of levels is capped, so the loop always ends; whatever the LLM fails to name gets a
deterministic name marked `name_source="fallback"`.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import datasets
import numpy as np
from datasets.utils import tqdm  # honours datasets.disable_progress_bars()

from . import columns as C
from . import prompts
from .cluster import embedding_matrix, kmeans, nearest
from .config import HierarchyConfig
from .embed import Embedder, normalise
from .facets import MAIN_FACETS, Facet
from .llm import LLM, ChatPrompt

logger = logging.getLogger(__name__)

# Items named per chunk: the transformers backend keeps 32 prompt heads, so a chunk's heads are all still cached when
# its samples run.
_NAMING_CHUNK = 16


@dataclass
class _Candidates:
    """Proposed parent names of one level, with the child positions each may adopt and the names' embeddings."""

    names: list[str]
    sources: list[set[int]]
    vectors: np.ndarray


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


def build_hierarchy(
    ds: datasets.Dataset,
    llm: LLM,
    embedder: Embedder,
    *,
    facets: Sequence[Facet] = MAIN_FACETS,
    config: HierarchyConfig = HierarchyConfig(),
    column_prefix: str = "",
) -> datasets.Dataset:
    """The companion dataset: one row per node of every clustered facet's tree (columns in the contract).

    Args:
        ds: rows with `<facet>`, `<facet>_embedding` and `<facet>_cluster` columns (see `cluster_facets`).
        llm: names clusters and assigns parents.
        embedder: embeds names to pick among samples, for neighbourhoods and for name dedup.
        facets: the facets of the run; numeric ones give `<facet>_mean` columns.
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
        tree = _FacetTree(ds, llm, embedder, facet, numeric, config, column_prefix)
        rows += tree.rows()
        logger.info("build_hierarchy: %s -> %d nodes, %d fallback names", facet.name, len(tree.nodes), tree.fallbacks)
    return datasets.Dataset.from_list(rows, features=features) if rows else _empty(features)


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
    def __init__(self, ds, llm, embedder, facet: Facet, numeric: Sequence[Facet], config: HierarchyConfig, prefix: str):
        self.llm, self.embedder, self.facet, self.config = llm, embedder, facet, config
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
        self.answer_of_row = np.full(len(ds), -1)
        for row in np.flatnonzero((labels >= 0) & originals):
            answer = prompts.strip_prefill(values[row], facet.prefill)
            if answer not in seen:
                seen[answer] = len(self.answers)
                self.answers.append(answer)
                answer_rows.append(row)
            self.answer_of_row[row] = seen[answer]
        if len(answer_rows) == len(vectors):  # every row its own answer (rows ascend): no second copy of the matrix
            self.answer_vectors = vectors
        else:
            self.answer_vectors = vectors[answer_rows] if answer_rows else np.zeros((0, vectors.shape[1]), np.float32)
        self.answer_labels = labels[answer_rows]
        self.nodes: list[_Node] = []
        self._build_base(labels, vectors)
        self._build_levels()

    # ------------------------------------------------------------------------------------------------ base level
    def _build_base(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        num_base = int(labels.max()) + 1 if len(labels) and labels.max() >= 0 else 0
        centroids, insides = [], []
        rows_of, members_of = _group_by_label(labels, num_base), _group_by_label(self.answer_labels, num_base)
        for cluster in range(num_base):
            rows = rows_of[cluster]
            sums = {col: _sum_count(vals[r] for r in rows) for col, vals in self.numeric_values.items()}
            self.nodes.append(_Node(0, "", "", "", len(rows), sums))
            centroid = normalise(vectors[rows].mean(axis=0, keepdims=True))[0]
            centroids.append(centroid)
            rng = self._rng(0, cluster)
            insides.append([self.answers[i] for i in rng.permutation(members_of[cluster])[: self.config.inside_samples]])
        self.base_centroids = np.asarray(centroids, dtype=np.float32).reshape(num_base, -1)
        outsides = [[self.answers[i] for i in nearest_answers]
                    for nearest_answers in _nearest_outside(self.answer_vectors, members_of, self.base_centroids, self.config.outside_samples)]

        def prompt(cluster: int):
            return prompts.cluster_name_prompt(self.facet, insides[cluster], outsides[cluster])

        named = self._name_with_samples(list(range(num_base)), prompt, level=0, targets=self.base_centroids)
        for cluster, answer in enumerate(named):
            node = self.nodes[cluster]
            node.node_id = cluster
            if answer is None:
                central = self.answers[self._central_answer(cluster)] if len(insides[cluster]) else "no value"
                node.name, node.summary, node.name_source = prompts.fallback_name(central), prompts.fallback_summary(central, node.size), "fallback"
                self.fallbacks += 1
            else:
                node.name, node.summary, node.name_source = answer[0], answer[1] or prompts.fallback_summary(insides[cluster][0], node.size), "llm"

    def _central_answer(self, cluster: int) -> int:
        members = np.flatnonzero(self.answer_labels == cluster)
        return int(members[np.argmax(self.answer_vectors[members] @ self.base_centroids[cluster])])

    # ------------------------------------------------------------------------------------------------ upper levels
    def _build_levels(self) -> None:
        current = list(range(len(self.nodes)))
        for level, target in enumerate(level_targets(len(current), self.config), start=1):
            target = min(target, len(current) - 1)  # an earlier level may have shrunk more than planned
            if target < 1:
                break
            current = self._build_level(current, level, target)

    def _build_level(self, children: list[int], level: int, target: int) -> list[int]:
        child_vectors = self._node_vectors(children)
        candidates = self._propose(children, child_vectors, level, target)
        assignment = self._assign(children, child_vectors, candidates, level)
        names: list[str | None] = list(candidates.names)
        if len(set(assignment)) >= len(children):
            # No progress (e.g. every child picked its own candidate): group the children by embedding instead.
            groups = nearest(child_vectors, kmeans(child_vectors, target, seed=self.config.seed + level))
            names, assignment = [None] * (int(groups.max()) + 1), groups.tolist()
        parents = []
        for candidate in sorted(set(assignment)):
            members = [children[j] for j, a in enumerate(assignment) if a == candidate]
            parents.append((names[candidate], members))
        return self._make_parents(parents, level)

    def _propose(self, children, child_vectors, level, target) -> _Candidates:
        """Candidate parent names, each with the children (positions) whose neighbourhood proposed it."""
        num_hoods = max(1, round(len(children) / self.config.neighborhood_size))
        hood_of = nearest(child_vectors, kmeans(child_vectors, num_hoods, seed=self.config.seed + level)) if num_hoods > 1 else np.zeros(len(children), dtype=np.int64)
        chats, hoods = [], []
        for hood in sorted(set(hood_of.tolist())):
            members = np.flatnonzero(hood_of == hood)
            centre = normalise(child_vectors[members].mean(axis=0, keepdims=True))[0]
            outside = [j for j in np.argsort(-(child_vectors @ centre), kind="stable") if hood_of[j] != hood][: self.config.outside_neighbors]
            shown = [(self.nodes[children[j]].name, self.nodes[children[j]].summary) for j in [*members, *outside]]
            count = max(1, round(target * len(members) / len(children)))
            chats.append(prompts.propose_parents_prompt(self.facet, shown, count))
            hoods.append((members, count))
        outputs = self.llm.generate(chats, max_new_tokens=min(14 * max(c for _, c in hoods) + 8, 128), stop=["</answer>"])
        names, sources = [], []
        for (members, count), text in zip(hoods, outputs):
            proposed = prompts.parse_numbered_list(text, self.forbidden)[: 2 * count]
            names += proposed
            sources += [set(members.tolist())] * len(proposed)
            if not proposed:
                logger.debug("level %d: a neighbourhood proposed no usable names", level)
        vectors = normalise(self.embedder.encode(names)) if names else np.zeros((0, child_vectors.shape[1]), np.float32)
        return self._dedup(_Candidates(names, sources, vectors), target)

    def _dedup(self, proposed: _Candidates, target: int) -> _Candidates:
        """Merge near-identical names (cosine >= 0.9), then cut down to about `target` by clustering the names."""
        keep: list[int] = []
        merged_sources: dict[int, set] = {}
        for i in range(len(proposed.names)):
            match = next((k for k in keep if float(proposed.vectors[i] @ proposed.vectors[k]) >= 0.9), None)
            if match is None:
                keep.append(i)
                merged_sources[i] = set(proposed.sources[i])
            else:
                merged_sources[match] |= proposed.sources[i]
        if len(keep) > target:
            vectors = proposed.vectors[keep]
            groups = nearest(vectors, kmeans(vectors, target, seed=self.config.seed))
            reduced = []
            for group in sorted(set(groups.tolist())):
                members = [keep[j] for j in np.flatnonzero(groups == group)]
                sub = proposed.vectors[members]
                medoid = members[int(np.argmax((sub @ sub.T).sum(axis=1)))]
                merged_sources[medoid] = set().union(*(merged_sources[m] for m in members))
                reduced.append(medoid)
            keep = reduced
        return _Candidates([proposed.names[k] for k in keep], [merged_sources[k] for k in keep], proposed.vectors[keep])

    def _assign(self, children, child_vectors, candidates: _Candidates, level) -> list[int]:
        """Each child's parent candidate: a vote over `assign_samples` shuffled option lists."""
        if not candidates.names:
            return list(range(len(children)))
        options_of = []
        for j in range(len(children)):
            similarity = candidates.vectors @ child_vectors[j]
            own = [c for c in range(len(candidates.names)) if j in candidates.sources[c]] or list(range(len(candidates.names)))
            options_of.append(sorted(own, key=lambda c: -similarity[c])[: self.config.max_candidates])
        votes = [Counter() for _ in children]
        by_size: dict[int, list[tuple[int, list[int], ChatPrompt]]] = {}
        for j, options in enumerate(options_of):
            if len(options) == 1:
                votes[j][options[0]] += 1
                continue
            child = (self.nodes[children[j]].name, self.nodes[children[j]].summary)
            for sample in range(self.config.assign_samples):
                order = [options[i] for i in self._rng(level, j, sample).permutation(len(options))]
                by_size.setdefault(len(order), []).append((j, order, prompts.assign_parent_prompt(child, [candidates.names[c] for c in order])))
        for size, slots in by_size.items():  # one choice call per list length, so every answer names a listed option
            picks = self.llm.choose([chat for _, _, chat in slots], [str(i) for i in range(1, size + 1)])
            for (j, order, _), pick in zip(slots, picks):
                if pick is not None:  # a backend that could not tell casts no vote
                    votes[j][order[pick]] += 1
        return [max(v or {c: 0 for c in options_of[j]}, key=lambda c: (v[c], float(candidates.vectors[c] @ child_vectors[j])))
                for j, v in enumerate(votes)]

    def _make_parents(self, parents, level) -> list[int]:
        def prompt(p: int):
            return prompts.rename_parent_prompt(self.facet, [self.nodes[m].name for m in parents[p][1]][:10])

        multi = [p for p, (_, members) in enumerate(parents) if len(members) > 1]
        targets = [normalise(self._node_vectors(parents[p][1]).mean(axis=0, keepdims=True))[0] for p in multi]
        renamed = dict(zip(multi, self._name_with_samples(multi, prompt, level, targets=targets)))
        ids = []
        for p, (candidate, members) in enumerate(parents):
            kids = [self.nodes[m] for m in members]
            sums = {col: (sum(k.sums[col][0] for k in kids), sum(k.sums[col][1] for k in kids)) for col in self.numeric_values}
            node = _Node(level, "", "", "", sum(k.size for k in kids), sums, children=list(members))
            if len(kids) == 1:  # a parent of one child says nothing new; copying avoids drift
                node.name, node.summary, node.name_source = kids[0].name, kids[0].summary, kids[0].name_source
            elif renamed.get(p) is not None:
                name, summary = renamed[p]
                node.name, node.summary, node.name_source = name, summary or _children_summary(kids), "llm"
            elif candidate is not None:  # a proposed name, kept when renaming gave nothing usable
                node.name, node.summary, node.name_source = candidate, _children_summary(kids), "llm"
            else:
                biggest = max(kids, key=lambda k: k.size)
                node.name, node.summary, node.name_source = prompts.fallback_name(biggest.name), _children_summary(kids), "fallback"
                self.fallbacks += 1
            self.nodes.append(node)
            ids.append(len(self.nodes) - 1)
            for m in members:
                self.nodes[m].parent = ids[-1]
        return ids

    # ------------------------------------------------------------------------------------------------ helpers
    def _name_with_samples(self, items: list[int], make_prompt, level: int, targets: Sequence[np.ndarray]) -> list[tuple[str, str | None] | None]:
        """(name, summary) per item: greedy first, then seeded samples; the usable answer closest to the item wins.

        `targets[k]` is item k's unit vector (a base cluster's centroid, or the mean of a parent's children): the name
        whose embedding is nearest to it describes what is in the group best. A small model often answers with text
        about the prompt rather than the group; those answers lie far from every group and lose.

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
                    if parsed:
                        answers[slot].append(parsed)
            progress.update(len(chunk))
        progress.close()
        return [self._closest(a, target) for a, target in zip(answers, targets)]

    def _closest(self, answers, target: np.ndarray):
        if len(answers) <= 1:
            return answers[0] if answers else None
        vectors = normalise(self.embedder.encode([name for name, _ in answers]))
        best = answers[int(np.argmax(vectors @ target))]
        summary = best[1] or next((s for _, s in answers if s), None)
        return best[0], summary

    def _node_vectors(self, ids: list[int]) -> np.ndarray:
        return normalise(self.embedder.encode([f"{self.nodes[i].name}: {self.nodes[i].summary}" for i in ids]))

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
            }
            for col, (total, count) in node.sums.items():
                row[f"{col}_mean"] = total / count if count else None
            out.append(row)
        return out


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
