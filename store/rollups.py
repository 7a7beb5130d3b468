"""Hourly and daily rollups (`readings_1h`, `readings_1d`): what the 1h and 1d aggregates read.

Each row holds count, min, max and sum of the readings of one sensor and type in one UTC
hour or day, kept in the write transaction from the rows really inserted, like
`readings_1m` (so a replay never counts twice); a database from before them is backfilled
once from `readings_1m` at setup. A request whose window is not aligned on the bucket reads
its partial first and last buckets from `readings_1m`, so the answer is the one the minute
rows give (docs/contract.md, "Read API").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pipeline.record import Record

Rollup = Literal["1h", "1d"]
ROLLUPS: tuple[Rollup, ...] = ("1h", "1d")
TABLE: dict[Rollup, str] = {"1h": "readings_1h", "1d": "readings_1d"}
STEP: dict[Rollup, timedelta] = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}

SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    sensor_id TEXT NOT NULL,
    type TEXT NOT NULL,
    start {time} NOT NULL,
    count BIGINT NOT NULL,
    min DOUBLE PRECISION NOT NULL,
    max DOUBLE PRECISION NOT NULL,
    sum DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sensor_id, type, start)
){options};
"""

# Fold rows into a rollup (SQLite: one row per bucket of a batch; PostgreSQL: a SELECT).
MERGE = """
ON CONFLICT (sensor_id, type, start) DO UPDATE SET
    count = r.count + excluded.count,
    min = {least}(r.min, excluded.min),
    max = {greatest}(r.max, excluded.max),
    sum = r.sum + excluded.sum
"""

# A database from before the rollups: fill them once from the minute rows.
BACKFILL = """
INSERT INTO {table} (sensor_id, type, start, count, min, max, sum)
SELECT sensor_id, type, {bucket}, sum(count), min(min), max(max), sum(sum) FROM readings_1m GROUP BY 1, 2, 3
"""
EMPTY = "SELECT NOT EXISTS (SELECT 1 FROM {table})"

# Retention: a bucket goes once all of it is older than the cutoff (it never drops a minute
# that readings_1m still keeps).
PRUNE = (
    "DELETE FROM {table} WHERE (sensor_id, type, start) IN"
    " (SELECT sensor_id, type, start FROM {table} WHERE sensor_id = ? AND start < ? LIMIT ?)"
)

# The 1h and 1d aggregates: whole buckets from the rollup, the partial first and last ones
# (a window not aligned on the bucket) from readings_1m, cut as before; the three never share
# a bucket (split() below), so only the minute rows are grouped. `{types}` is
# TYPE_IS or ANY_TYPE: either way the primary key's (sensor_id, type, start|minute) range
# is searched, never every minute of the sensor (`latest` has a row for every type stored).
AGGREGATES = """
SELECT type, start, count, min, max, avg FROM (
    SELECT type, start, count, min, max, sum / count AS avg FROM {table}
    WHERE sensor_id = ? AND {types} AND start >= ? AND start < ?
    UNION ALL
    SELECT type, {bucket} AS start, CAST(sum(count) AS BIGINT), min(min), max(max), sum(sum) / sum(count)
    FROM readings_1m WHERE sensor_id = ? AND {types} AND minute >= ? AND minute < ? GROUP BY 1, 2
    UNION ALL
    SELECT type, {bucket} AS start, CAST(sum(count) AS BIGINT), min(min), max(max), sum(sum) / sum(count)
    FROM readings_1m WHERE sensor_id = ? AND {types} AND minute >= ? AND minute < ? GROUP BY 1, 2
) b WHERE {after} ORDER BY start, type LIMIT ?
"""
TYPE_IS = "type = ?"
ANY_TYPE = "type IN (SELECT type FROM latest WHERE sensor_id = ?)"


def floor(moment: datetime, rollup: Rollup) -> datetime:
    """The start of the UTC bucket `moment` falls in."""
    moment = moment.astimezone(timezone.utc)
    if rollup == "1d":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil(moment: datetime, rollup: Rollup) -> datetime:
    """The first UTC bucket start at or after `moment`."""
    start = floor(moment, rollup)
    if start == moment:
        return start
    try:
        return start + STEP[rollup]
    except OverflowError:  # inside the last bucket of year 9999
        return datetime.max.replace(tzinfo=timezone.utc)


def split(start: datetime, end: datetime, rollup: Rollup) -> tuple[datetime, datetime]:
    """[whole_from, whole_to): the buckets of [start, end) read from the rollup; the minutes
    of [start, whole_from) and [whole_to, end) are read from readings_1m."""
    whole_from = min(ceil(start, rollup), end)  # a window inside one bucket: all from readings_1m
    return whole_from, max(whole_from, floor(end, rollup))


def floor_text(cutoff: str, rollup: Rollup) -> str:
    """Retention's cutoff (UTC text) floored to its bucket, as UTC text."""
    return cutoff[:13] + ":00:00.000000Z" if rollup == "1h" else cutoff[:10] + "T00:00:00.000000Z"


def aggregates_args(sensor_id: str, start: Any, end: Any, whole: tuple[Any, Any], type_: str | None) -> list[Any]:
    """The arguments of AGGREGATES before the cursor's (bounds already in the dialect)."""
    types = type_ if type_ is not None else sensor_id
    whole_from, whole_to = whole
    return [
        *(sensor_id, types, whole_from, whole_to),
        *(sensor_id, types, start, whole_from),
        *(sensor_id, types, whole_to, end),
    ]


def fold(batch: Iterable[Record]) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The hourly and daily rows of `batch` (readings really inserted), as
    (sensor_id, type, start, count, min, max, sum), for SQLite's text times."""
    hours: dict[tuple[str, str, str], list[float]] = {}
    for r in batch:
        reading, v = r.reading, r.reading.value
        key = (reading.sensor_id, reading.type, r.ts[:13])
        acc = hours.get(key)
        if acc is None:
            hours[key] = [1, v, v, v]
        else:
            acc[0] += 1
            if v < acc[1]:
                acc[1] = v
            if v > acc[2]:
                acc[2] = v
            acc[3] += v
    days: dict[tuple[str, str, str], list[float]] = {}
    for (sensor_id, type_, hour), (count, low, high, total) in hours.items():
        key = (sensor_id, type_, hour[:10])
        acc = days.get(key)
        if acc is None:
            days[key] = [count, low, high, total]
        else:
            acc[0] += count
            acc[1] = min(acc[1], low)
            acc[2] = max(acc[2], high)
            acc[3] += total
    return (
        [(s, t, h + ":00:00Z", int(a[0]), a[1], a[2], a[3]) for (s, t, h), a in hours.items()],
        [(s, t, d + "T00:00:00Z", int(a[0]), a[1], a[2], a[3]) for (s, t, d), a in days.items()],
    )
