"""PostgreSQL (TimescaleDB when present): COPY into a staging table, then one statement
that inserts new rows (ON CONFLICT DO NOTHING) and folds exactly those rows into the
one-minute aggregates and the latest reading per sensor and type, all in one transaction,
so replays change nothing; the alert lifecycle runs in that transaction on the new rows."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg

from consumer_pool.alerts import AlertEvent, Rule
from consumer_pool.errors import BootError, SinkError
from consumer_pool.sinks import lifecycle
from consumer_pool.sinks.base import Sink, Written
from pipeline.reading import utc_text
from pipeline.record import Record

log = logging.getLogger(__name__)

COLUMNS = "sensor_id, type, ts, value, unit, location, ingested_at_ns, stored_at_ns"

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    sensor_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    unit TEXT,
    location TEXT,
    ingested_at_ns BIGINT NOT NULL,
    stored_at_ns BIGINT NOT NULL,
    PRIMARY KEY (sensor_id, type, ts)
);
CREATE TABLE IF NOT EXISTS readings_1m (
    sensor_id TEXT NOT NULL,
    type TEXT NOT NULL,
    minute TIMESTAMPTZ NOT NULL,
    count BIGINT NOT NULL,
    min DOUBLE PRECISION NOT NULL,
    max DOUBLE PRECISION NOT NULL,
    sum DOUBLE PRECISION NOT NULL,
    avg DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (sensor_id, type, minute)
);
CREATE INDEX IF NOT EXISTS readings_by_sensor_ts ON readings (sensor_id, ts);
CREATE TABLE IF NOT EXISTS latest (
    sensor_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    unit TEXT,
    location TEXT,
    PRIMARY KEY (sensor_id, type)
);
"""

# A database from before `latest` existed: fill it once from the stored readings.
BACKFILL_LATEST = """
INSERT INTO latest (sensor_id, type, ts, value, unit, location)
SELECT DISTINCT ON (sensor_id, type) sensor_id, type, ts, value, unit, location
FROM readings ORDER BY sensor_id, type, ts DESC
"""

# The rule-relevant rows this transaction inserted (stored_at_ns is the transaction's own).
NEW_ROWS = """
SELECT r.sensor_id, r.type, r.ts FROM readings_stage s
JOIN readings r USING (sensor_id, type, ts)
WHERE r.stored_at_ns = %(stored_at_ns)s AND s.type = ANY(%(types)s)
"""
SENSORS_AFTER = "SELECT DISTINCT sensor_id FROM latest WHERE sensor_id > %s ORDER BY sensor_id LIMIT %s"
PRUNE_RAW = (
    "DELETE FROM readings WHERE (sensor_id, type, ts) IN"
    " (SELECT sensor_id, type, ts FROM readings WHERE sensor_id = %s AND ts < %s LIMIT %s)"
)
PRUNE_AGG = (
    "DELETE FROM readings_1m WHERE (sensor_id, type, minute) IN"
    " (SELECT sensor_id, type, minute FROM readings_1m WHERE sensor_id = %s AND minute < %s LIMIT %s)"
)
PRUNE_STEP_ROWS = 2000

STAGED = "sensor_id, type, ts, value, unit, location, ingested_at_ns"
STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS readings_stage (sensor_id TEXT, type TEXT, ts TIMESTAMPTZ,"
    " value DOUBLE PRECISION, unit TEXT, location TEXT, ingested_at_ns BIGINT) ON COMMIT DELETE ROWS"
)

# COPY text format: backslash, tab, newline and carriage return are escaped; \N is NULL.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

UPSERT = f"""
WITH new AS (
    INSERT INTO readings ({COLUMNS})
    SELECT {STAGED}, %(stored_at_ns)s FROM readings_stage
    ON CONFLICT (sensor_id, type, ts) DO NOTHING
    RETURNING sensor_id, type, ts, value, unit, location
), folded AS (
    INSERT INTO readings_1m AS a (sensor_id, type, minute, count, min, max, sum, avg)
    SELECT sensor_id, type, date_trunc('minute', ts), count(*), min(value), max(value), sum(value), avg(value)
    FROM new GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (sensor_id, type, minute) DO UPDATE SET
        count = a.count + excluded.count,
        min = least(a.min, excluded.min),
        max = greatest(a.max, excluded.max),
        sum = a.sum + excluded.sum,
        avg = (a.sum + excluded.sum) / (a.count + excluded.count)
    RETURNING 1
), latest_rows AS (
    INSERT INTO latest AS l (sensor_id, type, ts, value, unit, location)
    SELECT DISTINCT ON (sensor_id, type) sensor_id, type, ts, value, unit, location
    FROM new ORDER BY sensor_id, type, ts DESC
    ON CONFLICT (sensor_id, type) DO UPDATE SET
        ts = excluded.ts, value = excluded.value, unit = excluded.unit, location = excluded.location
    WHERE excluded.ts > l.ts
    RETURNING 1
)
SELECT count(*) FROM new
"""


def _text(value: str | None) -> str:
    return "\\N" if value is None else value.translate(_ESCAPES)


