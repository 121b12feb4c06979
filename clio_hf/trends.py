"""Topics over time: how each node's share of the rows moves from period to period.

`count_periods` is a post-pass over the companion dataset, like `groups.count_groups`: with a time column, every node
gets `time_counts`, its rows per period (hour, day, week or month, chosen from the column's span so that there are
a useful number of periods), and the run record says which period. `trends` then compares each node's share of the
first period with its share of the last: a chi-square test of the 2 x 2 table (the node against the rest, first
period against last; Fisher's exact test where an expected count is under 5) with Benjamini-Hochberg q-values over
every node tested. Nodes with fewer than `min_count` rows in the two periods together are not tested.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import datasets
import numpy as np

from . import columns as C
from .groups import node_counts

NO_TIME = "(none)"
PERIODS = ("hour", "day", "week", "month")
# The finest period whose count over the span stays readable in a small chart: at most about this many.
_MAX_PERIODS = 60
_MIN_EXPECTED = 5


def parse_times(values: Sequence, column: str) -> np.ndarray:
    """`values` as UTC `datetime64[s]` (NaT for null): ISO 8601 text, dates, datetimes, or epoch numbers in seconds
    (milliseconds when larger than 1e11, which as seconds would lie past the year 5000).

    Raises:
        ValueError: naming the column, the row and the value that is not a time.
    """
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[s]")
    for row, value in enumerate(values):
        if value is None:
            continue
        try:
            out[row] = _as_datetime64(value)
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"time column {column!r}, row {row}: {value!r} is not a time (ISO 8601 text such as "
                             "2026-12-07T10:30:00, a date, or epoch seconds or milliseconds).") from error
    return out


def _as_datetime64(value) -> np.datetime64:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a time")
    if isinstance(value, (int, float, np.integer, np.floating)):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        seconds = float(value) / 1000 if abs(value) > 1e11 else float(value)
        return np.datetime64(int(seconds), "s")
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return np.datetime64(value, "s")
    if isinstance(value, dt.date):
        return np.datetime64(value, "s")
    raise TypeError(f"{type(value).__name__} is not a time")


def choose_period(times: np.ndarray) -> str:
    """The finest of hour, day, week, month that cuts the span of `times` into at most about `_MAX_PERIODS` periods."""
    known = times[~np.isnat(times)]
    if not len(known):
        return "day"
    span_hours = (known.max() - known.min()).astype("timedelta64[h]").astype(np.int64)
    for period, hours in (("hour", 1), ("day", 24), ("week", 24 * 7)):
        if span_hours / hours <= _MAX_PERIODS:
            return period
    return "month"


def period_labels(times: np.ndarray, period: str) -> list[str]:
    """Each time's period as ISO text that sorts in time order: `2026-12-07T10`, `2026-12-07`, the week's Monday
    (`2026-12-07`), `2026-12`; `(none)` for a missing time."""
    if period == "hour":
        starts = times.astype("datetime64[h]")
    elif period == "day":
        starts = times.astype("datetime64[D]")
    elif period == "week":
        days = times.astype("datetime64[D]")
        weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
        starts = days - weekday.astype("timedelta64[D]")
    elif period == "month":
        starts = times.astype("datetime64[M]")
    else:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    return [NO_TIME if np.isnat(t) else str(t) for t in starts]


def count_periods(hierarchy: datasets.Dataset, data: datasets.Dataset, *, time_column: str, column_prefix: str = "",
                  period: str | None = None, times: np.ndarray | None = None) -> tuple[datasets.Dataset, str]:
    """(`hierarchy` with `time_counts`, the period used): every node's rows per period of `time_column`, in time
    order, rows without a time last as `(none)`; a node's counts sum to its `size`. `times`: the column already
    parsed (`parse_times`), as `annotate` has it from checking the input."""
    C.require_columns(data, [time_column], "count_periods")
    times = parse_times(data[time_column], time_column) if times is None else times
    period = period or choose_period(times)
    counts = node_counts(hierarchy, data, period_labels(times, period), column_prefix, "count_periods")
    column = [[{"period": p, "count": c[p]} for p in sorted(c, key=lambda p: (p == NO_TIME, p))] for c in counts]
    return hierarchy.add_column(C.TIME_COUNTS, column, feature=C.TIME_COUNTS_FEATURE), period


def share_test(a: int, n1: int, c: int, n2: int) -> tuple[str, float]:
    """(test, p value) for a node holding `a` of `n1` rows in one sample and `c` of `n2` in another: Pearson's
    chi-square on the 2 x 2 table, or Fisher's exact test where an expected count is under 5."""
    from scipy.stats import chi2_contingency, fisher_exact

    table = np.array([[a, n1 - a], [c, n2 - c]])
    if (table.sum(axis=0) > 0).all() and (table.sum(axis=1) > 0).all():
        chi2 = chi2_contingency(table, correction=False)
        if not (chi2.expected_freq < _MIN_EXPECTED).any():
            return "chi2", float(chi2.pvalue)
    return "fisher", float(fisher_exact(table).pvalue)


def trends(hierarchy: datasets.Dataset, *, facets: Sequence[str] | None = None, min_count: int = 5) -> list[dict]:
    """Every node's share of the first period against its share of the last, most significant first.

    Returns one dict per tested node: facet, node_id, level, name, size, first, last (the periods), count_first,
    count_last, share_first, share_last, change (last minus first share), test ("chi2" or "fisher"), p_value, q_value.

    Raises:
        ValueError: when the result has no time counts, or a facet's rows fall in fewer than two periods.
    """
    if C.TIME_COUNTS not in hierarchy.column_names:
        raise ValueError("trends: this result has no time_counts; annotate with time_column= (CLI --time-column COL).")
    from scipy.stats import false_discovery_control

    nodes = hierarchy.to_list()
    rows = []
    for facet in dict.fromkeys(n["facet"] for n in nodes):
        if facets and facet not in facets:
            continue
        mine = [n for n in nodes if n["facet"] == facet]
        whole: dict[str, int] = {}
        for n in mine:
            if n["parent_id"] is None:
                for item in n[C.TIME_COUNTS]:
                    whole[item["period"]] = whole.get(item["period"], 0) + item["count"]
        periods = sorted(p for p in whole if p != NO_TIME)
        if len(periods) < 2:
            raise ValueError(f"trends: the {facet!r} rows fall in {len(periods)} period(s); there is nothing to compare.")
        first, last = periods[0], periods[-1]
        for n in mine:
            counts = {item["period"]: item["count"] for item in n[C.TIME_COUNTS]}
            a, c = counts.get(first, 0), counts.get(last, 0)
            if a + c < min_count:
                continue
            test, p_value = share_test(a, whole[first], c, whole[last])
            share_first, share_last = a / whole[first], c / whole[last]
            rows.append({"facet": facet, "node_id": n["node_id"], "level": n["level"], "name": n["name"], "size": n["size"],
                         "first": first, "last": last, "count_first": a, "count_last": c, "share_first": share_first,
                         "share_last": share_last, "change": share_last - share_first, "test": test, "p_value": p_value})
    q_values = false_discovery_control([r["p_value"] for r in rows], method="bh") if rows else []
    for row, q in zip(rows, q_values):
        row["q_value"] = float(q)
    return sorted(rows, key=lambda r: (r["p_value"], -abs(r["change"]), r["facet"], r["node_id"]))
