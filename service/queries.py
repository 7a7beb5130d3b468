"""The read side's queries: sensors, readings, aggregates, alerts, and acknowledging one.

Served from whichever store the pool writes (SINK): SQLite opened read-only (WAL lets it
read while the pool writes) on worker threads, PostgreSQL through an async connection
pool, so the event loop never waits on the database. Every list is keyset-paginated: the
cursor is the last item's sort key, opaque to clients (docs/contract.md, "Read API").
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

from consumer_pool.sinks.lifecycle import COLUMNS as ALERT_COLUMNS
from consumer_pool.sinks.lifecycle import row_of
from pipeline.reading import utc_text

Bucket = Literal["1m", "5m", "1h", "1d"]
BUCKETS: tuple[Bucket, ...] = ("1m", "5m", "1h", "1d")
AlertState = Literal["active", "cleared", "all"]


class StoreUnavailable(Exception):
    """The store cannot be read (not created yet, or unreachable): 503."""


class BadCursor(ValueError):
    """A cursor this API did not hand out: 400."""


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


def _page(rows: list[Any], limit: int, item: Any, key: Any) -> Page:
    """`rows` were fetched with limit + 1: one more means there is a next page."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([item(r) for r in rows], encode_cursor(key(rows[-1])) if more and rows else None)


def _reading(row: Any) -> dict[str, Any]:
    return {"type": row[0], "timestamp": _ts(row[1]), "value": row[2], "unit": row[3], "location": row[4]}


def _ts(value: str | datetime) -> str:
    return value if isinstance(value, str) else utc_text(value)


