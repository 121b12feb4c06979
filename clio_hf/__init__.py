"""clio_hf: Clio-style facets, clusters and a named hierarchy for any Hugging Face dataset."""

__version__ = "0.1.0"

from .cluster import cluster_facets
from .config import ClioConfig, ClusterConfig, ConversationConfig, EmbedConfig, FacetConfig, HierarchyConfig, PrivacyConfig
from .config import ClioConfig, ClusterConfig, ConversationConfig, EmbedConfig, FacetConfig, HierarchyConfig, ProjectionConfig
from .conversations import to_conversations
from .embed import Embedder, embed_facets, load_embedder
from .extract import extract_facets
from .facets import GENERIC_SUMMARY_FACETS, MAIN_FACETS, Facet
from .groups import compare_groups, count_groups
from .hierarchy import build_hierarchy
from .lenses import LENSES, Lens, explain_scores
from .llm import LLM, load_llm
from .pipeline import annotate
from .privacy import apply_privacy_gates
from .projection import project_facets
from .prompts import PROMPT_VERSION
from .result import ClioResult
from .summary import summarize

__all__ = [
    "ClioConfig", "ClioResult", "ClusterConfig", "ConversationConfig", "EmbedConfig", "Embedder", "Facet",
    "FacetConfig", "GENERIC_SUMMARY_FACETS", "HierarchyConfig", "LLM", "MAIN_FACETS", "PROMPT_VERSION",
    "PrivacyConfig", "apply_privacy_gates",
    "annotate", "build_hierarchy", "cluster_facets", "embed_facets", "extract_facets", "load_embedder", "load_llm",
    "to_conversations",
    # lenses, group comparisons and the topic map
    "LENSES", "Lens", "ProjectionConfig", "compare_groups", "count_groups", "explain_scores", "project_facets", "summarize",
]
