"""The store's one error tree: the pool and the API catch these, never a driver's own errors.

Driver errors (sqlite3, psycopg, psycopg_pool) are wrapped with `raise ... from e`, so the
cause stays in the traceback.
"""

from __future__ import annotations


class StoreError(Exception):
    """Root of the store's errors."""


class StoreUnavailable(StoreError):
    """The database failed a read or a write (not created yet, unreachable, locked): a read
    answers 503; a batch is not committed and the worker retries it."""


class StoreSetupError(StoreError):
    """The store cannot be opened or its schema created: a worker cannot boot."""


class BadCursor(StoreError, ValueError):
    """A page cursor this store did not hand out: 400."""
