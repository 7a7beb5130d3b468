"""The pool's exceptions and named exit codes (a store that fails is store.StoreError)."""

from __future__ import annotations

# Named exit codes (gunicorn style): a worker that cannot boot stops the supervisor
# instead of being restarted in a loop.
EXIT_OK = 0
EXIT_CONFIG_ERROR = 2
WORKER_BOOT_ERROR = 3


class PoolError(Exception):
    """Root of the consumer pool's errors."""


class BootError(PoolError):
    """A worker (or the supervisor) could not start: bad config, unreachable store or broker."""