class PostgresSink(Sink):
    """psycopg 3; reconnects after a lost connection (the batch is retried by the worker)."""

    name = "postgres"

    def __init__(self, url: str, connect_timeout: int = 5, rules: tuple[Rule, ...] = ()) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.lifecycle = lifecycle.PostgresLifecycle(rules) if rules else None
        self._conn: psycopg.Connection | None = None
        self._sweep_from = ""  # retention: the last sensor_id pruned in this sweep

    def setup(self) -> None:
        try:
            conn = self._connect(stage=False)
            with conn.transaction():
                # NOTE: workers boot together; serialise the DDL instead of racing on it.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('sensor_pipeline.schema'))")
                conn.execute(SCHEMA)
                conn.execute(lifecycle.SCHEMA)
                self._hypertable(conn)
                if not conn.execute("SELECT EXISTS (SELECT 1 FROM latest)").fetchone()[0]:  # type: ignore[index]
                    conn.execute(BACKFILL_LATEST)
            conn.execute(STAGE)
        except psycopg.Error as e:
            raise BootError(f"PostgreSQL at {self._safe_url()} is not usable: {e}") from e
        self._conn = conn

    def _connect(self, stage: bool = True) -> psycopg.Connection:
        conn = psycopg.connect(
            self.url, connect_timeout=self.connect_timeout, autocommit=True, options="-c TimeZone=UTC"
        )
        if stage:
            conn.execute(STAGE)
        return conn

    @staticmethod
    def _hypertable(conn: psycopg.Connection) -> None:
        """Turn `readings` into a TimescaleDB hypertable when the extension is installed."""
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        if not available:
            return
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute("SELECT create_hypertable('readings', 'ts', if_not_exists => TRUE, migrate_data => TRUE)")
        log.info("readings is a TimescaleDB hypertable")

    def _safe_url(self) -> str:
        """The URL without its password, for logs."""
        params = psycopg.conninfo.conninfo_to_dict(self.url)
        params.pop("password", None)
        return psycopg.conninfo.make_conninfo("", **params)

    def write(self, batch: Sequence[Record]) -> Written:
        if not batch:
            return Written(0)
        # PERF: COPY text built by hand; psycopg's write_row() was a fifth of a worker's CPU.
        # sensor_id is [A-Za-z0-9._:-] and needs no escaping.
        text = "".join(
            f"{r.reading.sensor_id}\t{_text(r.reading.type)}\t{r.ts}\t{r.reading.value!r}"
            f"\t{_text(r.reading.unit)}\t{_text(r.reading.location)}\t{r.ingested_at_ns}\n"
            for r in batch
        )
        stored_at_ns = time.time_ns()
        try:
            with self._transaction() as cur:
                with cur.copy(f"COPY readings_stage ({STAGED}) FROM STDIN") as copy:
                    copy.write(text.encode())
                cur.execute(UPSERT, {"stored_at_ns": stored_at_ns})
                (inserted,) = cur.fetchone()  # type: ignore[misc]
                if self.lifecycle is None:
                    return Written(int(inserted))
                return Written(int(inserted), self.lifecycle.run(cur, self._new_candidates(cur, batch, stored_at_ns)))
        except psycopg.Error as e:
            raise SinkError(f"PostgreSQL write failed: {e}") from e

    def _new_candidates(self, cur: psycopg.Cursor, batch: Sequence[Record], stored_at_ns: int) -> list[Record]:
        assert self.lifecycle is not None
        candidates = {(r.reading.sensor_id, r.reading.type, r.ts): r for r in self.lifecycle.candidates(batch)}
        if not candidates:
            return []
        found = cur.execute(NEW_ROWS, {"stored_at_ns": stored_at_ns, "types": sorted(self.lifecycle.types)})
        return [candidates[key] for s, t, ts in found.fetchall() if (key := (s, t, utc_text(ts))) in candidates]

    def published(self, events: Sequence[AlertEvent]) -> None:
        if self.lifecycle is None or not events:
            return
        try:
            with self._transaction() as cur:
                self.lifecycle.mark(cur, events)
        except psycopg.Error as e:
            raise SinkError(f"PostgreSQL write failed: {e}") from e

    def prune(self, raw_before: str | None, agg_before: str | None, sensors: int) -> tuple[int, bool]:
        """Delete old rows sensor by sensor, at most PRUNE_STEP_ROWS per sensor and table per
        call, each sensor in its own short transaction."""
        deleted = 0
        try:
            with self._transaction() as cur:
                batch = [row[0] for row in cur.execute(SENSORS_AFTER, (self._sweep_from, sensors)).fetchall()]
            for sensor_id in batch:
                with self._transaction() as cur:
                    if raw_before:
                        deleted += cur.execute(PRUNE_RAW, (sensor_id, raw_before, PRUNE_STEP_ROWS)).rowcount
                    if agg_before:
                        deleted += cur.execute(PRUNE_AGG, (sensor_id, agg_before, PRUNE_STEP_ROWS)).rowcount
        except psycopg.Error as e:
            raise SinkError(f"PostgreSQL retention failed: {e}") from e
        done = len(batch) < sensors
        self._sweep_from = "" if done else batch[-1]
        return deleted, done

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor]:
        """A transaction on the (re)connected connection."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        conn = self._conn
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
