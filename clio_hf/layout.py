"""The names of a result, written once: its files and config folders, and the columns it adds.

Standard library only, so the Space app runs it without clio_hf: `clio-hf deploy-space` uploads this file beside
`app.py` (`spaces_app/layout.py` is a link to it), and the package builds every name through it (`clio_hf.columns`
wraps the column names for a `Facet`). A facet is named here by its column string (`Facet.column`, `request`), and
`prefix` is the run's `column_prefix` (`annotate --column-prefix`), which the row columns carry and the hierarchy's
do not.
"""

from __future__ import annotations

import re

# ---- files and folders: a result folder and a Hub dataset repo hold the same ones -----------------------------------
RUN_FILE = "clio_run.json"  # the run record
CARD_FILE = "README.md"  # the dataset card, whose YAML declares the configs
SPACE_CONFIG_FILE = "clio_space.json"  # beside a deployed Space's app.py: {"dataset": <repo id>}
DEFAULT_CONFIG, HIERARCHY_CONFIG = "default", "hierarchy"
CONFIG_DIRS = {DEFAULT_CONFIG: "data", HIERARCHY_CONFIG: "hierarchy"}  # `datasets` refuses a config named "data"
SPLIT = "train"
SHARD_GLOB = f"{SPLIT}-*"
SHARD_RE = re.compile(rf"{SPLIT}-\d{{5}}-of-\d{{5}}\.parquet")


def shard_file(index: int, count: int) -> str:
    """The name of shard `index` of `count` in a config folder: `train-00000-of-00001.parquet`."""
    return f"{SPLIT}-{index:05d}-of-{count:05d}.parquet"


def config_glob(config: str) -> str:
    """The shards of a config (`default`, `hierarchy`), relative to the result's root: `data/train-*`."""
    return f"{CONFIG_DIRS[config]}/{SHARD_GLOB}"


# ---- row columns ----------------------------------------------------------------------------------------------------
CONVERSATION = "conversation"
DUPLICATE_OF = "duplicate_of"
NO_CLUSTER = -1  # `<facet>_cluster` of a row with no base cluster (no value, or withheld on a push)
NOVEL_CLUSTER = -2  # `<facet>_cluster` of a row `assign` placed that fits no base cluster


def column_name(name: str) -> str:
    """snake_case column name of a facet: `Request` -> `request`, `Concerning Score` -> `concerning_score`."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def facet_column(facet: str, prefix: str = "") -> str:
    """The facet's value: `<facet>`."""
    return prefix + facet


def embedding_column(facet: str, prefix: str = "") -> str:
    """The facet value's embedding: `<facet>_embedding`."""
    return f"{prefix}{facet}_embedding"


def cluster_column(facet: str, prefix: str = "") -> str:
    """The row's base cluster: `<facet>_cluster`."""
    return f"{prefix}{facet}_cluster"


def projection_columns(facet: str, prefix: str = "") -> tuple[str, str]:
    """The topic-map coordinates: `<facet>_x`, `<facet>_y`."""
    return f"{prefix}{facet}_x", f"{prefix}{facet}_y"


def rationale_column(lens: str, prefix: str = "") -> str:
    """The one-sentence reason for a lens score: `<lens>_rationale`."""
    return f"{prefix}{lens}_rationale"


# ---- hierarchy columns (never prefixed) -----------------------------------------------------------------------------
GROUP_COUNTS = "group_counts"
TIME_COUNTS = "time_counts"
_MEAN_SUFFIX = "_mean"


def mean_column(facet: str) -> str:
    """A numeric facet's mean over a node's rows: `<facet>_mean`."""
    return facet + _MEAN_SUFFIX


def mean_of(column: str) -> str | None:
    """The facet a `<facet>_mean` column averages; None for any other column."""
    return column[: -len(_MEAN_SUFFIX)] if column.endswith(_MEAN_SUFFIX) else None
