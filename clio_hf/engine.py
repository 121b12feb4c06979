"""Where facet extraction and embedding run: the `Engine` interface, and `LocalEngine`, this process.

`annotate` hands an engine both the loaded model (None when no facet needs one) and the spec it was loaded from, so
that an engine which runs models elsewhere can load its own copies there (`clio_hf.distributed.RayEngine`'s actors).
Every engine writes the same columns under the same cache fingerprints, so a run resumes on any engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import datasets

from .backends import LLM, Embedder, load_embedder, load_llm
from .config import EmbedConfig, FacetConfig
from .embed import embed_facets
from .extract import extract_facets
from .facets import MAIN_FACETS, Facet


@runtime_checkable
class Engine(Protocol):
    """The two row-heavy stages, `extract_facets` and `embed_facets`, wherever they run, and what the run record says
    about where that was."""

    def extract_facets(self, ds: datasets.Dataset, llm: str | LLM, *, model: LLM | None = None, llm_options: dict | None = None,
                       facets: Sequence[Facet] = MAIN_FACETS, config: FacetConfig = FacetConfig(),
                       column_prefix: str = "") -> datasets.Dataset:
        """`extract.extract_facets`; `llm` is the spec (or LLM object) and `model` the LLM loaded from it, if any."""
        ...

    def embed_facets(self, ds: datasets.Dataset, embedder: str | Embedder, *, model: Embedder | None = None,
                     facets: Sequence[Facet] = MAIN_FACETS, config: EmbedConfig = EmbedConfig(),
                     column_prefix: str = "") -> datasets.Dataset:
        """`embed.embed_facets`; `embedder` is the spec (or Embedder object) and `model` the embedder loaded from it."""
        ...

    def record(self) -> str | dict:
        """The run record's `engine` entry."""
        ...


class LocalEngine:
    """Every stage in this process, with the models given (a spec string is loaded only when no model is)."""

    def extract_facets(self, ds: datasets.Dataset, llm: str | LLM | None, *, model: LLM | None = None,
                       llm_options: dict | None = None, facets: Sequence[Facet] = MAIN_FACETS,
                       config: FacetConfig = FacetConfig(), column_prefix: str = "") -> datasets.Dataset:
        if model is None and not isinstance(llm, str):
            model = llm  # an LLM object, or None when no facet needs one
        elif model is None and any(f.method == "llm" for f in facets):
            model = load_llm(llm, **(llm_options or {}))
        return extract_facets(ds, model, facets=facets, config=config, column_prefix=column_prefix)

    def embed_facets(self, ds: datasets.Dataset, embedder: str | Embedder | None, *, model: Embedder | None = None,
                     facets: Sequence[Facet] = MAIN_FACETS, config: EmbedConfig = EmbedConfig(),
                     column_prefix: str = "") -> datasets.Dataset:
        if model is None:
            model = load_embedder(embedder) if isinstance(embedder, str) else embedder
        return embed_facets(ds, model, facets=facets, config=config, column_prefix=column_prefix)

    def record(self) -> str:
        return "local"
