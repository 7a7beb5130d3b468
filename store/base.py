"""The shared base of the backends: the writer the pool uses and the reader the API uses.

A backend (store/sqlite.py, store/postgres.py) gives its connection handling, its schema
and its insert; the statements both run (retention, the alert lifecycle, the reads) are
written once here and in store/{retention,alerts,reads}.py, in the backend's dialect.

The write contract: `write()` is called before offsets are committed; if it raises
StoreUnavailable nothing is committed and the worker retries the same batch (a writer keeps
no copy of it). A writer dedupes on (sensor_id, type, timestamp), so a retried or replayed
batch stores nothing twice. With alert rules, the lifecycle runs in the same transaction as
the write, on the new readings only, and the write hands back the alert changes not yet
published; the worker produces them and then calls `published()` (at least once: a crash in
between republishes them).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, NamedTuple

from pipeline.alerts import AlertEvent, Rule
from pipeline.record import Record
from store import alerts, ledger, outbox, reads, retention, rollups
from store.dialect import Bucket, Dialect, minute_text, ts_text
from store.reads import AlertState, Page, SensorQuery


class Written(NamedTuple):
    """What a write did: new rows, and alert changes waiting to be published."""

    stored: int
    alerts: list[AlertEvent] = []


class Writer(abc.ABC):
    """Where the pool stores readings. One instance per worker process."""

    name: str
    dialect: Dialect

    def __init__(self, rules: tuple[Rule, ...] = (), webhooks: tuple[str, ...] = ()) -> None:
        self.webhooks = webhooks
        self.lifecycle = self._lifecycle(rules) if rules else None
        self.ledger = ledger.Ledger(self.dialect)
        self._sweep_from = ""  # retention: the last sensor_id pruned in this sweep
        sql = self.dialect.sql
        self._sensors_after = sql(retention.SENSORS_AFTER)
        self._prune_raw, self._prune_agg = sql(retention.PRUNE_RAW), sql(retention.PRUNE_AGG)
        self._missing_by_type = sql(ledger.MISSING_BY_TYPE)
        self._prune_rollups = [(r, sql(rollups.PRUNE.format(table=rollups.TABLE[r]))) for r in rollups.ROLLUPS]

    def _lifecycle(self, rules: tuple[Rule, ...]) -> alerts.Lifecycle:
        return alerts.Lifecycle(rules, self.dialect, self.webhooks)

    @abc.abstractmethod
    def setup(self) -> None:
        """Connect, create the schema or upgrade it; raise StoreSetupError when that cannot work."""

    @abc.abstractmethod
    def write(self, batch: Sequence[Record]) -> Written:
        """Store the batch in one go (and advance the alert lifecycle with its new readings)."""

    @abc.abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A cursor in one transaction, committed at the end, rolled back on any error;
        the driver's errors become StoreUnavailable."""

    @abc.abstractmethod
    def _select(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """Rows of a short read outside a write transaction (StoreUnavailable on failure)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    def published(self, events: Sequence[AlertEvent]) -> None:
        """The alert changes `write()` handed back were acknowledged by Kafka."""
        if self.lifecycle is not None and events:
            with self._transaction() as cur:
                self.lifecycle.mark(cur, events)

    def sweep_silent(self, now: datetime) -> list[AlertEvent]:
        """No-data rules: raise the alerts due at wall-clock `now`, in one transaction, and
        return them to publish (then `published()`); [] without such rules. Safe to run from
        any number of workers at once (store/alerts.py, `Lifecycle.sweep`)."""
        if self.lifecycle is None or not self.lifecycle.silent:
            return []
        with self._transaction() as cur:
            return self.lifecycle.sweep(cur, now)

    def missing_by_type(self) -> dict[str, int]:
        """Seq numbers missing per type, summed over sensors: the `sensor_readings_missing`
        gauge (one scan of seq_ledger, one row per sensor and type that sent a seq)."""
        return {str(t): int(n) for t, n in self._select(self._missing_by_type, ())}

    def prune(self, raw_before: str | None, agg_before: str | None, sensors: int) -> tuple[int, bool]:
        """Retention: delete readings older than `raw_before`, and minute aggregates older than
        `agg_before` with the hourly and daily buckets wholly older (UTC text; None keeps
        them), for the next `sensors` sensors of a sweep,
        each sensor in its own short transaction. Returns (rows deleted, whether the sweep
        reached the last sensor)."""
        batch = [row[0] for row in self._select(self._sensors_after, (self._sweep_from, sensors))]
        deleted = 0
        cuts = [(prune, rollups.floor_text(agg_before, r)) for r, prune in self._prune_rollups] if agg_before else []
        for sensor_id in batch:
            with self._transaction() as cur:
                if raw_before:
                    deleted += cur.execute(self._prune_raw, (sensor_id, raw_before, retention.PRUNE_STEP_ROWS)).rowcount
                if agg_before:
                    deleted += cur.execute(self._prune_agg, (sensor_id, agg_before, retention.PRUNE_STEP_ROWS)).rowcount
                for prune, cut in cuts:
                    deleted += cur.execute(prune, (sensor_id, cut, retention.PRUNE_STEP_ROWS)).rowcount
        done = len(batch) < sensors
        self._sweep_from = "" if done else batch[-1]
        return deleted, done

    # --- the webhook outbox (store/outbox.py), for the pool's deliverer -------------------

    def claim_deliveries(self, now_ns: int, lease_ns: int, limit: int) -> list[outbox.Delivery]:
        """Up to `limit` pending deliveries due at `now_ns`, oldest due first, each hidden from
        other claims until `now_ns + lease_ns` (a deliverer that dies leaves them due again)."""
        with self._transaction() as cur:
            found = cur.execute(outbox.claim_sql(self.dialect), (now_ns + lease_ns, now_ns, limit)).fetchall()
        return [outbox.delivery(row) for row in found]

    def delivery_sent(self, d: outbox.Delivery, now_ns: int) -> None:
        with self._transaction() as cur:
            cur.execute(self.dialect.sql(outbox.SENT), (now_ns, d.event_id, d.url))

    def delivery_retry(self, d: outbox.Delivery, error: str, next_ns: int) -> None:
        with self._transaction() as cur:
            cur.execute(self.dialect.sql(outbox.RETRY), (error, next_ns, d.event_id, d.url))

    def delivery_failed(self, d: outbox.Delivery, error: str, now_ns: int) -> None:
        with self._transaction() as cur:
            cur.execute(self.dialect.sql(outbox.FAILED), (error, now_ns, d.event_id, d.url))

    def pending_deliveries(self) -> tuple[int, int] | None:
        """(when the oldest event still pending was written, when the soonest pending delivery
        is due), or None when none is pending."""
        found = self._select(self.dialect.sql(outbox.PENDING), ())
        if not found or found[0][0] is None:
            return None
        return int(found[0][0]), int(found[0][1])


class Reader(abc.ABC):
    """The read API's queries, written once; a backend runs them without blocking the event
    loop and raises StoreUnavailable when it cannot."""

    dialect: Dialect

    @abc.abstractmethod
    async def _run(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """Rows of `sql` (already in this dialect)."""

    @abc.abstractmethod
    async def ack(self, alert_id: str) -> dict[str, Any] | None:
        """Acknowledge an alert (the first acknowledgement's time is kept); None if unknown."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""

    async def _query(self, sql: str, args: Sequence[Any]) -> list[Any]:
        return await self._run(self.dialect.sql(sql), args)

    async def sensors(self, limit: int, cursor: str | None, query: SensorQuery | None = None) -> Page:
        query = query or SensorQuery()
        after = reads.decode_cursor(cursor, 1 if query.sort == "sensor_id" else 2)
        trigrams = False
        phrase = reads.trigram_phrase(query.q or "")
        if self.dialect.trigram_ids and phrase is not None:
            (count,) = (await self._query(reads.TRIGRAM_COUNT, [phrase]))[0]
            trigrams = count <= reads.TRIGRAM_MOST
        by_seen = False
        if self.dialect.trigram_ids and query.silent_before_ns is not None and query.sort == "sensor_id":
            (count,) = (await self._query(reads.SILENT_COUNT, [query.silent_before_ns]))[0]
            by_seen = count <= reads.TRIGRAM_MOST
        sql, args = reads.sensors_sql(query, self.dialect, after, limit, trigrams, by_seen)
        return reads.sensors_page(await self._query(sql, args), limit, query.sort)

    async def known(self, sensor_id: str) -> bool:
        return bool(await self._query(reads.KNOWN, [sensor_id]))

    async def readings(
        self,
        sensor_id: str,
        type_: str | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> Page:
        key = reads.decode_cursor(cursor, 2)
        bound = self.dialect.bound
        sql, args = reads.readings_sql(type_, start and bound(start), end and bound(end), key)
        rows = await self._query(sql, [sensor_id, *args, limit + 1])
        return reads.page(rows, limit, reads.reading, lambda r: [ts_text(r[1]), r[0]])

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
        d = self.dialect
        after = reads.decode_cursor(cursor, 2)
        if bucket in rollups.ROLLUPS:  # whole buckets from readings_1h / readings_1d
            whole = [d.bound(t) for t in rollups.split(start, end, bucket)]
            sql, args = reads.aggregates_sql(d.buckets, bucket, type_, after, d.cast, rollups.TABLE[bucket])
            first = rollups.aggregates_args(sensor_id, d.bound(start), d.bound(end), (whole[0], whole[1]), type_)
            rows = await self._query(sql, [*first, *args, limit + 1])
        else:
            sql, args = reads.aggregates_sql(d.buckets, bucket, type_, after, d.cast)
            rows = await self._query(sql, [sensor_id, d.bound(start), d.bound(end), *args, limit + 1])
        return reads.page(rows, limit, reads.aggregate, lambda r: [minute_text(r[1]), r[0]])

    async def completeness(self, sensor_id: str, type_: str) -> dict[str, Any]:
        """What the ledger knows of a sensor and type (docs/contract.md, "Completeness"); the
        newest MISSING_LISTED gaps are listed, oldest first, `missing_count` counts them all."""
        summary = await self._query(ledger.SUMMARY, [sensor_id, type_])
        first, last, received, missing, duplicates = summary[0] if summary else (None, None, 0, 0, 0)
        ranges = await self._query(ledger.RANGES, [sensor_id, type_, ledger.MISSING_LISTED + 1]) if summary else []
        gaps = ledger.missing(sorted((int(a), int(b)) for a, b in ranges))
        return {
            "sensor_id": sensor_id,
            "type": type_,
            "received": int(received),
            "missing": [list(gap) for gap in gaps],
            "missing_count": int(missing),
            "first_seq": first if first is None else int(first),
            "last_seq": last if last is None else int(last),
            "duplicates": int(duplicates),
        }

    async def alerts(self, state: AlertState, sensor_id: str | None, limit: int, cursor: str | None) -> Page:
        sql, args = reads.alerts_sql(state, sensor_id, reads.decode_cursor(cursor, 2))
        found = reads.page(await self._query(sql, [*args, limit + 1]), limit, reads.alert, lambda r: [r[5], r[0]])
        await self.with_notifications(found.items)
        return found

    async def with_notifications(self, items: list[dict[str, Any]]) -> None:
        """Add each alert's webhook delivery state (`notifications`, null: none) to `items`."""
        if not items:
            return
        ids = [item["id"] for item in items]
        sql = outbox.OF_ALERTS.format(marks=", ".join("?" * len(ids)))
        summaries = outbox.summaries(await self._query(sql, ids))
        for item in items:
            item["notifications"] = summaries.get(item["id"])
