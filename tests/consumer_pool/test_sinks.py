"""The pool's side of the store: make_sink picks the store's writer or the console sink, and
the console sink runs the same alert lifecycle in memory."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from consumer_pool.errors import BootError
from consumer_pool.sinks import make_sink
from consumer_pool.sinks.console import ConsoleSink, Echo
from pipeline.alerts import parse_rules
from pipeline.reading import Reading
from pipeline.record import Record
from pipeline.settings import PoolSettings
from store.postgres import PostgresWriter
from store.sqlite import SqliteWriter


def at(second: int, value: float) -> Record:
    return Record.of(Reading("s1", datetime(2025, 11, 17, 14, 0, second, tzinfo=timezone.utc), "temperature", value), 0)


def test_postgres_sink_without_a_database_url_is_a_boot_error() -> None:
    with pytest.raises(BootError, match="DATABASE_URL"):
        make_sink(PoolSettings(sink="postgres"))


def test_sink_names_the_store_writer_and_echo_wraps_it(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    lite = make_sink(PoolSettings(sink="sqlite", sqlite_path=path, consumer_echo=False, alert_rules="temperature>40"))
    assert isinstance(lite, SqliteWriter) and lite.path == path and lite.lifecycle is not None
    echo = make_sink(PoolSettings(sink="sqlite", sqlite_path=path, consumer_echo=True))
    assert isinstance(echo, Echo) and isinstance(echo.inner, SqliteWriter) and echo.name == "sqlite"
    pg = make_sink(PoolSettings(sink="postgres", database_url="postgresql://x@127.0.0.1/y", consumer_echo=False))
    assert isinstance(pg, PostgresWriter)
    assert isinstance(make_sink(PoolSettings(sink="console", consumer_echo=True)), ConsoleSink)


def test_the_console_sink_prints_and_raises_and_clears_alerts(capfd: pytest.CaptureFixture[str]) -> None:
    made = make_sink(PoolSettings(sink="console", alert_rules="temperature>40"))
    assert isinstance(made, ConsoleSink)
    sink = ConsoleSink(made.rules)
    first = sink.write([at(0, 41.0), at(1, 45.0)])
    assert first.stored == 2 and [(e.state, e.value) for e in first.alerts] == [("active", 41.0)]
    second = sink.write([at(2, 20.0)])
    assert [(e.id, e.state) for e in second.alerts] == [(first.alerts[0].id, "cleared")]
    lines = capfd.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith('Message received: {"sensor_id":"s1"')


def test_the_console_sink_warns_it_ignores_no_data_rules_and_runs_the_others(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    sink = ConsoleSink(parse_rules("temperature silent 5s,temperature>40 clear<30"))
    sink.setup()
    assert "console sink ignores them" in caplog.text
    assert sink.sweep_silent(datetime(2030, 1, 1, tzinfo=timezone.utc)) == []
    states = [e.state for batch in ([at(0, 41.0)], [at(1, 35.0)], [at(2, 29.0)]) for e in sink.write(batch).alerts]
    assert states == ["active", "cleared"]  # 35 is within the hysteresis band: still open
    capfd.readouterr()


def test_echo_passes_the_no_data_sweep_to_the_store(tmp_path: Path) -> None:
    echo = Echo(SqliteWriter(str(tmp_path / "r.db"), rules=parse_rules("temperature silent 5s")))
    echo.setup()
    echo.inner.write([at(0, 20.0)])
    (raised,) = echo.sweep_silent(datetime(2025, 11, 17, 14, 0, 5, tzinfo=timezone.utc))
    assert (raised.rule, raised.state) == ("temperature silent 5s", "active")
    echo.close()
