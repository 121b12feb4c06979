"""clio_hf: Clio-style facets, clusters and a named hierarchy for any Hugging Face dataset.

Public names are imported on first use, so `clio_hf.backends` and `clio_hf.prompts` load without `datasets`
(a GPU machine running only the LLM stage need not have it).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "cluster_facets": "cluster",
    "ClioConfig": "config", "ClusterConfig": "config", "ConversationConfig": "config", "EmbedConfig": "config",
    "FacetConfig": "config", "HierarchyConfig": "config", "PrivacyConfig": "config", "ProjectionConfig": "config",
    "to_conversations": "conversations",
    "Embedder": "backends", "embed_facets": "embed", "load_embedder": "backends",
    "extract_facets": "extract",
    "GENERIC_SUMMARY_FACETS": "facets", "MAIN_FACETS": "facets", "Facet": "facets",
    "compare_groups": "groups", "count_groups": "groups",
    "build_hierarchy": "hierarchy",
    "LENSES": "facets", "Lens": "facets", "explain_scores": "lenses",
    "LLM": "backends", "load_llm": "backends",
    "annotate": "pipeline",
    "assign": "assign",
    "apply_privacy_gates": "privacy",
    "project_facets": "projection",
    "PROMPT_VERSION": "prompts",
    "ClioResult": "result",
    "summarize": "summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clio_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
