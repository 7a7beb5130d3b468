"""The `sensor_readings_missing` gauge (docs/contract.md, "Completeness"): one worker (slot 0)
reads the per-type sums of the store's ledger (store/ledger.py) between batches, every
MISSING_REFRESH_S, and sets the gauge. The ledger itself is kept by every worker in its write
transaction; this only publishes it, so a restarted worker or pool publishes the same figure.
"""

from __future__ import annotations

import logging
import time

from consumer_pool import metrics
from consumer_pool.sinks.base import Sink
from store import StoreUnavailable

log = logging.getLogger(__name__)

MISSING_REFRESH_S = 5.0


class MissingGauge:
    def __init__(self, sink: Sink, interval_s: float = MISSING_REFRESH_S) -> None:
        self.sink = sink
        self.interval_s = interval_s
        self._due = 0.0

    def step(self) -> dict[str, int] | None:
        """Refresh the gauge when due; returns what it set (None when not due or failed)."""
        now = time.monotonic()
        if now < self._due:
            return None
        self._due = now + self.interval_s
        try:
            missing = self.sink.missing_by_type()
        except StoreUnavailable as e:
            log.warning("cannot read the completeness ledger, retrying later: %s", e)
            return None
        for type_, count in missing.items():
            metrics.MISSING.labels(type_).set(count)
        return missing
