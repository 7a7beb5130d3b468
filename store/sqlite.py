"""The embedded default store: SQLite in WAL mode, one transaction per batch; the pool
writes through `SqliteWriter`, the API reads through `SqliteReader`.

Duplicates are skipped by the primary key (sensor_id, type, ts). The one-minute aggregates
and the latest reading per sensor and type are kept by triggers that fire only for rows
really inserted, in the same transaction, so a replay neither stores a reading twice nor
counts it twice; the alert lifecycle runs in that transaction too, on the new rows only.
`ts` is fixed-width UTC text, so text order is time order for the read API
(store/dialect.py).
"""

from __future__ import annotations

import asyncio
import fcntl
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.alerts import Rule
from pipeline.record import Record
from store import alerts, ledger, outbox, reads, rollups
from store.base import Reader, Writer, Written
from store.dialect import SQLITE, SQLITE_MINUTE
from store.errors import StoreSetupError, StoreUnavailable

SCHEMA = f"""
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
    VALUES (NEW.sensor_id, NEW.type, {SQLITE_MINUTE.format(ts="NEW.ts")}, 1, NEW.value, NEW.value, NEW.value, NEW.value)
    ON CONFLICT (sensor_id, type, minute) DO UPDATE SET
        count = readings_1m.count + 1,
        min = min(readings_1m.min, excluded.min),
        max = max(readings_1m.max, excluded.max),
        sum = readings_1m.sum + excluded.sum,
        avg = (readings_1m.sum + excluded.sum) / (readings_1m.count + 1);
END;
CREATE INDEX IF NOT EXISTS readings_by_sensor_ts ON readings (sensor_id, ts);
CREATE TABLE IF NOT EXISTS latest (
    sensor_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    unit TEXT,
    location TEXT,
    PRIMARY KEY (sensor_id, type)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS latest_on_insert AFTER INSERT ON readings
BEGIN
    INSERT INTO latest (sensor_id, type, ts, value, unit, location)
    VALUES (NEW.sensor_id, NEW.type, NEW.ts, NEW.value, NEW.unit, NEW.location)
    ON CONFLICT (sensor_id, type) DO UPDATE SET
        ts = excluded.ts, value = excluded.value, unit = excluded.unit, location = excluded.location
    WHERE excluded.ts > latest.ts;
END;
CREATE TABLE IF NOT EXISTS sensors (
    sensor_id TEXT NOT NULL PRIMARY KEY,
    seen_at_ns BIGINT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sensors_by_seen ON sensors (seen_at_ns, sensor_id);
CREATE TRIGGER IF NOT EXISTS sensors_on_insert AFTER INSERT ON readings
BEGIN
    INSERT INTO sensors (sensor_id, seen_at_ns) VALUES (NEW.sensor_id, NEW.ingested_at_ns)
    ON CONFLICT (sensor_id) DO UPDATE SET seen_at_ns = excluded.seen_at_ns
    WHERE excluded.seen_at_ns > sensors.seen_at_ns;
END;
CREATE VIRTUAL TABLE IF NOT EXISTS sensor_ids USING fts5(sensor_id, tokenize='trigram');
CREATE TRIGGER IF NOT EXISTS sensor_ids_on_insert AFTER INSERT ON sensors
BEGIN
    INSERT INTO sensor_ids (sensor_id) VALUES (NEW.sensor_id);
END;
"""

# A database from before `latest` existed: fill it once from the stored readings.
BACKFILL_LATEST = """
INSERT INTO latest (sensor_id, type, ts, value, unit, location)
SELECT sensor_id, type, max(ts), value, unit, location FROM readings GROUP BY sensor_id, type
"""

# A database from before `sensors` existed: one row per sensor of `latest`, seen when its
# newest stored reading arrived (0 when retention already pruned them all).
BACKFILL_SENSORS = """
INSERT INTO sensors (sensor_id, seen_at_ns)
SELECT l.sensor_id, COALESCE((SELECT max(r.ingested_at_ns) FROM readings r WHERE r.sensor_id = l.sensor_id), 0)
FROM (SELECT DISTINCT sensor_id FROM latest) l
"""

ROLLUPS = "".join(
    rollups.SCHEMA.format(table=rollups.TABLE[r], time="TEXT", options=" WITHOUT ROWID") for r in rollups.ROLLUPS
)
BACKFILL_ROLLUPS = [
    (
        rollups.EMPTY.format(table=rollups.TABLE[r]),
        rollups.BACKFILL.format(table=rollups.TABLE[r], bucket=SQLITE.buckets[r]),
    )
    for r in rollups.ROLLUPS
]
FOLD = {
    r: f"INSERT INTO {rollups.TABLE[r]} AS r (sensor_id, type, start, count, min, max, sum)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)" + rollups.MERGE.format(least="min", greatest="max")
    for r in rollups.ROLLUPS
}

NEW_ROW = "SELECT 1 FROM readings WHERE sensor_id = ? AND type = ? AND ts = ? AND stored_at_ns = ?"

INSERT = (
    "INSERT INTO readings (sensor_id, type, ts, value, unit, location, ingested_at_ns, stored_at_ns)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sensor_id, type, ts) DO NOTHING"
)


