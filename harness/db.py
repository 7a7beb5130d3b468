"""The store, as the tests, the gate and the benches see it: throwaway databases and row counts
(read through store/probe.py; the raw-row helpers are for tests that check tables themselves).

A database per test (or bench run) keeps counts exact without cleaning tables; it is
dropped WITH (FORCE) so a pool that is still connected cannot keep it alive.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from harness.process import unique
from store.probe import Probe


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
    """The pool's `readings` (SQLite file or PostgreSQL) as a run sees them, through the
    store's own probe (store/probe.py): counted by sensor_id prefix, 0 before the pool made them."""

    def __init__(self, sqlite_path: str | None = None, database_url: str | None = None) -> None:
        self.probe = Probe(sqlite_path, database_url)

    def count(self, prefix: str) -> StoreCount:
        """Rows whose sensor_id starts with `prefix`, and when the last of them was stored."""
        return StoreCount(*self.probe.count(prefix))

    def e2e_ms(self, prefix: str) -> list[float]:
        """API receipt -> stored, in ms, of every row whose sensor_id starts with `prefix`, sorted:
        the run's own end-to-end latencies, exact (no histogram buckets)."""
        return [ns / 1e6 for ns in self.probe.latencies_ns(prefix)]

    def keys(self, prefix: str) -> list[tuple[str, str, str]]:
        """(sensor_id, type, ts) of every row whose sensor_id starts with `prefix`."""
        return self.probe.keys(prefix)

    def has(self, sensor_id: str, kind: str, ts: str) -> bool:
        """Whether this row is readable now (committed), on a connection kept for repeated polls."""
        return self.probe.has(sensor_id, kind, ts)

    def close(self) -> None:
        self.probe.close()
