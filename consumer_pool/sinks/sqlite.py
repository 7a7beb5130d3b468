"""The embedded default store: SQLite in WAL mode, one transaction per batch.

Duplicates are skipped by the primary key (sensor_id, type, ts). The one-minute aggregates
are kept by a trigger that fires only for rows really inserted, in the same transaction,
so a replay neither stores a reading twice nor counts it twice.
"""

from __future__ import annotations

import fcntl
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

from consumer_pool.errors import BootError, SinkError
from consumer_pool.sinks.base import Sink
from pipeline.record import Record

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    sensor_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    unit TEXT,
    location TEXT,
    ingested_at_ns BIGINT NOT NULL,
    stored_at_ns BIGINT NOT NULL,
    PRIMARY KEY (sensor_id, type, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings_1m (
    sensor_id TEXT NOT NULL,
    type TEXT NOT NULL,
    minute TEXT NOT NULL,
    count INTEGER NOT NULL,
    min DOUBLE PRECISION NOT NULL,
    max DOUBLE PRECISION NOT NULL,
    sum DOUBLE PRECISION NOT NULL,
    avg DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sensor_id, type, minute)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS readings_1m_on_insert AFTER INSERT ON readings
BEGIN
    INSERT INTO readings_1m (sensor_id, type, minute, count, min, max, sum, avg)
    VALUES (NEW.sensor_id, NEW.type, substr(NEW.ts, 1, 16) || ':00Z', 1, NEW.value, NEW.value, NEW.value, NEW.value)
    ON CONFLICT (sensor_id, type, minute) DO UPDATE SET
        count = readings_1m.count + 1,
        min = min(readings_1m.min, excluded.min),
        max = max(readings_1m.max, excluded.max),
        sum = readings_1m.sum + excluded.sum,
        avg = (readings_1m.sum + excluded.sum) / (readings_1m.count + 1);
END;
"""

INSERT = (
    "INSERT INTO readings (sensor_id, type, ts, value, unit, location, ingested_at_ns, stored_at_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sensor_id, type, ts) DO NOTHING"
)


def _columns(r: Record) -> tuple[object, ...]:
    reading = r.reading
    return (reading.sensor_id, reading.type, r.ts, reading.value, reading.unit, reading.location, r.ingested_at_ns)


class SqliteSink(Sink):
    """Batched inserts into a local SQLite file (parent folders are created)."""

    name = "sqlite"

    def __init__(self, path: str, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None

    def setup(self) -> None:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # NOTE: workers boot together, and switching a new file to WAL can fail at once with
            # "database is locked" (SQLite's busy timeout does not cover it): one at a time.
            with open(f"{self.path}.setup-lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                # NOTE: FULL, not NORMAL: offsets are committed after this write, so the write must
                # survive a power loss, not only a process crash (NORMAL loses the last commits then).
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
        except (OSError, sqlite3.Error) as e:
            raise BootError(f"cannot open SQLite database {self.path}: {e}") from e
        self._conn = conn

    def write(self, batch: Sequence[Record]) -> int:
        if not batch:
            return 0
        assert self._conn is not None, "setup() first"
        stored_at = time.time_ns()
        rows = [(*_columns(r), stored_at) for r in batch]
        try:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.executemany(INSERT, rows)
                inserted = cur.rowcount  # NOTE: excludes the trigger's changes
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            return inserted
        except sqlite3.Error as e:
            raise SinkError(f"SQLite write failed: {e}") from e

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
