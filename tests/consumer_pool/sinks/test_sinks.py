"""The SQLite and PostgreSQL sinks on real databases: dedupe on (sensor_id, type, ts),
aggregates that only count new rows, the fixed schema."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from consumer_pool.errors import BootError
from consumer_pool.sinks import Sink, make_sink
from consumer_pool.sinks.postgres import PostgresSink
from consumer_pool.sinks.sqlite import SqliteSink
from harness.db import pg_rows, sqlite_rows
from harness.process import free_port
from pipeline.reading import Reading
from pipeline.record import Record
from pipeline.settings import PoolSettings


def make(second: int, value: float, sensor: str = "s1") -> Reading:
    moment = datetime(2025, 11, 17, 14, second // 60, second % 60, tzinfo=timezone.utc)
    return Reading(sensor, moment, "temperature", value, unit="C")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Sink, str]]:
    if request.param == "sqlite":
        where = str(tmp_path / "deep" / "folder" / "r.db")  # parent folders get created
        s: Sink = SqliteSink(where)
    else:
        where = request.getfixturevalue("pg_url")
        s = PostgresSink(where)
    s.setup()
    yield s, where
    s.close()


def rows(kind: Sink, where: str, sql: str) -> list[tuple]:
    return sqlite_rows(where, sql) if isinstance(kind, SqliteSink) else pg_rows(where, sql)


def write(sink: Sink, readings: list[Reading]) -> int:
    return sink.write([Record.of(r, 1_700_000_000_000_000_000) for r in readings])


def test_duplicates_are_stored_once_and_aggregates_count_only_new_rows(sink: tuple[Sink, str]) -> None:
    s, where = sink
    batch = [make(0, 10.0), make(30, 20.0), make(59, 30.0), make(60, 5.0), make(0, 1.0, sensor="s2")]

    assert write(s, batch) == 5
    assert write(s, [*batch[:3], batch[0]]) == 0  # a replay, and a duplicate inside one batch
    assert write(s, [make(61, 7.0), make(0, 10.0)]) == 1

    assert rows(s, where, "SELECT count(*) FROM readings") == [(6,)]
    got = rows(s, where, "SELECT sensor_id, count, min, max, avg FROM readings_1m ORDER BY sensor_id, minute")
    assert got == [("s1", 3, 10.0, 30.0, 20.0), ("s1", 2, 5.0, 7.0, 6.0), ("s2", 1, 1.0, 1.0, 1.0)]
    (row,) = rows(
        s,
        where,
        "SELECT ts, value, unit, location, ingested_at_ns, stored_at_ns FROM readings"
        " WHERE ts < '2025-11-17T14:00:01Z' AND sensor_id = 's1'",
    )
    if isinstance(s, SqliteSink):
        assert row[0] == "2025-11-17T14:00:00Z"
    else:
        assert row[0] == datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc)
    assert row[1:5] == (10.0, "C", None, 1_700_000_000_000_000_000)
    assert row[5] > row[4]


def test_setup_is_idempotent(sink: tuple[Sink, str]) -> None:
    s, where = sink
    again = SqliteSink(where) if isinstance(s, SqliteSink) else PostgresSink(where)
    again.setup()
    again.close()


@pytest.mark.integration
def test_postgres_that_cannot_be_reached_is_a_boot_error() -> None:
    with pytest.raises(BootError, match="not usable"):
        PostgresSink(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout=2).setup()


def test_postgres_sink_without_a_database_url_is_a_boot_error() -> None:
    with pytest.raises(BootError, match="DATABASE_URL"):
        make_sink(PoolSettings(sink="postgres"))


def test_text_needing_escapes_round_trips(sink: tuple[Sink, str]) -> None:
    s, where = sink
    odd = Reading("s1", datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc), "t\\ab\tc", -1.5e300, "°C\n", "a\\Nb\r")
    assert write(s, [odd]) == 1
    assert rows(s, where, "SELECT type, value, unit, location FROM readings") == [
        (odd.type, odd.value, odd.unit, odd.location)
    ]
