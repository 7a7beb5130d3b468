"""The SQLite and PostgreSQL writers on real databases: dedupe on (sensor_id, type, ts),
aggregates that only count new rows, the fixed schema, the alert lifecycle, retention."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness.db import pg_rows, sqlite_rows
from harness.process import free_port
from pipeline.alerts import parse_rules
from pipeline.reading import Reading
from pipeline.record import Record
from store import StoreSetupError, StoreUnavailable, Writer, open_writer
from store.postgres import PostgresWriter
from store.sqlite import SqliteWriter


def make(second: int, value: float, sensor: str = "s1") -> Reading:
    moment = datetime(2025, 11, 17, 14, second // 60, second % 60, tzinfo=timezone.utc)
    return Reading(sensor, moment, "temperature", value, unit="C")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Writer, str]]:
    if request.param == "sqlite":
        where = str(tmp_path / "deep" / "folder" / "r.db")  # parent folders get created
        s: Writer = SqliteWriter(where)
    else:
        where = request.getfixturevalue("pg_url")
        s = PostgresWriter(where)
    s.setup()
    yield s, where
    s.close()


def rows(kind: Writer, where: str, sql: str) -> list[tuple]:
    return sqlite_rows(where, sql) if isinstance(kind, SqliteWriter) else pg_rows(where, sql)


def write(sink: Writer, readings: list[Reading]) -> int:
    return sink.write([Record.of(r, 1_700_000_000_000_000_000) for r in readings]).stored


def test_duplicates_are_stored_once_and_aggregates_count_only_new_rows(sink: tuple[Writer, str]) -> None:
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
    if isinstance(s, SqliteWriter):
        assert row[0] == "2025-11-17T14:00:00.000000Z"  # fixed width: text order is time order
    else:
        assert row[0] == datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc)
    assert row[1:5] == (10.0, "C", None, 1_700_000_000_000_000_000)
    assert row[5] > row[4]


def test_setup_is_idempotent(sink: tuple[Writer, str]) -> None:
    s, where = sink
    again = SqliteWriter(where) if isinstance(s, SqliteWriter) else PostgresWriter(where)
    again.setup()
    again.close()


@pytest.mark.integration
def test_postgres_that_cannot_be_reached_is_a_setup_error() -> None:
    with pytest.raises(StoreSetupError, match="not usable"):
        PostgresWriter(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout=2).setup()


def test_postgres_store_without_a_database_url_is_a_setup_error() -> None:
    with pytest.raises(StoreSetupError, match="DATABASE_URL"):
        open_writer("postgres", "", "")


def test_a_write_while_another_holds_the_lock_is_store_unavailable_and_stores_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    s = SqliteWriter(path, busy_timeout_s=0.1)
    s.setup()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="locked"):
            write(s, [make(0, 1.0)])
        other.execute("ROLLBACK")
        assert write(s, [make(0, 1.0)]) == 1  # the same batch, retried
    finally:
        other.close()
        s.close()


def test_text_needing_escapes_round_trips(sink: tuple[Writer, str]) -> None:
    s, where = sink
    odd = Reading("s1", datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc), "t\\ab\tc", -1.5e300, "°C\n", "a\\Nb\r")
    assert write(s, [odd]) == 1
    assert rows(s, where, "SELECT type, value, unit, location FROM readings") == [
        (odd.type, odd.value, odd.unit, odd.location)
    ]


def test_latest_keeps_the_newest_reading_per_sensor_and_type_whatever_the_order(sink: tuple[Writer, str]) -> None:
    s, where = sink
    write(s, [make(30, 2.0), make(10, 1.0), make(5, 9.0, sensor="s2")])
    write(s, [make(20, 3.0)])  # late: older than the latest
    assert rows(s, where, "SELECT sensor_id, value FROM latest ORDER BY sensor_id") == [("s1", 2.0), ("s2", 9.0)]


def lifecycle_sink(kind: Writer, where: str) -> Writer:
    rules = parse_rules("temperature>40")
    other = SqliteWriter(where, rules=rules) if isinstance(kind, SqliteWriter) else PostgresWriter(where, rules=rules)
    other.setup()
    return other


def test_the_alert_lifecycle_is_stored_and_a_replay_changes_nothing(sink: tuple[Writer, str]) -> None:
    s, where = sink
    store = lifecycle_sink(s, where)
    try:
        first = store.write([Record.of(r, 0) for r in [make(0, 41.0), make(1, 45.0)]])
        assert [(e.state, e.value) for e in first.alerts] == [("active", 41.0)]
        store.published(first.alerts)
        second = store.write([Record.of(r, 0) for r in [make(0, 41.0), make(2, 20.0)]])  # a replayed one, a new one
        assert [(e.state, e.value, e.id) for e in second.alerts] == [("cleared", 20.0, first.alerts[0].id)]
        store.published(second.alerts)
        again = store.write([Record.of(r, 0) for r in [make(0, 41.0), make(1, 45.0), make(2, 20.0)]])
        assert again == (0, [])
        got = rows(s, where, "SELECT state, raised_at, last_value, cleared_at, cleared_value, pending FROM alerts")
        assert got == [("cleared", "2025-11-17T14:00:00.000000Z", 45.0, "2025-11-17T14:00:02.000000Z", 20.0, 0)]
    finally:
        store.close()


def test_retention_deletes_old_rows_in_steps_and_keeps_the_rest(sink: tuple[Writer, str]) -> None:
    s, where = sink
    write(s, [make(0, 1.0), make(90, 2.0), make(0, 3.0, sensor="s2"), make(150, 4.0, sensor="s3")])
    cutoff = "2025-11-17T14:01:00.000000Z"
    assert s.prune(cutoff, None, 2) == (2, False)  # s1 and s2: one old reading each
    assert s.prune(cutoff, None, 2) == (0, True)  # s3: nothing old; the sweep is over
    assert rows(s, where, "SELECT count(*) FROM readings") == [(2,)]
    assert rows(s, where, "SELECT count(*) FROM readings_1m") == [(4,)]  # aggregates kept
    assert s.prune(None, cutoff, 10) == (2, True)  # the minute 14:00 of s1 and s2
    assert rows(s, where, "SELECT count(*) FROM readings_1m") == [(2,)]
