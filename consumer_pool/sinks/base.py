"""The sink contract the worker writes through: setup, write(batch) -> Written, published(),
prune(), close.

A store's writer (store.Writer, store/base.py says what a write guarantees) is a sink; the
console sink (consumer_pool/sinks/console.py) is the one sink that stores nothing. `write()`
is called before offsets are committed; if it raises store.StoreUnavailable nothing is
committed and the worker retries the same batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from pipeline.alerts import AlertEvent
from pipeline.record import Record
from store import Written


class Sink(Protocol):
    """Where readings go. One instance per worker process."""

    name: str

    def setup(self) -> None:
        """Connect and create the schema; raise BootError or StoreSetupError when that cannot work."""

    def write(self, batch: Sequence[Record]) -> Written:
        """Store the batch in one go (and advance the alert lifecycle with its new readings)."""
        ...

    def published(self, events: Sequence[AlertEvent]) -> None:
        """The alert changes `write()` handed back were acknowledged by Kafka."""

    def sweep_silent(self, now: datetime) -> list[AlertEvent]:
        """No-data rules: raise the alerts due at wall-clock `now`; the worker publishes them
        and then calls `published()` (store/base.py). A sink without a store has none."""
        return []

    def prune(self, raw_before: str | None, agg_before: str | None, sensors: int) -> tuple[int, bool]:
        """Retention (store/retention.py): rows deleted, whether the sweep reached the last sensor."""
        return 0, True

    def missing_by_type(self) -> dict[str, int]:
        """Seq numbers missing per type, summed over sensors (store/ledger.py); {} when none is kept."""
        return {}

    def close(self) -> None:
        """Release connections."""


__all__ = ["Sink", "Written"]
