"""PostgreSQL (TimescaleDB when present): COPY into a staging table, then one statement
that inserts new rows (ON CONFLICT DO NOTHING) and folds exactly those rows into the
one-minute aggregates and the latest reading per sensor and type, all in one transaction,
so replays change nothing; the alert lifecycle runs in that transaction on the new rows.
The pool writes through `PostgresWriter`; the API reads through `PostgresReader` (an async
connection pool, so the event loop never waits on the database)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool

from pipeline.alerts import AlertRow, Key, KeyState, Rule
from pipeline.reading import utc_text
from pipeline.record import Record
from store import alerts, ledger, outbox, reads, rollups
from store.base import Reader, Writer, Written
from store.dialect import POSTGRES
from store.errors import StoreSetupError, StoreUnavailable

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
CREATE TABLE IF NOT EXISTS sensors (
    sensor_id TEXT NOT NULL PRIMARY KEY,
    seen_at_ns BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS sensors_by_seen ON sensors (seen_at_ns, sensor_id);
"""

# A database from before `sensors` existed (store/sqlite.py has the same).
BACKFILL_SENSORS = """
INSERT INTO sensors (sensor_id, seen_at_ns)
SELECT l.sensor_id, COALESCE((SELECT max(r.ingested_at_ns) FROM readings r WHERE r.sensor_id = l.sensor_id), 0)
FROM (SELECT DISTINCT sensor_id FROM latest) l
"""

ROLLUPS = "".join(
    rollups.SCHEMA.format(table=rollups.TABLE[r], time="TIMESTAMPTZ", options="") for r in rollups.ROLLUPS
)
BACKFILL_ROLLUPS = [
    (
        rollups.EMPTY.format(table=rollups.TABLE[r]),
        rollups.BACKFILL.format(table=rollups.TABLE[r], bucket=POSTGRES.buckets[r]),
    )
    for r in rollups.ROLLUPS
]

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

# Which of these keys (readings carrying a seq) this transaction inserted.
NEW_KEYS = """
SELECT r.sensor_id, r.type, r.ts FROM readings r
JOIN unnest(%(sensors)s::text[], %(types)s::text[], %(ts)s::timestamptz[]) AS k(sensor_id, type, ts)
USING (sensor_id, type, ts) WHERE r.stored_at_ns = %(stored_at_ns)s
"""

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
    RETURNING sensor_id, type, ts, value, unit, location, ingested_at_ns
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
), rollup_1h AS (
    INSERT INTO readings_1h AS r (sensor_id, type, start, count, min, max, sum)
    SELECT sensor_id, type, date_trunc('hour', ts), count(*), min(value), max(value), sum(value)
    FROM new GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (sensor_id, type, start) DO UPDATE SET
    count = r.count + excluded.count,
    min = least(r.min, excluded.min),
    max = greatest(r.max, excluded.max),
    sum = r.sum + excluded.sum
    RETURNING 1
), rollup_1d AS (
    INSERT INTO readings_1d AS r (sensor_id, type, start, count, min, max, sum)
    SELECT sensor_id, type, date_trunc('day', ts), count(*), min(value), max(value), sum(value)
    FROM new GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (sensor_id, type, start) DO UPDATE SET
    count = r.count + excluded.count,
    min = least(r.min, excluded.min),
    max = greatest(r.max, excluded.max),
    sum = r.sum + excluded.sum
    RETURNING 1
), latest_rows AS (
    INSERT INTO latest AS l (sensor_id, type, ts, value, unit, location)
    SELECT DISTINCT ON (sensor_id, type) sensor_id, type, ts, value, unit, location
    FROM new ORDER BY sensor_id, type, ts DESC
    ON CONFLICT (sensor_id, type) DO UPDATE SET
        ts = excluded.ts, value = excluded.value, unit = excluded.unit, location = excluded.location
    WHERE excluded.ts > l.ts
    RETURNING 1
), seen AS (
    INSERT INTO sensors AS s (sensor_id, seen_at_ns)
    SELECT sensor_id, max(ingested_at_ns) FROM new GROUP BY sensor_id ORDER BY sensor_id
    ON CONFLICT (sensor_id) DO UPDATE SET seen_at_ns = excluded.seen_at_ns
    WHERE excluded.seen_at_ns > s.seen_at_ns
    RETURNING 1
)
SELECT count(*) FROM new
"""


def _text(value: str | None) -> str:
    return "\\N" if value is None else value.translate(_ESCAPES)


_LOAD = POSTGRES.sql(f"""
SELECT k.rule, k.sensor_id, k.type, s.last_ts, s.active_id, s.since, {", ".join("a." + f for f in alerts.FIELDS)}
FROM unnest(?::text[], ?::text[], ?::text[]) AS k(rule, sensor_id, type)
LEFT JOIN alert_state s ON s.rule = k.rule AND s.sensor_id = k.sensor_id AND s.type = k.type
LEFT JOIN alerts a ON a.rule = k.rule AND a.sensor_id = k.sensor_id AND a.type = k.type AND a.state = 'active'
""")


class PostgresLifecycle(alerts.Lifecycle):
    """One round trip for the states and open alerts of a batch's keys, not one per key."""

    def __init__(self, rules: tuple[Rule, ...], webhooks: tuple[str, ...] = ()) -> None:
        super().__init__(rules, POSTGRES, webhooks)

    def load(self, cur: Any, wanted: set[Key]) -> tuple[dict[Key, KeyState], dict[str, AlertRow]]:
        states: dict[Key, KeyState] = {}
        active: dict[str, AlertRow] = {}
        if not wanted:
            return states, active
        rules, sensors, types = (list(column) for column in zip(*wanted, strict=True))
        for found in cur.execute(_LOAD, (rules, sensors, types)).fetchall():
            key, last_ts, active_id, since, row = tuple(found[:3]), found[3], found[4], found[5], found[6:]
            if last_ts is not None:
                states[key] = KeyState(last_ts, active_id, since)
            if row[0] is not None:
                active[row[0]] = alerts.row_of(row)
        return states, active


