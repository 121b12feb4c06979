"""Stage 3: `embed_facets`, a vector per clustered facet value.

The `Embedder` protocol, `load_embedder` and the sentence-transformers backend live in `clio_hf.backends`; they are
imported here too, so `from clio_hf.embed import Embedder, load_embedder` keeps working.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import datasets
import numpy as np
from datasets.fingerprint import Hasher

from . import columns as C
from . import prompts
from .backends import EMBEDDER_SPEC_FORMS, MINILM_INSTALL, Embedder, SentenceTransformerEmbedder, load_embedder
from .config import EmbedConfig
from .facets import MAIN_FACETS, Facet

__all__ = [
    "EMBEDDER_SPEC_FORMS", "MINILM_INSTALL", "Embedder", "EmbedTask", "UserVectors", "GivenVectors", "SentenceTransformerEmbedder",
    "embed_column", "embed_facets", "embed_fingerprint", "load_embedder", "normalise", "user_vectors", "user_words",
]

logger = logging.getLogger(__name__)


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
    weighted = [f for f in clustered if f.conversation_weight and not f.embedding_column]
    # Request and Task both add the user's words: encode them once for both (the slowest text of a row, often).
    users = UserVectors(ds, embedder, dimension=dimension, config=config, column_prefix=column_prefix) if len(weighted) > 1 else None
    for facet in clustered:
        target = C.embedding_column(facet, column_prefix)
        if facet.embedding_column:
            task = GivenVectors(facet, C.facet_column(facet, column_prefix), target, dimension)
        else:
            task = EmbedTask(embedder, facet, C.facet_column(facet, column_prefix), target, column_prefix + C.CONVERSATION,
                             user_vectors=users)
        ds = embed_column(ds, facet, task, dimension=dimension, model_id=embedder.model_id, config=config, column_prefix=column_prefix)
    return ds


def user_vectors(ds: datasets.Dataset, embedder: Embedder, *, dimension: int, config: EmbedConfig = EmbedConfig(),
                 column_prefix: str = "") -> datasets.Dataset:
    """One column, `user_vector`: the unit embedding of each row's user turns (`user_words`), row-aligned with `ds`;
    a cached map, so a rerun reads it back."""
    conversation = column_prefix + C.CONVERSATION

    def encode(batch: dict) -> dict:
        return {"user_vector": list(normalise(embedder.encode([user_words(c) for c in batch[conversation]])))}

    return ds.select_columns([conversation]).map(
        encode,
        batched=True,
        batch_size=config.batch_size,
        remove_columns=[conversation],
        features=datasets.Features({"user_vector": datasets.List(datasets.Value("float32"), length=dimension)}),
        new_fingerprint=Hasher.hash([ds._fingerprint, "user_vectors", embedder.model_id, column_prefix]),
        desc="Embedding the user's words",
    )


class UserVectors:
    """`user_vectors` of a dataset, shared by its facets with a `conversation_weight`, computed on first use (never,
    when every such facet's embedding is cached)."""

    def __init__(self, ds: datasets.Dataset, embedder: Embedder, *, dimension: int, config: EmbedConfig, column_prefix: str = ""):
        self.ds, self.embedder, self.dimension, self.config, self.column_prefix = ds, embedder, dimension, config, column_prefix
        self._column = None

    def rows(self, start: int, count: int) -> np.ndarray:
        """The vectors of rows `start` to `start + count` (count, dimension)."""
        if self._column is None:
            self._column = user_vectors(self.ds, self.embedder, dimension=self.dimension, config=self.config,
                                        column_prefix=self.column_prefix).data.column("user_vector")
        block = self._column.slice(start, count).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return block.reshape(count, self.dimension)


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


class EmbedTask:
    """The batched row function of one facet's embedding: `source` values (without the prefill) into `target` vectors.

    Public because the Ray engine (`distributed.py`) runs the same function on its workers.
    """

    def __init__(self, embedder: Embedder, facet: Facet, source: str, target: str, conversation: str,
                 user_vectors: UserVectors | None = None):
        self.embedder, self.facet, self.source, self.target, self.conversation = embedder, facet, source, target, conversation
        self.users = user_vectors

    def __call__(self, batch: dict, indices: list[int] | None = None) -> dict:
        values = batch[self.source]
        present = [i for i, v in enumerate(values) if v is not None]
        vectors = [None] * len(values)
        if present:
            encoded = normalise(self.embedder.encode([prompts.strip_prefill(values[i], self.facet.prefill) for i in present]))
            if self.facet.conversation_weight:
                encoded = normalise(encoded + self.facet.conversation_weight * self._users(batch, indices, present))
            for i, vector in zip(present, encoded):
                vectors[i] = vector
        return {**batch, self.target: vectors}


    def _users(self, batch: dict, indices: list[int] | None, present: list[int]) -> np.ndarray:
        """The unit embeddings of the `present` rows' user turns: from the shared `UserVectors` where given (a batched
        map's indices are contiguous), else encoded here."""
        if self.users is None or indices is None:
            return normalise(self.embedder.encode([user_words(batch[self.conversation][i]) for i in present]))
        return self.users.rows(indices[0], len(indices))[present]


def user_words(conversation) -> str:
    """What the user wrote, every user turn: the text a facet's embedding is anchored to."""
    return "\n\n".join(turn["content"] or "" for turn in conversation if turn["role"] == "user")


class GivenVectors:
    """A facet's precomputed vectors, checked and normalised; null where the facet value or the vector is.

    Public because the Ray engine (`distributed.py`) uses it as well.
    """

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
