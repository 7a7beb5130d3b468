"""The sink contract: setup, write(batch) -> Written, close; published(), prune().

`write()` is called before offsets are committed; if it raises SinkError nothing is
committed and the worker retries the same batch (a sink keeps no copy of it). A sink
dedupes on (sensor_id, type, timestamp), so a retried or replayed batch stores nothing twice.
A store that keeps the alert lifecycle runs it in the same transaction as the write, on the
new readings only, and hands back the alert changes not yet published; the worker produces
them and then calls `published()` (at least once: a crash in between republishes them).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import NamedTuple

from consumer_pool.alerts import AlertEvent
from pipeline.record import Record


class Written(NamedTuple):
    """What a write did: new rows, and alert changes waiting to be published."""

    stored: int
    alerts: list[AlertEvent] = []


class Sink(abc.ABC):
    """Where readings are stored. One instance per worker process."""

    name: str = "sink"

    @abc.abstractmethod
    def setup(self) -> None:
        """Connect and create the schema; raise BootError when that cannot work."""

    @abc.abstractmethod
    def write(self, batch: Sequence[Record]) -> Written:
        """Store the batch in one go (and advance the alert lifecycle with its new readings)."""

    def published(self, events: Sequence[AlertEvent]) -> None:
        """The alert changes `write()` handed back were acknowledged by Kafka."""
        return None

    def prune(self, raw_before: str | None, agg_before: str | None, sensors: int) -> tuple[int, bool]:
        """Retention: delete readings older than `raw_before` and minute aggregates older than
        `agg_before` (UTC text; None keeps them) for the next `sensors` sensors of a sweep.
        Returns (rows deleted, whether the sweep reached the last sensor)."""
        return 0, True

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""
