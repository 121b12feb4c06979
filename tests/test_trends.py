"""Topics over time (clio_hf.trends): parsing a time column, the period, per-node counts and the trends test."""

from __future__ import annotations

import datetime as dt

import datasets
import numpy as np
import pytest

import clio_hf
from clio_hf.trends import choose_period, count_periods, parse_times, period_labels, trends
from fakes import HashEmbedder, ScriptedLLM


def test_times_are_read_from_iso_text_dates_and_epochs_and_a_bad_one_is_named():
    times = parse_times(["2026-01-05T10:00:00Z", dt.date(2026, 1, 6), 1767225600, 1767225600000, None,
                         "2026-01-05 12:00+02:00", dt.datetime(2026, 1, 7, 8, 30)], "when")
    assert [str(t) for t in times] == ["2026-01-05T10:00:00", "2026-01-06T00:00:00", "2026-01-01T00:00:00",
                                       "2026-01-01T00:00:00", "NaT", "2026-01-05T10:00:00", "2026-01-07T08:30:00"]
    with pytest.raises(ValueError, match=r"time column 'when', row 2: 'yesterday' is not a time"):
        parse_times(["2026-01-05", "2026-01-06", "yesterday"], "when")
    with pytest.raises(ValueError, match="row 0: True"):
        parse_times([True], "when")


@pytest.mark.parametrize("days, period", [(1, "hour"), (30, "day"), (300, "week"), (3650, "month")])
def test_the_period_is_the_finest_that_keeps_the_chart_readable(days, period):
    start = np.datetime64("2026-01-01T00:00:00")
    times = np.array([start, start + np.timedelta64(days * 24, "h")], dtype="datetime64[s]")
    assert choose_period(times) == period


def test_period_labels_sort_in_time_order():
    times = parse_times(["2026-12-09T15:20:00", "2026-12-06T01:00:00", None], "when")  # a Wednesday, a Sunday
    assert period_labels(times, "hour") == ["2026-12-09T15", "2026-12-06T01", "(none)"]
    assert period_labels(times, "day") == ["2026-12-09", "2026-12-06", "(none)"]
    assert period_labels(times, "week") == ["2026-12-07", "2026-11-30", "(none)"]  # each week's Monday
    assert period_labels(times, "month") == ["2026-12", "2026-12", "(none)"]


def _planted() -> tuple[datasets.Dataset, datasets.Dataset]:
    """600 rows over six months; base cluster 0 grows from 10% of January to 50% of June, cluster 2 keeps a third."""
    rng = np.random.default_rng(0)
    rows = []
    for month in range(1, 7):
        share0 = 0.1 + 0.08 * (month - 1)
        for _ in range(100):
            cluster = rng.choice(3, p=[share0, 2 / 3 - share0, 1 / 3])
            rows.append({"request_cluster": int(cluster), "when": f"2026-{month:02d}-{rng.integers(1, 28):02d}T12:00:00"})
    rows.append({"request_cluster": 2, "when": None})  # a row without a time
    data = datasets.Dataset.from_list(rows)
    sizes = np.bincount(data["request_cluster"], minlength=3)
    hierarchy = datasets.Dataset.from_dict({
        "facet": ["request"] * 5, "node_id": [0, 1, 2, 3, 4], "level": [0, 0, 0, 1, 1], "parent_id": [3, 3, 4, None, None],
        "name": ["Growing", "Shrinking", "Steady", "Parent of two", "Parent of steady"],
        "size": [int(sizes[0]), int(sizes[1]), int(sizes[2]), int(sizes[0] + sizes[1]), int(sizes[2])],
    })
    return hierarchy, data


def test_trends_finds_a_planted_change_and_not_a_steady_node():
    hierarchy, data = _planted()
    counted, period = count_periods(hierarchy, data, time_column="when")
    assert period == "week"  # six months: about 26 weeks
    for node in counted:
        assert sum(c["count"] for c in node["time_counts"]) == node["size"]
        labels = [c["period"] for c in node["time_counts"]]
        assert labels == sorted(labels, key=lambda p: (p == "(none)", p))
    monthly, _ = count_periods(hierarchy, data, time_column="when", period="month")
    found = {r["node_id"]: r for r in trends(monthly)}
    assert found[0]["first"] == "2026-01" and found[0]["last"] == "2026-06"
    assert found[0]["change"] > 0.25 and found[0]["q_value"] < 0.001  # grew
    assert found[1]["change"] < -0.15 and found[1]["q_value"] < 0.05  # shrank
    assert found[2]["q_value"] > 0.05 and abs(found[2]["change"]) < 0.1  # steady
    assert next(iter(trends(monthly)))["node_id"] == 0  # most significant first
    with pytest.raises(ValueError, match="no time_counts"):
        trends(hierarchy)


def test_annotate_with_a_time_column_counts_periods_and_keeps_the_times_local(tmp_path, capsys):
    topics = ["fix my python bug", "bake bread at home", "plan a trip to rome"]
    rows = [{"messages": [{"role": "user", "content": f"{topics[i % 3]} please ({i})"}, {"role": "assistant", "content": "ok"}],
             "when": f"2026-0{1 + i % 6}-15T09:00:00Z"} for i in range(30)]
    llm = ScriptedLLM(reply=lambda p: " help with " + p[1]["content"].split("User: ")[-1].split(" please")[0] + "</answer>"
                      if "User: " in p[1]["content"] else "Some group</name>\n<summary>Some summary.</summary>")
    config = clio_hf.ClioConfig(cluster=clio_hf.ClusterConfig(rows_per_base_cluster=5),
                                privacy=clio_hf.PrivacyConfig(audit=False, min_rows=1))
    bad = [dict(r) for r in rows]
    bad[7]["when"] = "last tuesday"
    quiet = ScriptedLLM()
    with pytest.raises(ValueError, match=r"time column 'when', row 7: 'last tuesday'"):
        clio_hf.annotate(datasets.Dataset.from_list(bad), facets="request", llm=quiet, embedder=HashEmbedder(),
                         config=config, time_column="when", cache_dir=tmp_path / "bad")
    assert not quiet.prompts  # stopped before any model ran
    result = clio_hf.annotate(datasets.Dataset.from_list(rows), facets="request", llm=llm, embedder=HashEmbedder(),
                              config=config, time_column="when", cache_dir=tmp_path / "runs")
    assert result.info["time_column"] == "when" and result.info["time_period"] == "week"
    tops = [n for n in result.hierarchy if n["parent_id"] is None]
    assert sum(c["count"] for n in tops for c in n["time_counts"]) == 30
    public = result.for_publishing()
    assert "when" not in public.data.column_names and "when" in public.info["published"]["left_out_columns"]
    assert "time_counts" in public.hierarchy.column_names  # per-node counts are aggregates
    assert "when" in result.for_publishing(include_text=True).data.column_names
    chart = result.visualize_trends(top=3, min_count=1)  # the notebook's drawing: each node's share of every week
    weeks = sorted({c["period"] for n in tops for c in n["time_counts"]} - {"(none)"})
    assert 0 < len(chart.data) <= 3 and list(chart.data[0].x) == weeks and all(0 <= v <= 1 for v in chart.data[0].y)
    result.save_to_disk(tmp_path / "out")
    from clio_hf.cli import main

    assert main(["trends", str(tmp_path / "out"), "--min-count", "1"]) == 0
    out = capsys.readouterr().out
    assert "time column 'when' by week: 2026-01-12 against 2026-06-15" in out and "share_first" in out
