"""Sinks behind one small interface; `make_sink` picks one from the settings."""

from __future__ import annotations

from consumer_pool.alerts import parse_rules
from consumer_pool.errors import BootError
from consumer_pool.sinks.base import Sink, Written
from pipeline.settings import PoolSettings


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
    if pool.sink == "sqlite":
        from consumer_pool.sinks.sqlite import SqliteSink

        return SqliteSink(pool.sqlite_path, rules=rules)
    if pool.sink == "postgres":
        if not pool.database_url:
            raise BootError("SINK=postgres needs DATABASE_URL")
        from consumer_pool.sinks.postgres import PostgresSink

        return PostgresSink(pool.database_url, rules=rules)
    raise BootError(f"unknown sink {pool.sink!r}")


__all__ = ["Sink", "Written", "make_sink"]
