"""`ClioConfig` as a file: every field survives a YAML round trip, and a typo is an error that names it."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from clio_hf.config import ClioConfig


def _changed(value):
    """A valid value other than the default, for every type of setting the config has."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if value is None:
        return 3
    return value


def test_every_setting_survives_a_yaml_round_trip():
    overrides = {}
    for section in dataclasses.fields(ClioConfig):
        part = getattr(ClioConfig(), section.name)
        overrides[section.name] = {f.name: _changed(getattr(part, f.name)) for f in dataclasses.fields(part)}
    overrides["conversation"]["roles"] = [["tool", "skip"]]
    overrides["privacy"]["allowed_names"] = ["Ada Lovelace"]
    overrides["projection"]["method"] = "pca"
    config = ClioConfig.from_dict(overrides)
    text = yaml.safe_dump(json.loads(json.dumps(config.to_dict())))  # what a user writes, lists and all
    again = ClioConfig.from_dict(yaml.safe_load(text))
    assert again == config and hash(again) == hash(config)
    changed = sum(getattr(getattr(config, s), k) != getattr(getattr(ClioConfig(), s), k)
                  for s, values in overrides.items() for k in values)
    assert changed == sum(len(values) for values in overrides.values()) - 2  # on_error, audit_calibration: choices kept
    assert ClioConfig.from_dict({"privacy": {"min_rows": 2}}) == dataclasses.replace(
        ClioConfig(), privacy=dataclasses.replace(ClioConfig().privacy, min_rows=2))  # a part keeps every other default


def test_unknown_sections_and_settings_are_named():
    with pytest.raises(ValueError, match=r"Unknown setting\(s\) privacy.min_rowz; privacy has \[.*'min_rows'"):
        ClioConfig.from_dict({"privacy": {"min_rowz": 2}})
    with pytest.raises(ValueError, match=r"Unknown config section\(s\) \['privcy'\]"):
        ClioConfig.from_dict({"privcy": {}})
    with pytest.raises(ValueError, match="must be a mapping"):
        ClioConfig.from_dict({"privacy": 5})