def _columns(r: Record) -> tuple[object, ...]:
    reading = r.reading
    return (reading.sensor_id, reading.type, r.ts, reading.value, reading.unit, reading.location, r.ingested_at_ns)


class SqliteWriter(Writer):
    """Batched inserts into a local SQLite file (parent folders are created)."""

    name = "sqlite"
    dialect = SQLITE

    def __init__(
        self, path: str, busy_timeout_s: float = 30.0, rules: tuple[Rule, ...] = (), webhooks: tuple[str, ...] = ()
    ) -> None:
        super().__init__(rules, webhooks)
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
                conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}{ROLLUPS}{alerts.SCHEMA}{ledger.SCHEMA}{outbox.SCHEMA}")
                alerts.upgrade(conn, SQLITE)
                if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM latest)").fetchone()[0]:
                    conn.execute(BACKFILL_LATEST)
                if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM sensors)").fetchone()[0]:
                    conn.execute("DELETE FROM sensor_ids")
                    conn.execute(BACKFILL_SENSORS)  # its trigger fills sensor_ids again
                elif conn.execute("SELECT NOT EXISTS (SELECT 1 FROM sensor_ids)").fetchone()[0]:
                    conn.execute("INSERT INTO sensor_ids (sensor_id) SELECT sensor_id FROM sensors")
                for empty, backfill in BACKFILL_ROLLUPS:
                    if conn.execute(empty).fetchone()[0]:
                        conn.execute(backfill)
                conn.execute("COMMIT")
        except (OSError, sqlite3.Error) as e:
            raise StoreSetupError(f"cannot open SQLite database {self.path}: {e}") from e
        self._conn = conn

    def write(self, batch: Sequence[Record]) -> Written:
        if not batch:
            return Written(0)
        stored_at = time.time_ns()
        rows = [(*_columns(r), stored_at) for r in batch]
        with self._transaction() as cur:
            cur.executemany(INSERT, rows)
            inserted = cur.rowcount  # NOTE: excludes the triggers' changes

            def is_new(r: Record) -> bool:
                return bool(cur.execute(NEW_ROW, (r.reading.sensor_id, r.reading.type, r.ts, stored_at)).fetchone())

            if inserted:
                self.ledger.apply(cur, ledger.first_new(batch, is_new))
                hours, days = rollups.fold(batch if inserted == len(batch) else self._inserted(cur, batch, stored_at))
                cur.executemany(FOLD["1h"], hours)
                cur.executemany(FOLD["1d"], days)
            if self.lifecycle is None:
                return Written(inserted)
            new = [r for r in self.lifecycle.candidates(batch) if is_new(r)]
            return Written(inserted, self.lifecycle.run(cur, new))

    @staticmethod
    def _inserted(cur: sqlite3.Cursor, batch: Sequence[Record], stored_at: int) -> list[Record]:
        """The records of a batch this transaction inserted (a replay or a duplicate inside
        the batch was skipped; the first of duplicates is the one stored)."""
        first = {(r.reading.sensor_id, r.reading.type, r.ts): r for r in reversed(batch)}
        return [r for key, r in first.items() if cur.execute(NEW_ROW, (*key, stored_at)).fetchone()]

    def _select(self, sql: str, args: Sequence[Any]) -> list[Any]:
        assert self._conn is not None, "setup() first"
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"SQLite read failed: {e}") from e

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error); sqlite3 errors become StoreUnavailable."""
        assert self._conn is not None, "setup() first"
        try:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise StoreUnavailable(f"SQLite write failed: {e}") from e

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class SqliteReader(Reader):
    """Read-only connections, one per worker thread (WAL lets them read while the pool
    writes); acknowledging opens a writable one."""

    dialect = SQLITE

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

    def _fetch(self, sql: str, args: Sequence[Any]) -> list[Any]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"SQLite: {e}") from e

    async def _run(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return await asyncio.to_thread(self._fetch, sql, args)

    def _ack(self, alert_id: str) -> dict[str, Any] | None:
        """The first acknowledgement sets `acked_at` and, in the same transaction, queues its
        webhook event for the URLs the raise went to (store/outbox.py)."""
        try:
            conn = self._conn(writable=True)
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                first = conn.execute(outbox.ACK_FIRST, (reads.now_text(), alert_id)).rowcount
                row = conn.execute(alerts.ALERT, (alert_id,)).fetchone()
                if first and row is not None:
                    urls = [u for (u,) in conn.execute(outbox.URLS_OF, (alert_id,)).fetchall()]
                    conn.executemany(outbox.INSERT, outbox.rows([alerts.row_of(row)], urls, time.time_ns(), "acked"))
        except sqlite3.Error as e:
            raise StoreUnavailable(f"SQLite: {e}") from e
        return reads.alert(row) if row else None

    async def ack(self, alert_id: str) -> dict[str, Any] | None:
        item = await asyncio.to_thread(self._ack, alert_id)
        if item is not None:
            await self.with_notifications([item])
        return item

    async def close(self) -> None:
        """Thread-local connections close with their threads."""
