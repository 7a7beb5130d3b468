"""The sink contract (Quix Streams style): setup, add, flush, close.

`flush()` is called before offsets are committed; if it raises SinkError nothing is
committed and the worker retries the batch. The pending batch is cleared in `finally`,
so a retry adds the records again.
"""

from __future__ import annotations

import abc

from service.models import Reading


class Sink(abc.ABC):
    """Where readings are stored. One instance per worker process."""

    name: str = "sink"

    @abc.abstractmethod
    def setup(self) -> None:
        """Connect and create the schema; raise BootError when that cannot work."""

    @abc.abstractmethod
    def add(self, reading: Reading, ingested_at_ns: int) -> None:
        """Queue one reading for the next flush."""

    @abc.abstractmethod
    def flush(self) -> int:
        """Write the queued readings in one go; returns how many were new (not duplicates)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; pending readings are dropped (they were never committed)."""
