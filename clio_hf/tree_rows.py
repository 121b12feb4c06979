"""Which rows lie under which nodes of a tree: numpy only, so the Space app runs it without clio_hf.

`clio-hf deploy-space` uploads this file beside `app.py`; the package (`ClioResult.select_node`, `drop_nodes`) and the
viewer share it, so a node's rows are the same rows wherever they are counted or exported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def children(parents: Mapping[int, int | None]) -> dict[int, list[int]]:
    """node id -> its children's ids, from node id -> parent id (None at the top)."""
    kids: dict[int, list[int]] = {node: [] for node in parents}
    for node, parent in parents.items():
        if parent is not None and parent in kids:
            kids[parent].append(node)
    return kids


def subtree(kids: Mapping[int, Sequence[int]], roots: Iterable[int]) -> set[int]:
    """The roots and every node below them."""
    seen, stack = set(), list(roots)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(kids.get(node, ()))
    return seen


def rows_under(clusters: np.ndarray, kids: Mapping[int, Sequence[int]], roots: Iterable[int]) -> np.ndarray:
    """A boolean mask of the rows whose base cluster (`<facet>_cluster`) lies under any of `roots`.

    Node ids are unique across a facet's levels and rows carry only base ids, so testing membership in the whole
    subtree is enough; -1 (no cluster) and -2 (novel) are under no node.
    """
    nodes = np.fromiter(subtree(kids, roots), dtype=np.int64)
    return np.isin(np.asarray(clusters), nodes)
