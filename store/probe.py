"""What the harness, the gate and the benches read from a store: counts, stored values and
end-to-end latencies of the rows whose sensor_id starts with a prefix.

A run is recognised by its prefix (`<run_id>-`), so counts stay exact on a database other
traffic shares. Synchronous, one connection per call; SQLite is opened read-only, so a probe
never takes a lock the pool waits for. A store the pool has not created yet has no rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from store.dialect import POSTGRES, SQLITE

COUNT = "SELECT count(*), max(stored_at_ns) FROM readings WHERE sensor_id LIKE ? || '%'"
LATENCIES = (
    "SELECT stored_at_ns - ingested_at_ns FROM readings"
    " WHERE sensor_id LIKE ? || '%' AND ingested_at_ns >= ? ORDER BY 1"
)
VALUES = "SELECT value FROM readings WHERE sensor_id LIKE ? || '%'"
SPAN = "SELECT min(stored_at_ns), max(stored_at_ns) FROM readings WHERE sensor_id LIKE ? || '%'"
KEYS = "SELECT sensor_id, type, ts FROM readings WHERE sensor_id LIKE ? || '%'"
HAS = "SELECT 1 FROM readings WHERE sensor_id = ? AND type = ? AND ts = ?"
AGGREGATED = "SELECT COALESCE(SUM(count), 0) FROM readings_1m WHERE sensor_id LIKE ? || '%'"


class Probe:
    """Read-only look at the `readings` table of a SQLite file or a PostgreSQL database."""

    def __init__(self, sqlite_path: str | None = None, database_url: str | None = None) -> None:
        if not sqlite_path and not database_url:
            raise ValueError("a SQLite path or a database URL is needed")
        self.sqlite_path = sqlite_path
        self.database_url = database_url
        self._pg: Any = None  # psycopg.Connection, kept by has() for repeated polls
        self._sqlite: sqlite3.Connection | None = None

    def count(self, prefix: str = "") -> tuple[int, int | None]:
        """How many rows, and when the last of them was stored (ns since the epoch)."""
        rows = self._query(COUNT, (prefix,))
        n, last = rows[0] if rows else (0, None)
        return int(n or 0), int(last) if last is not None else None

    def latencies_ns(self, prefix: str = "", ingested_from_ns: int = 0) -> list[int]:
        """API receipt -> stored, in ns, of each row ingested from `ingested_from_ns` on, sorted."""
        return [int(ns) for (ns,) in self._query(LATENCIES, (prefix, ingested_from_ns))]

    def values(self, prefix: str = "") -> list[float]:
        """The stored values, in no particular order."""
        return [float(v) for (v,) in self._query(VALUES, (prefix,))]

    def span(self, prefix: str = "") -> tuple[int | None, int | None]:
        """When the first and the last row were stored (ns since the epoch)."""
        rows = self._query(SPAN, (prefix,))
        first, last = rows[0] if rows else (None, None)
        return first, last

    def keys(self, prefix: str = "") -> list[tuple[str, str, str]]:
        """(sensor_id, type, ts) of every row, ts as the store returns it."""
        return [(str(a), str(b), str(c)) for a, b, c in self._query(KEYS, (prefix,))]

    def aggregated(self, prefix: str = "") -> int:
        """How many readings the minute aggregates (readings_1m) count."""
        rows = self._query(AGGREGATED, (prefix,))
        return int(rows[0][0]) if rows else 0

    def has(self, sensor_id: str, kind: str, ts: str) -> bool:
        """Whether this row is readable now (committed), on a connection kept for repeated
        polls (the gate's outside latency probe polls every few ms); close() ends it."""
        args = (sensor_id, kind, ts)
        if self.database_url:
            import psycopg

            if self._pg is None:
                self._pg = psycopg.connect(self.database_url, autocommit=True)
            try:
                return self._pg.execute(POSTGRES.sql(HAS), args).fetchone() is not None
            except psycopg.errors.UndefinedTable:
                return False
        if self._sqlite is None:
            if not Path(self.sqlite_path or "").exists():
                return False
            self._sqlite = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True, timeout=10)
        try:
            return self._sqlite.execute(SQLITE.sql(HAS), args).fetchone() is not None
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return False
            raise

    def close(self) -> None:
        """Ends the connection has() keeps."""
        for conn in (self._pg, self._sqlite):
            if conn is not None:
                conn.close()
        self._pg = self._sqlite = None

    def _query(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self.database_url:
            import psycopg

            with psycopg.connect(self.database_url, autocommit=True) as conn:
                try:
                    return conn.execute(POSTGRES.sql(sql), args).fetchall()
                except psycopg.errors.UndefinedTable:
                    return []
        path = Path(self.sqlite_path or "")
        if not path.exists():
            return []
        lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return lite.execute(SQLITE.sql(sql), args).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
        finally:
            lite.close()
