"""Frozen, hashable configuration for each stage.

Every field has a plain meaning and a default that works on the packaged tiny models. The whole `ClioConfig` is hashed
into cache fingerprints, so a changed number recomputes exactly the stages it feeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Literal


ROLE_TARGETS = ("user", "assistant", "system", "skip")


@dataclass(frozen=True)
class ConversationConfig:
    """How rows become conversations (`to_conversations`)."""

    max_tokens: int = 256
    """Token budget of one conversation, counted with the LLM's tokenizer; cut at turn boundaries.

    Prefill dominates on a CPU (SmolLM2-135M: ~200 tokens/s on 2 cores), so the default keeps 100 conversations under
    10 minutes; raise it with a GPU or a served model.
    """
    dedup: bool = True
    dedup_key: str | None = None
    """Column whose value identifies duplicates; None means the normalised conversation text."""
    roles: tuple[tuple[str, str], ...] = ()
    """Extra message roles and what each becomes: "user", "assistant", "system" or "skip" (the message is dropped),
    e.g. `{"tool": "skip", "function": "assistant"}` (a dict is accepted). Checked case-insensitively, before the
    built-in names; any role still unknown stops the run, naming the row."""

    def __post_init__(self):
        roles = self.roles.items() if isinstance(self.roles, dict) else self.roles
        roles = tuple(sorted((str(name).strip().lower(), str(kind).strip().lower()) for name, kind in roles))
        for name, kind in roles:
            if kind not in ROLE_TARGETS:
                raise ValueError(f"ConversationConfig.roles: {name!r} -> {kind!r}; a role becomes one of {list(ROLE_TARGETS)}.")
        object.__setattr__(self, "roles", roles)


@dataclass(frozen=True)
class FacetConfig:
    """How facet values are extracted (`extract_facets`)."""

    max_new_tokens: int = 32
    max_retries: int = 2
    """Re-samples of an unparseable answer (seeded by row, facet and attempt) before the value becomes null."""
    retry_temperature: float = 0.7
    num_shards: int | None = None
    """Contiguous shards, each cached on its own so an interrupted run resumes; None picks about 64 rows a shard."""
    rows_per_shard: int = 64
    batch_size: int = 16
    """Prompts per backend call inside a shard (the backend may batch further)."""
    on_error: Literal["raise", "null"] = "null"
    rationale_max_new_tokens: int = 40
    """Token budget of a lens's one-sentence rationale (`clio_hf.lenses.rationales`)."""

    def __post_init__(self):
        for name in ("rows_per_shard", "batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"FacetConfig.{name} must be at least 1; got {getattr(self, name)}.")


@dataclass(frozen=True)
class EmbedConfig:
    batch_size: int = 64


@dataclass(frozen=True)
class ClusterConfig:
    """Base clustering (`cluster_facets`)."""

    rows_per_base_cluster: int = 10
    max_base_clusters: int = 1000
    niter: int = 25
    seed: int = 0
    exact_max_rows: int = 200_000
    """Up to this many rows with an embedding, k-means trains on every original row in memory; above it, on a seeded
    sample of `points_per_centroid` rows per cluster, and rows are assigned in a streamed pass over the embeddings on
    disk (bounded memory at 1M+ rows). The run record says which path ran."""
    points_per_centroid: int = 64
    """Training rows per cluster on the streamed path."""


@dataclass(frozen=True)
class HierarchyConfig:
    """Naming and the multi-level tree (`build_hierarchy`)."""

    inside_samples: int = 8
    """Member values shown when naming a base cluster."""
    outside_samples: int = 6
    """Nearest non-member values shown as contrast."""
    name_samples: int = 3
    """Naming prompts per node (first greedy, then seeded samples); every usable answer is a name candidate."""
    name_max_new_tokens: int = 48
    sample_temperature: float = 0.8
    max_top_nodes: int = 10
    """The top level takes the number of nodes, from 2 up to this, whose grouping separates best (silhouette)."""
    branching: int = 4
    """Target children per parent when sizing levels geometrically."""
    contrast_neighbors: int = 4
    """Nearest sibling nodes a name candidate must sit farther from than from its own node's members."""
    filler_penalty: float = 0.2
    """Subtracted from the score of a name made only of generic words ("Various user questions")."""
    keyphrase_terms: int = 3
    """Keyphrase name candidates use the node's top 1, 2, ... this many terms."""
    neighborhood_size: int = 40
    """Unused since parents are grouped by embeddings (kept so that older configs load)."""
    outside_neighbors: int = 3
    """Unused, as `neighborhood_size`."""
    assign_samples: int = 3
    """Unused, as `neighborhood_size`."""
    max_candidates: int = 9
    """Unused, as `neighborhood_size`."""
    max_levels: int = 6
    seed: int = 0


@dataclass(frozen=True)
class PrivacyConfig:
    """Clio's gates on every hierarchy node (`apply_privacy_gates`): a node failing any of them is withheld on push."""

    min_rows: int = 5
    """Rows a node needs to be published."""
    min_users: int = 3
    """Distinct users a node needs, counted when the run has a user column (`user_column=`, `--user-column`)."""
    detect_pii: bool = True
    """Withhold nodes whose name or summary holds personal data that patterns and a name tagger find (`clio_hf.pii`)."""
    allowed_names: tuple[str, ...] = ()
    """Person names the personal-data check lets through, e.g. public figures a dataset discusses ("Shakespeare")."""
    audit: bool = True
    """Ask the LLM to rate every node's name and summary for privacy (1: one person ... 5: fully general)."""
    min_privacy_score: int = 3
    """Lowest auditor rating that is published; 3 means "a group of thousands of people"."""
    audit_calibration: Literal["content_free", "none"] = "content_free"
    """How a backend's digit probabilities become a rating: divided by those of a content-free description, or as they
    are (`clio_hf.privacy`). Backends without probabilities take their greedy digit either way."""
    audit_retries: int = 2
    """Re-samples of an unparseable rating on backends that cannot constrain decoding; then the node is withheld."""
    audit_max_new_tokens: int = 4

    def __post_init__(self):
        object.__setattr__(self, "allowed_names", tuple(self.allowed_names))  # a list after a JSON round trip
        if self.audit_calibration not in ("content_free", "none"):
            raise ValueError(f"PrivacyConfig: audit_calibration must be 'content_free' or 'none'; got {self.audit_calibration!r}.")
        if self.min_rows < 1 or self.min_users < 1 or not 1 <= self.min_privacy_score <= 5 or self.audit_retries < 0:
            raise ValueError(f"PrivacyConfig: min_rows and min_users must be >= 1, min_privacy_score 1-5 and "
                             f"audit_retries >= 0; got {self}.")


@dataclass(frozen=True)
class ProjectionConfig:
    """The 2D topic map of every clustered facet (`project_facets`)."""

    method: Literal["auto", "umap", "tsne", "pca", "none"] = "auto"
    """`auto`: a PCA below `min_neighbour_rows` distinct vectors, t-SNE below `min_umap_rows`, UMAP (cosine) from there
    up; `none` adds no columns."""
    min_neighbour_rows: int = 48
    """Below this many distinct vectors a neighbour graph is ill-posed, so a PCA stands in."""
    min_umap_rows: int = 2_000
    """UMAP's numba kernels compile for ~15 s in every process; below this many distinct vectors t-SNE (no compile,
    ~1 s at 300 vectors, ~8 s at 2,000) draws the same kind of map sooner."""
    fit_rows: int = 20_000
    """UMAP is fitted on a seeded sample of this many distinct vectors; the rest are placed beside their nearest fitted
    vectors (`projection.place_by_neighbours`)."""
    n_neighbors: int = 15
    min_dist: float = 0.1
    place_neighbors: int = 3
    """How many nearest fitted vectors place a vector outside the fit sample."""
    transform_batch_size: int = 50_000
    """Vectors placed per faiss search (the name is from when `UMAP.transform` placed them)."""
    seed: int = 0


@dataclass(frozen=True)
class ClioConfig:
    """Everything `annotate` needs besides the data, the facets and the models."""

    conversation: ConversationConfig = field(default_factory=ConversationConfig)
    facets: FacetConfig = field(default_factory=FacetConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    hierarchy: HierarchyConfig = field(default_factory=HierarchyConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClioConfig:
        """The config `to_dict` wrote, or any part of it (a YAML file's sections, `clio-hf annotate --config`); a missing
        field keeps its default, an unknown one is an error naming it."""
        parts = {f.name: f.default_factory for f in fields(cls)}
        unknown = sorted(set(data) - set(parts))
        if unknown:
            raise ValueError(f"Unknown config section(s) {unknown}; the sections are {sorted(parts)}.")
        built = {}
        for name, kind in parts.items():
            section = data.get(name) or {}
            if not isinstance(section, dict):
                raise ValueError(f"Config section {name!r} must be a mapping of settings; got {section!r}.")
            settings = {f.name for f in fields(kind)}
            wrong = sorted(set(section) - settings)
            if wrong:
                raise ValueError(f"Unknown setting(s) {', '.join(f'{name}.{w}' for w in wrong)}; {name} has {sorted(settings)}.")
            built[name] = kind(**section)
        return cls(**built)