class PostgresWriter(Writer):
    """psycopg 3; reconnects after a lost connection (the batch is retried by the worker)."""

    name = "postgres"
    dialect = POSTGRES

    def __init__(
        self, url: str, connect_timeout: int = 5, rules: tuple[Rule, ...] = (), webhooks: tuple[str, ...] = ()
    ) -> None:
        super().__init__(rules, webhooks)
        self.url = url
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection | None = None

    def _lifecycle(self, rules: tuple[Rule, ...]) -> alerts.Lifecycle:
        return PostgresLifecycle(rules, self.webhooks)

    def setup(self) -> None:
        try:
            conn = self._connect(stage=False)
            with conn.transaction():
                # NOTE: workers boot together; serialise the DDL instead of racing on it.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('sensor_pipeline.schema'))")
                conn.execute(SCHEMA)
                conn.execute(ROLLUPS)
                conn.execute(alerts.SCHEMA)
                alerts.upgrade(conn, POSTGRES)
                conn.execute(ledger.SCHEMA)
                conn.execute(outbox.SCHEMA)
                self._hypertable(conn)
                if not conn.execute("SELECT EXISTS (SELECT 1 FROM latest)").fetchone()[0]:  # type: ignore[index]
                    conn.execute(BACKFILL_LATEST)
                has_sensors = conn.execute("SELECT EXISTS (SELECT 1 FROM sensors)").fetchone()
                if has_sensors is not None and not has_sensors[0]:
                    conn.execute(BACKFILL_SENSORS)
                self._trigrams(conn)
                for empty, backfill in BACKFILL_ROLLUPS:
                    is_empty = conn.execute(empty).fetchone()
                    if is_empty is not None and is_empty[0]:
                        conn.execute(backfill)
            conn.execute(STAGE)
        except psycopg.Error as e:
            raise StoreSetupError(f"PostgreSQL at {self._safe_url()} is not usable: {e}") from e
        self._conn = conn

    def _connect(self, stage: bool = True) -> psycopg.Connection:
        conn = psycopg.connect(
            self.url, connect_timeout=self.connect_timeout, autocommit=True, options="-c TimeZone=UTC"
        )
        if stage:
            conn.execute(STAGE)
        return conn

    @staticmethod
    def _trigrams(conn: psycopg.Connection) -> None:
        """GET /sensors?q= (a substring of the id): a trigram index when pg_trgm is installed
        (PostgreSQL's contrib); without it the query scans `sensors`."""
        if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'").fetchone():
            return
        try:
            with conn.transaction():  # a savepoint: lacking the privilege is not fatal
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                conn.execute(
                    "CREATE INDEX IF NOT EXISTS sensors_by_id_trgm ON sensors USING gin (sensor_id gin_trgm_ops)"
                )
        except psycopg.Error as e:
            log.warning("no trigram index on sensors (GET /sensors?q= scans): %s", e)

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
        with self._transaction() as cur:
            with cur.copy(f"COPY readings_stage ({STAGED}) FROM STDIN") as copy:
                copy.write(text.encode())
            cur.execute(UPSERT, {"stored_at_ns": stored_at_ns})
            (inserted,) = cur.fetchone()  # type: ignore[misc]
            if inserted:
                self.ledger.apply(cur, self._new_seqs(cur, batch, stored_at_ns))
            if self.lifecycle is None:
                return Written(int(inserted))
            return Written(int(inserted), self.lifecycle.run(cur, self._new_candidates(cur, batch, stored_at_ns)))

    def _new_seqs(self, cur: psycopg.Cursor, batch: Sequence[Record], stored_at_ns: int) -> list[tuple[str, str, int]]:
        keyed = [r for r in batch if r.reading.seq is not None]
        if not keyed:
            return []
        args = {
            "sensors": [r.reading.sensor_id for r in keyed],
            "types": [r.reading.type for r in keyed],
            "ts": [r.ts for r in keyed],
            "stored_at_ns": stored_at_ns,
        }
        new = {(s, t, utc_text(ts)) for s, t, ts in cur.execute(NEW_KEYS, args).fetchall()}
        return ledger.first_new(keyed, lambda r: (r.reading.sensor_id, r.reading.type, r.ts) in new)

    def _new_candidates(self, cur: psycopg.Cursor, batch: Sequence[Record], stored_at_ns: int) -> list[Record]:
        assert self.lifecycle is not None
        candidates = {(r.reading.sensor_id, r.reading.type, r.ts): r for r in self.lifecycle.candidates(batch)}
        if not candidates:
            return []
        found = cur.execute(NEW_ROWS, {"stored_at_ns": stored_at_ns, "types": sorted(self.lifecycle.types)})
        return [candidates[key] for s, t, ts in found.fetchall() if (key := (s, t, utc_text(ts))) in candidates]

    def _select(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with self._transaction() as cur:
            return cur.execute(sql, args).fetchall()

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor]:
        """A transaction on the (re)connected connection; psycopg errors become StoreUnavailable."""
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self._connect()
            conn = self._conn
            with conn.transaction(), conn.cursor() as cur:
                yield cur
        except psycopg.Error as e:
            raise StoreUnavailable(f"PostgreSQL write failed: {e}") from e

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresReader(Reader):
    """psycopg's async connection pool, opened on first use (the API starts without the DB)."""

    dialect = POSTGRES

    def __init__(self, url: str, size: int = 4, timeout_s: float = 5.0) -> None:
        self._pool = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=1,
            max_size=size,
            open=False,
            timeout=timeout_s,
            kwargs={"autocommit": True, "options": "-c TimeZone=UTC"},
        )
        self._opened = False

    async def _run(self, sql: str, args: Sequence[Any]) -> list[Any]:
        try:
            if not self._opened:
                await self._pool.open(wait=False)
                self._opened = True
            async with self._pool.connection() as conn:
                cur = await conn.execute(sql, args)
                return await cur.fetchall() if cur.description else []
        except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as e:
            raise StoreUnavailable(f"PostgreSQL: {e}") from e

    async def ack(self, alert_id: str) -> dict[str, Any] | None:
        """The first acknowledgement sets `acked_at` and, in the same transaction, queues its
        webhook event for the URLs the raise went to (store/outbox.py)."""
        sql = POSTGRES.sql
        try:
            if not self._opened:
                await self._pool.open(wait=False)
                self._opened = True
            async with self._pool.connection() as conn, conn.transaction():
                first = (await conn.execute(sql(outbox.ACK_FIRST), [reads.now_text(), alert_id])).rowcount
                row = await (await conn.execute(sql(alerts.ALERT), [alert_id])).fetchone()
                if first and row is not None:
                    urls = [u for (u,) in await (await conn.execute(sql(outbox.URLS_OF), [alert_id])).fetchall()]
                    rows = outbox.rows([alerts.row_of(row)], urls, time.time_ns(), "acked")
                    if rows:
                        async with conn.cursor() as cur:
                            await cur.executemany(sql(outbox.INSERT), rows)
        except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as e:
            raise StoreUnavailable(f"PostgreSQL: {e}") from e
        if row is None:
            return None
        item = reads.alert(row)
        await self.with_notifications([item])
        return item

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
