"""Retention: RETENTION_RAW_DAYS and RETENTION_AGG_DAYS, enforced in small steps (when;
the statements are store/retention.py).

One worker (slot 0) calls `step()` between batches. A step prunes a few sensors (each in its
own short transaction, at most a few thousand rows), so ingest never waits behind a long
DELETE; steps repeat quickly while a sweep finds rows to delete, and once a whole sweep
found nothing the next one starts 10 s later. 0 days keeps rows forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from consumer_pool import metrics
from consumer_pool.sinks.base import Sink
from pipeline.reading import utc_text
from pipeline.settings import PoolSettings
from store import StoreUnavailable

log = logging.getLogger(__name__)

SENSORS_PER_STEP = 20
BUSY_INTERVAL_S = 0.2
IDLE_INTERVAL_S = 10.0


class Retention:
    def __init__(
        self,
        sink: Sink,
        raw_days: float,
        agg_days: float,
        clock: Callable[[], float] = time.time,
        busy_interval_s: float = BUSY_INTERVAL_S,
        idle_interval_s: float = IDLE_INTERVAL_S,
    ) -> None:
        self.sink = sink
        self.raw_days = raw_days
        self.agg_days = agg_days
        self.clock = clock
        self.busy_interval_s = busy_interval_s
        self.idle_interval_s = idle_interval_s
        self._due = 0.0
        self._swept = 0  # rows deleted by the sweep in progress

    @classmethod
    def of(cls, pool: PoolSettings, sink: Sink) -> Retention | None:
        if not pool.retention_raw_days and not pool.retention_agg_days:
            return None
        return cls(sink, pool.retention_raw_days, pool.retention_agg_days)

    def cutoffs(self) -> tuple[str | None, str | None]:
        """UTC text before which raw readings / minute aggregates are deleted (None: kept)."""
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        raw = utc_text(now - timedelta(days=self.raw_days)) if self.raw_days else None
        agg = utc_text(now - timedelta(days=self.agg_days)) if self.agg_days else None
        return raw, agg

    def step(self) -> int:
        """One small step when due; returns the rows it deleted."""
        now = time.monotonic()
        if now < self._due:
            return 0
        try:
            deleted, sweep_done = self.sink.prune(*self.cutoffs(), SENSORS_PER_STEP)
        except StoreUnavailable as e:
            log.warning("retention step failed, retrying later: %s", e)
            self._due = now + self.idle_interval_s
            return 0
        self._swept += deleted
        if deleted:
            metrics.RETENTION_DELETED.inc(deleted)
        if sweep_done:
            if self._swept:
                log.info("retention sweep deleted %d expired rows", self._swept)
            idle = self._swept == 0
            self._swept = 0
            self._due = now + (self.idle_interval_s if idle else self.busy_interval_s)
        else:
            self._due = now + self.busy_interval_s
        return deleted