def _minute(value: str | datetime) -> str:
    """An aggregate bucket's start as RFC 3339 UTC text (`2025-11-17T14:20:00Z`)."""
    if isinstance(value, str):
        return value
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store(Protocol):
    async def sensors(self, limit: int, cursor: str | None) -> Page: ...
    async def known(self, sensor_id: str) -> bool: ...
    async def readings(
        self,
        sensor_id: str,
        type_: str | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> Page: ...
    async def aggregates(
        self,
        sensor_id: str,
        type_: str | None,
        start: datetime,
        end: datetime,
        bucket: Bucket,
        limit: int,
        cursor: str | None,
    ) -> Page: ...
    async def alerts(self, state: AlertState, sensor_id: str | None, limit: int, cursor: str | None) -> Page: ...
    async def ack(self, alert_id: str) -> dict[str, Any] | None: ...
    async def close(self) -> None: ...


def _sensors(rows: list[Any], limit: int) -> Page:
    by_sensor: dict[str, dict[str, Any]] = {}
    for sensor_id, type_, ts, value, unit, location in rows:
        entry = by_sensor.setdefault(sensor_id, {"sensor_id": sensor_id, "types": [], "latest": {}})
        entry["types"].append(type_)
        entry["latest"][type_] = {"timestamp": _ts(ts), "value": value, "unit": unit, "location": location}
    items = list(by_sensor.values())
    more = len(items) > limit
    items = items[:limit]
    return Page(items, encode_cursor([items[-1]["sensor_id"]]) if more and items else None)


def _alert(row: Any) -> dict[str, Any]:
    return msgspec.to_builtins(row_of(row))


# --- SQL, written once with `?`; PostgreSQL gets `%s` --------------------------------

SENSORS = """
SELECT sensor_id, type, ts, value, unit, location FROM latest
WHERE sensor_id IN (SELECT DISTINCT sensor_id FROM latest WHERE sensor_id > ? ORDER BY sensor_id LIMIT ?)
ORDER BY sensor_id, type
"""
KNOWN = "SELECT 1 FROM latest WHERE sensor_id = ? LIMIT 1"
ALERTS = f"SELECT {ALERT_COLUMNS} FROM alerts WHERE {{where}} ORDER BY raised_at DESC, id DESC LIMIT ?"
ACK = "UPDATE alerts SET acked_at = COALESCE(acked_at, ?) WHERE id = ?"
ALERT = f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?"

# Aggregate buckets rolled up from the one-minute rows (text minutes in SQLite).
SQLITE_BUCKET = {
    "1m": "minute",
    "5m": "substr(minute, 1, 14) || printf('%02d', CAST(substr(minute, 15, 2) AS INTEGER) / 5 * 5) || ':00Z'",
    "1h": "substr(minute, 1, 13) || ':00:00Z'",
    "1d": "substr(minute, 1, 10) || 'T00:00:00Z'",
}
PG_BUCKET = {
    "1m": "minute",
    "5m": "date_bin('5 minutes', minute, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
    "1h": "date_trunc('hour', minute)",
    "1d": "date_trunc('day', minute)",
}
AGGREGATES = """
SELECT type, start, count, min, max, avg FROM (
    SELECT type, {bucket} AS start, CAST(sum(count) AS BIGINT) AS count, min(min) AS min, max(max) AS max,
           sum(sum) / sum(count) AS avg
    FROM readings_1m WHERE sensor_id = ? AND minute >= ? AND minute < ? {type_filter}
    GROUP BY type, start
) b WHERE {after} ORDER BY start, type LIMIT ?
"""


def _readings_sql(type_: str | None, start: Any, end: Any, cursor: list[Any] | None) -> tuple[str, list[Any]]:
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


def _alerts_sql(state: AlertState, sensor_id: str | None, cursor: list[Any] | None) -> tuple[str, list[Any]]:
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
    return ALERTS.format(where=" AND ".join(where)), args


def _aggregates_sql(
    buckets: dict[str, str], bucket: Bucket, type_: str | None, cursor: list[Any] | None, cast: str = ""
) -> tuple[str, list[Any]]:
    args: list[Any] = []
    type_filter = ""
    if type_ is not None:
        type_filter = "AND type = ?"
        args.append(type_)
    after = "1 = 1"
    if cursor is not None:
        after = f"(start > ?{cast} OR (start = ?{cast} AND type > ?))"
        args += [cursor[0], cursor[0], cursor[1]]
    sql = AGGREGATES.format(bucket=buckets[bucket], type_filter=type_filter, after=after)
    return sql, args


def _now_text() -> str:
    return utc_text(datetime.now(timezone.utc))


class _SqlStore:
    """The queries, written once; a subclass runs them and says how its columns compare."""

    buckets: dict[str, str] = SQLITE_BUCKET
    cast = ""  # how a cursor's text becomes a bucket start in SQL

    async def _run(self, sql: str, args: list[Any]) -> list[Any]:
        raise NotImplementedError

    def _bound(self, moment: datetime) -> Any:
        """A time bound as the `ts`/`minute` columns compare: fixed-width UTC text (SQLite)."""
        return utc_text(moment)

    async def sensors(self, limit: int, cursor: str | None) -> Page:
        after = decode_cursor(cursor, 1)
        return _sensors(await self._run(SENSORS, [after[0] if after else "", limit + 1]), limit)

    async def known(self, sensor_id: str) -> bool:
        return bool(await self._run(KNOWN, [sensor_id]))

    async def readings(
        self,
        sensor_id: str,
        type_: str | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> Page:
        key = decode_cursor(cursor, 2)
        sql, args = _readings_sql(type_, start and self._bound(start), end and self._bound(end), key)
        rows = await self._run(sql, [sensor_id, *args, limit + 1])
        return _page(rows, limit, _reading, lambda r: [_ts(r[1]), r[0]])

    async def aggregates(
        self,
        sensor_id: str,
        type_: str | None,
        start: datetime,
        end: datetime,
        bucket: Bucket,
        limit: int,
        cursor: str | None,
    ) -> Page:
        sql, args = _aggregates_sql(self.buckets, bucket, type_, decode_cursor(cursor, 2), self.cast)
        rows = await self._run(sql, [sensor_id, self._bound(start), self._bound(end), *args, limit + 1])
        return _page(rows, limit, _aggregate, lambda r: [_minute(r[1]), r[0]])

    async def alerts(self, state: AlertState, sensor_id: str | None, limit: int, cursor: str | None) -> Page:
        sql, args = _alerts_sql(state, sensor_id, decode_cursor(cursor, 2))
        return _page(await self._run(sql, [*args, limit + 1]), limit, _alert, lambda r: [r[5], r[0]])


class SqliteStore(_SqlStore):
    """Read-only connections, one per worker thread; acknowledging opens a writable one."""

    def __init__(self, path: str, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()

    def _conn(self, writable: bool = False) -> sqlite3.Connection:
        attr = "rw" if writable else "ro"
        conn = getattr(self._local, attr, None)
        if conn is None:
            if not Path(self.path).exists():
                raise StoreUnavailable(f"no SQLite database at {self.path} yet (is the pool running?)")
            try:
                conn = sqlite3.connect(
                    f"file:{self.path}?mode={attr}", uri=True, timeout=self.busy_timeout_s, check_same_thread=False
                )
            except sqlite3.Error as e:
                raise StoreUnavailable(f"cannot open {self.path}: {e}") from e
            setattr(self._local, attr, conn)
        return conn

    def _query(self, sql: str, args: list[Any]) -> list[Any]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"SQLite: {e}") from e

    async def _run(self, sql: str, args: list[Any]) -> list[Any]:
        return await asyncio.to_thread(self._query, sql, args)

    def _ack(self, alert_id: str) -> dict[str, Any] | None:
        try:
            conn = self._conn(writable=True)
            with conn:
                conn.execute(ACK, (_now_text(), alert_id))
            row = conn.execute(ALERT, (alert_id,)).fetchone()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"SQLite: {e}") from e
        return _alert(row) if row else None

    async def ack(self, alert_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._ack, alert_id)

    async def close(self) -> None:
        """Thread-local connections close with their threads."""


def _aggregate(row: Any) -> dict[str, Any]:
    return {"type": row[0], "start": _minute(row[1]), "count": row[2], "min": row[3], "max": row[4], "avg": row[5]}


def _pg(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresStore(_SqlStore):
    """psycopg's async connection pool, opened on first use (the API starts without the DB)."""

    buckets = PG_BUCKET
    cast = "::timestamptz"

    def _bound(self, moment: datetime) -> Any:
        return moment

    def __init__(self, url: str, size: int = 4) -> None:
        from psycopg_pool import AsyncConnectionPool

        self._pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=size,
            open=False,
            timeout=5.0,
            kwargs={"autocommit": True, "options": "-c TimeZone=UTC"},
        )
        self._opened = False

    async def _run(self, sql: str, args: list[Any]) -> list[Any]:
        import psycopg

        try:
            if not self._opened:
                await self._pool.open(wait=False)
                self._opened = True
            async with self._pool.connection() as conn:
                cur = await conn.execute(_pg(sql), args)
                return await cur.fetchall() if cur.description else []
        except (psycopg.Error, OSError) as e:
            raise StoreUnavailable(f"PostgreSQL: {e}") from e
        except Exception as e:  # psycopg_pool.PoolTimeout
            if type(e).__name__ == "PoolTimeout":
                raise StoreUnavailable(f"PostgreSQL: {e}") from e
            raise

    async def ack(self, alert_id: str) -> dict[str, Any] | None:
        await self._run(ACK, [_now_text(), alert_id])
        rows = await self._run(ALERT, [alert_id])
        return _alert(rows[0]) if rows else None

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()


def open_store(sink: str, sqlite_path: str, database_url: str) -> Store | None:
    """The store the pool writes, or None when it writes none (SINK=console)."""
    if sink == "sqlite":
        return SqliteStore(sqlite_path)
    if sink == "postgres" and database_url:
        return PostgresStore(database_url)
    return None
