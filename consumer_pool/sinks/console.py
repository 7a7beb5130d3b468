"""The seed's output: `Message received: <compact JSON>` per reading, on stdout."""

from __future__ import annotations

import os

from consumer_pool.records import received_line
from consumer_pool.sinks.base import Sink
from service.models import Reading

# NOTE: writes of at most PIPE_BUF bytes to a pipe are atomic, so workers sharing stdout
# never split each other's lines.
_CHUNK = 4096


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

    def __init__(self) -> None:
        self._lines: list[bytes] = []

    def setup(self) -> None:
        """Nothing to connect to."""

    def add(self, reading: Reading, ingested_at_ns: int) -> None:
        self._lines.append(received_line(reading))

    def flush(self) -> int:
        try:
            write_lines(self._lines)
            return len(self._lines)
        finally:
            self._lines = []

    def close(self) -> None:
        self._lines = []
