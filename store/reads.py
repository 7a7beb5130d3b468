"""The read side's statements and pages: sensors, readings, aggregates, alerts.

Every list is keyset-paginated: the cursor is the last item's sort key, opaque to clients
(docs/contract.md, "Read API"). Statements are written once with `?`
(store/dialect.py gives each driver its own); `store.base.Reader` runs them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import msgspec

from pipeline.reading import utc_text
from store import alerts, rollups
from store.dialect import Bucket, minute_text, ts_text
from store.errors import BadCursor

AlertState = Literal["active", "cleared", "all"]


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def decode_cursor(text: str | None, size: int) -> list[Any] | None:
    if not text:
        return None
    try:
        key = msgspec.json.decode(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, msgspec.DecodeError):
        raise BadCursor("cursor is not one this API returned") from None
    if not isinstance(key, list) or len(key) != size or not all(isinstance(k, str) for k in key):
        raise BadCursor("cursor is not one this API returned")
    return key


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def page(rows: list[Any], limit: int, item: Callable[[Any], dict[str, Any]], key: Callable[[Any], list[Any]]) -> Page:
    """`rows` were fetched with limit + 1: one more means there is a next page."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([item(r) for r in rows], encode_cursor(key(rows[-1])) if more and rows else None)


def reading(row: Any) -> dict[str, Any]:
    return {"type": row[0], "timestamp": ts_text(row[1]), "value": row[2], "unit": row[3], "location": row[4]}


def aggregate(row: Any) -> dict[str, Any]:
    return {"type": row[0], "start": minute_text(row[1]), "count": row[2], "min": row[3], "max": row[4], "avg": row[5]}


def alert(row: Any) -> dict[str, Any]:
    item: dict[str, Any] = msgspec.to_builtins(alerts.row_of(row))
    return item


def sensors_page(rows: list[Any], limit: int) -> Page:
    by_sensor: dict[str, dict[str, Any]] = {}
    for sensor_id, type_, ts, value, unit, location in rows:
        entry = by_sensor.setdefault(sensor_id, {"sensor_id": sensor_id, "types": [], "latest": {}})
        entry["types"].append(type_)
        entry["latest"][type_] = {"timestamp": ts_text(ts), "value": value, "unit": unit, "location": location}
    items = list(by_sensor.values())
    more = len(items) > limit
    items = items[:limit]
    return Page(items, encode_cursor([items[-1]["sensor_id"]]) if more and items else None)


SENSORS = """
SELECT sensor_id, type, ts, value, unit, location FROM latest
WHERE sensor_id IN (SELECT DISTINCT sensor_id FROM latest WHERE sensor_id > ? ORDER BY sensor_id LIMIT ?)
ORDER BY sensor_id, type
"""
KNOWN = "SELECT 1 FROM latest WHERE sensor_id = ? LIMIT 1"
AGGREGATES = """
SELECT type, start, count, min, max, avg FROM (
    SELECT type, {bucket} AS start, CAST(sum(count) AS BIGINT) AS count, min(min) AS min, max(max) AS max,
           sum(sum) / sum(count) AS avg
    FROM readings_1m WHERE sensor_id = ? AND minute >= ? AND minute < ? {type_filter}
    GROUP BY type, start
) b WHERE {after} ORDER BY start, type LIMIT ?
"""


def readings_sql(type_: str | None, start: Any, end: Any, cursor: list[Any] | None) -> tuple[str, list[Any]]:
    where, args = ["sensor_id = ?"], []
    if type_ is not None:
        where.append("type = ?")
        args.append(type_)
    if start is not None:
        where.append("ts >= ?")
        args.append(start)
    if end is not None:
        where.append("ts < ?")
        args.append(end)
    if cursor is not None:
        where.append("(ts < ? OR (ts = ? AND type < ?))")
        args += [cursor[0], cursor[0], cursor[1]]
    sql = (
        "SELECT type, ts, value, unit, location FROM readings WHERE "
        + " AND ".join(where)
        + " ORDER BY ts DESC, type DESC LIMIT ?"
    )
    return sql, args


def alerts_sql(state: AlertState, sensor_id: str | None, cursor: list[Any] | None) -> tuple[str, list[Any]]:
    where, args = ["1 = 1"], list[Any]()
    if state != "all":
        where.append("state = ?")
        args.append(state)
    if sensor_id is not None:
        where.append("sensor_id = ?")
        args.append(sensor_id)
    if cursor is not None:
        where.append("(raised_at < ? OR (raised_at = ? AND id < ?))")
        args += [cursor[0], cursor[0], cursor[1]]
    return alerts.LIST.format(where=" AND ".join(where)), args


def aggregates_sql(
    buckets: Mapping[Bucket, str],
    bucket: Bucket,
    type_: str | None,
    cursor: list[Any] | None,
    cast: str = "",
    rollup: str | None = None,
) -> tuple[str, list[Any]]:
    """The statement and its arguments after the window's; with `rollup` (a table of
    store/rollups.py), rollups.AGGREGATES, whose window arguments (the type's too) come
    from rollups.aggregates_args."""
    args: list[Any] = []
    type_filter = ""
    if type_ is not None:
        type_filter = "AND type = ?"
        if rollup is None:
            args.append(type_)
    after = "1 = 1"
    if cursor is not None:
        after = f"(start > ?{cast} OR (start = ?{cast} AND type > ?))"
        args += [cursor[0], cursor[0], cursor[1]]
    if rollup is not None:
        types = rollups.TYPE_IS if type_ is not None else rollups.ANY_TYPE
        return rollups.AGGREGATES.format(table=rollup, bucket=buckets[bucket], types=types, after=after), args
    sql = AGGREGATES.format(bucket=buckets[bucket], type_filter=type_filter, after=after)
    return sql, args


def now_text() -> str:
    return utc_text(datetime.now(timezone.utc))
