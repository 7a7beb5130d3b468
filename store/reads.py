"""The read side's statements and pages: sensors, readings, aggregates, alerts.

Every list is keyset-paginated: the cursor is the last item's sort key, opaque to clients
(docs/contract.md, "Read API"). Statements are written once with `?`
(store/dialect.py gives each driver its own); `store.base.Reader` runs them.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import msgspec

from pipeline.reading import utc_text
from store import alerts, rollups
from store.dialect import Bucket, Dialect, minute_text, ts_text
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


SensorSort = Literal["sensor_id", "last_seen"]
SENSOR_SORTS: tuple[SensorSort, ...] = ("sensor_id", "last_seen")


@dataclass(frozen=True)
class SensorQuery:
    """GET /sensors' filters (docs/contract.md, "Fleet queries"): `q` a substring of the id
    (case-insensitive), a sensor with a series of `type` / whose latest reading of some type
    is at `location`, `silent_before_ns`: only sensors whose newest reading arrived at the API
    (`ingested_at_ns`) before that instant."""

    q: str | None = None
    type: str | None = None
    location: str | None = None
    sort: SensorSort = "sensor_id"
    silent_before_ns: int | None = None


def _seen_text(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    return utc_text(datetime.fromtimestamp(seconds, timezone.utc) + timedelta(microseconds=rest // 1000))


def sensors_page(rows: list[Any], limit: int, sort: SensorSort = "sensor_id") -> Page:
    by_sensor: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for sensor_id, seen_ns, type_, ts, value, unit, location in rows:
        entry = by_sensor.get(sensor_id)
        if entry is None:
            entry = by_sensor[sensor_id] = {
                "sensor_id": sensor_id,
                "last_seen": _seen_text(seen_ns) if seen_ns else None,
                "types": [],
                "latest": {},
            }
            seen[sensor_id] = int(seen_ns)
        entry["types"].append(type_)
        entry["latest"][type_] = {"timestamp": ts_text(ts), "value": value, "unit": unit, "location": location}
    items = list(by_sensor.values())
    more = len(items) > limit
    items = items[:limit]
    if not (more and items):
        return Page(items, None)
    last = items[-1]["sensor_id"]
    return Page(items, encode_cursor([last] if sort == "sensor_id" else [str(seen[last]), last]))


def like_pattern(q: str) -> str:
    """`q` as a LIKE pattern matching it anywhere (`\\` escapes LIKE's own characters)."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# SQLite's trigram table narrows a substring search only when few ids hold it: with more
# than this many, scanning `sensors` in the page's order fills a page sooner (BENCHMARKS.md).
TRIGRAM_MOST = 2000
TRIGRAM_COUNT = f"SELECT count(*) FROM (SELECT 1 FROM sensor_ids WHERE sensor_ids MATCH ? LIMIT {TRIGRAM_MOST + 1}) m"


# SQLite keeps no planner statistics: `silent_for` by id walks the id order unless few
# sensors are silent, when the (arrival, id) index finds them at once.
SILENT_COUNT = f"SELECT count(*) FROM (SELECT 1 FROM sensors WHERE seen_at_ns < ? LIMIT {TRIGRAM_MOST + 1})"


def trigram_phrase(q: str) -> str | None:
    """`q` as one FTS5 phrase for `sensor_ids` (None: too short for trigrams)."""
    return '"' + q.replace('"', '""') + '"' if len(q) >= 3 else None


def sensors_sql(
    query: SensorQuery,
    dialect: Dialect,
    cursor: list[Any] | None,
    limit: int,
    trigrams: bool = False,
    by_seen: bool = False,
) -> tuple[str, list[Any]]:
    """One statement: the page of sensors (table `sensors`, keyset on the sort), joined to
    their series in `latest`; `trigrams`: narrow `q` through SQLite's `sensor_ids`;
    `by_seen`: SQLite, find the few silent sensors through the arrival index."""
    where, args = ["1 = 1"], list[Any]()
    if query.q is not None:
        where.append(f"s.sensor_id {dialect.like} ? ESCAPE '\\'")
        args.append(like_pattern(query.q))
        phrase = trigram_phrase(query.q)
        if trigrams and phrase is not None:
            where.append("s.sensor_id IN (SELECT sensor_id FROM sensor_ids WHERE sensor_ids MATCH ?)")
            args.append(phrase)
    if query.type is not None:
        where.append("EXISTS (SELECT 1 FROM latest t WHERE t.sensor_id = s.sensor_id AND t.type = ?)")
        args.append(query.type)
    if query.location is not None:
        where.append("EXISTS (SELECT 1 FROM latest t WHERE t.sensor_id = s.sensor_id AND t.location = ?)")
        args.append(query.location)
    if query.silent_before_ns is not None:
        where.append("s.seen_at_ns < ?")
        args.append(query.silent_before_ns)
    if query.sort == "sensor_id":
        order = "sensor_id"
        if cursor is not None:
            where.append("s.sensor_id > ?")
            args.append(cursor[0])
    else:
        order = "seen_at_ns DESC, sensor_id DESC"
        if cursor is not None:
            try:
                seen_ns = int(cursor[0])
            except ValueError:
                raise BadCursor("cursor is not one this API returned") from None
            where.append("(s.seen_at_ns, s.sensor_id) < (?, ?)")
            args += [seen_ns, cursor[1]]
    inner = ", ".join(f"s.{term}" for term in order.split(", "))
    outer = ", ".join(f"p.{term}" for term in order.split(", "))
    sql = f"""
WITH page AS (
    SELECT s.sensor_id, s.seen_at_ns FROM sensors s{" INDEXED BY sensors_by_seen" if by_seen else ""}
    WHERE {" AND ".join(where)} ORDER BY {inner} LIMIT ?
)
SELECT p.sensor_id, p.seen_at_ns, l.type, l.ts, l.value, l.unit, l.location
FROM page p JOIN latest l ON l.sensor_id = p.sensor_id
ORDER BY {outer}, l.type
"""
    return sql, [*args, limit + 1]


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
