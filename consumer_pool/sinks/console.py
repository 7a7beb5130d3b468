"""The seed's output: `Message received: <compact JSON>` per reading, on stdout.

`ConsoleSink` is the sink that only prints (its alert lifecycle is pipeline.alerts's, held in
memory); `Echo` wraps another sink and prints what that
sink stored (CONSUMER_ECHO), so the worker has no special case for either.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import datetime

from consumer_pool.sinks.base import Sink, Written
from pipeline.alerts import AlertEvent, MemoryLifecycle, Rule
from pipeline.reading import encode
from pipeline.record import Record

log = logging.getLogger("consumer_pool.sinks")

# NOTE: writes of at most PIPE_BUF bytes to a pipe are atomic, so workers sharing stdout
# never split each other's lines.
_CHUNK = 4096


def received_line(record: Record) -> bytes:
    """The seed's console output for one reading."""
    return b"Message received: " + encode(record.reading) + b"\n"


def write_lines(lines: list[bytes], fd: int = 1) -> None:
    """Write whole lines in chunks of at most PIPE_BUF bytes."""
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) > _CHUNK:
            _write_all(fd, b"".join(chunk))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        _write_all(fd, b"".join(chunk))


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


class ConsoleSink(Sink):
    """Prints every reading; stores nothing, so every reading counts as new."""

    name = "console"

    def __init__(self, rules: tuple[Rule, ...] = ()) -> None:
        self.rules = rules
        # NOTE: no store, so the alert lifecycle lives in this process only (MemoryLifecycle).
        self.lifecycle = MemoryLifecycle(rules) if rules else None

    def setup(self) -> None:
        """Nothing to connect to."""
        if any(rule.silent for rule in self.rules):
            log.warning("no-data rules (silent) need a store (SINK sqlite or postgres); the console sink ignores them")

    def write(self, batch: Sequence[Record]) -> Written:
        write_lines([received_line(r) for r in batch])
        if self.lifecycle is None:
            return Written(len(batch))
        return Written(len(batch), self.lifecycle.run(batch))

    def published(self, events: Sequence[AlertEvent]) -> None:
        """Nothing is kept pending."""

    def prune(self, raw_before: str | None, agg_before: str | None, sensors: int) -> tuple[int, bool]:
        """Nothing stored, nothing to prune."""
        return 0, True

    def missing_by_type(self) -> dict[str, int]:
        """No ledger without a store."""
        return {}

    def close(self) -> None:
        """Nothing to release."""


class Echo(Sink):
    """Another sink, plus the seed's line for each reading once that sink stored the batch."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.name = inner.name  # NOTE: metrics stay labelled by the store, not by the echo

    def setup(self) -> None:
        self.inner.setup()

    def write(self, batch: Sequence[Record]) -> Written:
        written = self.inner.write(batch)
        write_lines([received_line(r) for r in batch])
        return written

    def published(self, events: Sequence[AlertEvent]) -> None:
        self.inner.published(events)

    def sweep_silent(self, now: datetime) -> list[AlertEvent]:
        return self.inner.sweep_silent(now)

    def prune(self, raw_before: str | None, agg_before: str | None, sensors: int) -> tuple[int, bool]:
        return self.inner.prune(raw_before, agg_before, sensors)

    def missing_by_type(self) -> dict[str, int]:
        return self.inner.missing_by_type()

    def close(self) -> None:
        self.inner.close()
