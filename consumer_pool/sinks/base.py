"""The sink contract: setup, write(batch) -> new rows, close.

`write()` is called before offsets are committed; if it raises SinkError nothing is
committed and the worker retries the same batch (a sink keeps no copy of it). A sink
dedupes on (sensor_id, type, timestamp), so a retried or replayed batch stores nothing twice.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from pipeline.record import Record


class Sink(abc.ABC):
    """Where readings are stored. One instance per worker process."""

    name: str = "sink"

    @abc.abstractmethod
    def setup(self) -> None:
        """Connect and create the schema; raise BootError when that cannot work."""

    @abc.abstractmethod
    def write(self, batch: Sequence[Record]) -> int:
        """Store the batch in one go; returns how many readings were new (not duplicates)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""
