"""The store, as the tests, the gate and the benches see it: throwaway databases and row counts.

A database per test (or bench run) keeps counts exact without cleaning tables; it is
dropped WITH (FORCE) so a pool that is still connected cannot keep it alive.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from harness.process import unique


@contextmanager
def throwaway_database(base_url: str, prefix: str = "test_db") -> Iterator[str]:
    """Create a fresh database on the server of `base_url`; yields its URL; drops it afterwards."""
    name = unique(prefix).replace("-", "_")
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base_url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_rows(path: str, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    with sqlite3.connect(path, timeout=30) as conn:
        return conn.execute(sql, params).fetchall()


def sqlite_count(path: str, table: str = "readings") -> int:
    return sqlite_rows(path, f"SELECT count(*) FROM {table}")[0][0]


def pg_rows(url: str, sql: str, params: Sequence[object] = ()) -> list[tuple]:
    with psycopg.connect(url, options="-c TimeZone=UTC") as conn:
        return conn.execute(sql, params).fetchall()


def pg_count(url: str, table: str = "readings") -> int:
    return pg_rows(url, f"SELECT count(*) FROM {table}")[0][0]


@dataclass(frozen=True)
class StoreCount:
    rows: int
    last_stored_ns: int | None


class Store:
    """Read-only view of the pool's `readings` table (SQLite file or PostgreSQL), counted by prefix.

    A run is recognised by its sensor_id prefix (`<run_id>-`), so counts stay exact on a
    database that other traffic shares. A store the pool has not created yet counts 0.
    """

    def __init__(self, sqlite_path: str | None = None, database_url: str | None = None) -> None:
        if not sqlite_path and not database_url:
            raise ValueError("a SQLite path or a database URL is needed")
        self.sqlite_path = sqlite_path
        self.database_url = database_url
        self._pg: psycopg.Connection | None = None
        self._sqlite: sqlite3.Connection | None = None

    def count(self, prefix: str) -> StoreCount:
        """Rows whose sensor_id starts with `prefix`, and when the last of them was stored."""
        rows = self._query("SELECT count(*), max(stored_at_ns) FROM readings WHERE sensor_id LIKE {p} || '%'", prefix)
        n, last = rows[0] if rows else (0, None)
        return StoreCount(int(n or 0), int(last) if last is not None else None)

    def e2e_ms(self, prefix: str) -> list[float]:
        """API receipt -> stored, in ms, of every row whose sensor_id starts with `prefix`, sorted:
        the run's own end-to-end latencies, exact (no histogram buckets)."""
        sql = "SELECT stored_at_ns - ingested_at_ns FROM readings WHERE sensor_id LIKE {p} || '%' ORDER BY 1"
        return [ns / 1e6 for (ns,) in self._query(sql, prefix)]

    def keys(self, prefix: str) -> list[tuple[str, str, str]]:
        """(sensor_id, type, ts) of every row whose sensor_id starts with `prefix`."""
        return [
            (str(a), str(b), str(c))
            for a, b, c in self._query(
                "SELECT sensor_id, type, ts FROM readings WHERE sensor_id LIKE {p} || '%'", prefix
            )
        ]

    def has(self, sensor_id: str, kind: str, ts: str) -> bool:
        """Whether this row is readable now (committed), on a connection kept for repeated polls."""
        if self.database_url:
            if self._pg is None:
                self._pg = psycopg.connect(self.database_url, autocommit=True)
            sql = "SELECT 1 FROM readings WHERE sensor_id = %s AND type = %s AND ts = %s"
            try:
                return self._pg.execute(sql, (sensor_id, kind, ts)).fetchone() is not None
            except psycopg.errors.UndefinedTable:
                return False
        if self._sqlite is None:
            if not Path(self.sqlite_path or "").exists():
                return False
            self._sqlite = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True, timeout=10)
        sql = "SELECT 1 FROM readings WHERE sensor_id = ? AND type = ? AND ts = ?"
        try:
            return self._sqlite.execute(sql, (sensor_id, kind, ts)).fetchone() is not None
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return False
            raise

    def close(self) -> None:
        for conn in (self._pg, self._sqlite):
            if conn is not None:
                conn.close()
        self._pg = self._sqlite = None

    def _query(self, sql: str, prefix: str) -> list[tuple]:
        """`sql` with `{p}` bound to `prefix`; no rows when the pool has not created the table yet."""
        if self.database_url:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                try:
                    return conn.execute(sql.format(p="%s"), (prefix,)).fetchall()
                except psycopg.errors.UndefinedTable:
                    return []
        path = Path(self.sqlite_path or "")
        if not path.exists():
            return []
        # NOTE: read-only, so reading never takes a write lock the pool is waiting for.
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql.format(p="?"), (prefix,)).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
        finally:
            db.close()
