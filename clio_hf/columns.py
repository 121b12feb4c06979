"""The column scheme for `Facet`s: the names every stage adds (built by `clio_hf.layout`, which the Space shares), their
`datasets` features, and the checks every stage runs first."""

from __future__ import annotations

from collections.abc import Iterable

import datasets

from . import layout as L
from .facets import Facet, Lens
from .layout import CONVERSATION, DUPLICATE_OF, GROUP_COUNTS, NO_CLUSTER, NOVEL_CLUSTER, TIME_COUNTS  # noqa: F401

MESSAGE_FEATURE = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})

HIERARCHY_FEATURES = datasets.Features(
    {
        "facet": datasets.Value("string"),
        "node_id": datasets.Value("int64"),
        "level": datasets.Value("int64"),
        "parent_id": datasets.Value("int64"),
        "name": datasets.Value("string"),
        "summary": datasets.Value("string"),
        "name_source": datasets.Value("string"),
        "size": datasets.Value("int64"),
        "name_score": datasets.Value("float64"),
        "keyphrases": datasets.List(datasets.Value("string")),
    }
)


def facet_column(facet: Facet, prefix: str = "") -> str:
    return L.facet_column(facet.column, prefix)


def embedding_column(facet: Facet, prefix: str = "") -> str:
    return L.embedding_column(facet.column, prefix)


def cluster_column(facet: Facet, prefix: str = "") -> str:
    return L.cluster_column(facet.column, prefix)


def rationale_column(lens: Facet, prefix: str = "") -> str:
    """The one-sentence reason for a lens score: `<lens>_rationale` (string)."""
    return L.rationale_column(lens.column, prefix)


def mean_column(facet: Facet) -> str:
    return L.mean_column(facet.column)


def projection_columns(facet: Facet, prefix: str = "") -> tuple[str, str]:
    """The topic-map coordinates of a clustered facet: `<facet>_x`, `<facet>_y` (float32)."""
    return L.projection_columns(facet.column, prefix)


GROUP_COUNTS_FEATURE = datasets.List({"group": datasets.Value("string"), "count": datasets.Value("int64")})
TIME_COUNTS_FEATURE = datasets.List({"period": datasets.Value("string"), "count": datasets.Value("int64")})


def added_columns(facets: Iterable[Facet], prefix: str = "") -> list[str]:
    """Every column `annotate` adds to the input rows, in order."""
    names = [prefix + CONVERSATION, prefix + DUPLICATE_OF]
    for facet in facets:
        names.append(facet_column(facet, prefix))
        if isinstance(facet, Lens):
            names.append(rationale_column(facet, prefix))
        if facet.clustered:
            names += [embedding_column(facet, prefix), cluster_column(facet, prefix), *projection_columns(facet, prefix)]
    return names


def check_no_collisions(existing: Iterable[str], facets: Iterable[Facet], prefix: str = "") -> None:
    """Stop before any model runs if an added column would overwrite an input column (a facet's own `source_column` or
    `embedding_column` may carry the name of the column it fills)."""
    facets = list(facets)
    given = {f.source_column for f in facets if f.source_column} | {f.embedding_column for f in facets if f.embedding_column}
    clashes = [name for name in added_columns(facets, prefix) if name in set(existing) and name not in given]
    if clashes:
        raise ValueError(
            f"The input already has column(s) {clashes} that clio_hf would add. "
            "Pass column_prefix= (CLI: --column-prefix), e.g. column_prefix='clio_', or rename them."
        )


def is_empty_conversation(conversation) -> bool:
    """True for a conversation without a message that has any non-blank content (`[]`, only empty turns)."""
    return isinstance(conversation, list) and not any(
        isinstance(m, dict) and isinstance(m.get("content"), str) and m["content"].strip() for m in conversation)


def require_columns(ds: datasets.Dataset, columns: Iterable[str], stage: str) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"{stage}: the dataset has no column(s) {missing}. Available columns: {ds.column_names}. "
            "Run the earlier stages first (to_conversations, extract_facets, embed_facets, cluster_facets)."
        )


def replace_column(ds: datasets.Dataset, name: str, values: list, feature) -> datasets.Dataset:
    """`ds` with column `name` set to `values` (added at the end, or replacing a column of that name)."""
    if name in ds.column_names:
        ds = ds.remove_columns(name)
    return ds.add_column(name, values, feature=feature)
