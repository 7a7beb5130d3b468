"""Logging for the supervisor and its workers: one write() per record, so the lines of
several processes sharing stderr never interleave mid-line."""

from __future__ import annotations

import logging
import os


class AtomicLineHandler(logging.Handler):
    """Writes each formatted record with a single os.write (atomic on pipes up to PIPE_BUF)."""

    def __init__(self, fd: int = 2) -> None:
        super().__init__()
        self.fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            while data:
                written = os.write(self.fd, data)
                data = data[written:]
        except Exception:  # logging must never take the process down
            self.handleError(record)


def configure(role: str, level: str = "INFO") -> None:
    """Root logger -> stderr, each line tagged with the process role and pid."""
    handler = AtomicLineHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s [%(levelname)s] [{role} %(process)d] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
