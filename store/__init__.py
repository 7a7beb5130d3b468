"""The store: schema and its upgrades, writes, reads, retention, alert persistence, one
error tree, for SQLite (store/sqlite.py) and PostgreSQL (store/postgres.py) over a shared
base (store/base.py). The pool writes through a `Writer`, the API reads through a `Reader`,
the harness and the benches look through a `Probe`; this package imports only `pipeline`.

A backend's module (and its driver) is imported only when it is opened.
"""

from __future__ import annotations

from pipeline.alerts import Rule
from store.base import Reader, Writer, Written
from store.dialect import BUCKETS, Bucket
from store.errors import BadCursor, StoreError, StoreSetupError, StoreUnavailable
from store.reads import SENSOR_SORTS, AlertState, Page, SensorQuery, SensorSort

KINDS = ("sqlite", "postgres")


def open_writer(
    kind: str, sqlite_path: str, database_url: str, rules: tuple[Rule, ...] = (), webhooks: tuple[str, ...] = ()
) -> Writer:
    """The writer of store `kind` (SINK), not yet set up; raises StoreSetupError for a
    PostgreSQL store without a URL and ValueError for an unknown kind. `webhooks`: the URLs
    each alert raise and clear is queued for in the outbox (store/outbox.py)."""
    if kind == "sqlite":
        from store.sqlite import SqliteWriter

        return SqliteWriter(sqlite_path, rules=rules, webhooks=webhooks)
    if kind == "postgres":
        if not database_url:
            raise StoreSetupError("SINK=postgres needs DATABASE_URL")
        from store.postgres import PostgresWriter

        return PostgresWriter(database_url, rules=rules, webhooks=webhooks)
    raise ValueError(f"unknown store {kind!r}")


def open_reader(kind: str, sqlite_path: str, database_url: str) -> Reader | None:
    """The reader of the store the pool writes, or None when it writes none (SINK=console)."""
    if kind == "sqlite":
        from store.sqlite import SqliteReader

        return SqliteReader(sqlite_path)
    if kind == "postgres" and database_url:
        from store.postgres import PostgresReader

        return PostgresReader(database_url)
    return None


__all__ = [
    "BUCKETS",
    "KINDS",
    "SENSOR_SORTS",
    "AlertState",
    "BadCursor",
    "Bucket",
    "Page",
    "Reader",
    "SensorQuery",
    "SensorSort",
    "StoreError",
    "StoreSetupError",
    "StoreUnavailable",
    "Writer",
    "Written",
    "open_reader",
    "open_writer",
]
