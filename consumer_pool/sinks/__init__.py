"""The pool's side of the store: `make_sink` picks the store's writer (store/) or the
console sink from the settings."""

from __future__ import annotations

from consumer_pool.errors import BootError
from consumer_pool.sinks.base import Sink, Written
from pipeline.alerts import parse_rules
from pipeline.settings import PoolSettings
from store import KINDS, open_writer


def make_sink(pool: PoolSettings) -> Sink:
    """The sink named by SINK (echoing each reading when CONSUMER_ECHO is set), not yet set up."""
    sink = _store(pool)
    if pool.consumer_echo and pool.sink != "console":
        from consumer_pool.sinks.console import Echo

        return Echo(sink)
    return sink


def _store(pool: PoolSettings) -> Sink:
    rules = parse_rules(pool.alert_rules)
    if pool.sink == "console":
        from consumer_pool.sinks.console import ConsoleSink

        return ConsoleSink(rules)
    if pool.sink == "postgres" and not pool.database_url:
        raise BootError("SINK=postgres needs DATABASE_URL")
    if pool.sink not in KINDS:
        raise BootError(f"unknown sink {pool.sink!r}")
    return open_writer(pool.sink, pool.sqlite_path, pool.database_url, rules, pool.webhooks())


__all__ = ["Sink", "Written", "make_sink"]
