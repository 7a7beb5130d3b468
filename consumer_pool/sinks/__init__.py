"""Sinks behind one small interface; `make_sink` picks one from the settings."""

from __future__ import annotations

from consumer_pool.errors import BootError
from consumer_pool.sinks.base import Sink
from service.settings import Settings


def make_sink(settings: Settings) -> Sink:
    """The sink named by SINK, not yet set up."""
    if settings.sink == "console":
        from consumer_pool.sinks.console import ConsoleSink

        return ConsoleSink()
    if settings.sink == "sqlite":
        from consumer_pool.sinks.sqlite import SqliteSink

        return SqliteSink(settings.sqlite_path)
    if settings.sink == "postgres":
        if not settings.database_url:
            raise BootError("SINK=postgres needs DATABASE_URL")
        from consumer_pool.sinks.postgres import PostgresSink

        return PostgresSink(settings.database_url)
    raise BootError(f"unknown sink {settings.sink!r}")


__all__ = ["Sink", "make_sink"]
