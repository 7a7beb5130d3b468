"""Alert rules on both real stores (issue 23): hysteresis and `for` kept across writes and a
restart, no-data alerts raised once by any number of sweeping writers and cleared by the next
reading, at most one open alert per rule, sensor and type enforced by the store, and an
existing database upgraded in place."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from harness.db import pg_rows, sqlite_rows
from pipeline.alerts import parse_rules
from pipeline.reading import Reading
from pipeline.record import Record
from store import Writer
from store.alerts import SCHEMA
from store.postgres import PostgresWriter
from store.sqlite import SqliteWriter

T0 = datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc)

Factory = Callable[[str], Writer]


class Store:
    """One database and how to open writers on it with given rules and query it."""

    def __init__(self, kind: str, where: str) -> None:
        self.kind, self.where = kind, where
        self.opened: list[Writer] = []

    def writer(self, rules: str) -> Writer:
        parsed = parse_rules(rules)
        w: Writer = (
            SqliteWriter(self.where, rules=parsed)
            if self.kind == "sqlite"
            else PostgresWriter(self.where, rules=parsed)
        )
        w.setup()
        self.opened.append(w)
        return w

    def rows(self, sql: str) -> list[tuple]:
        return sqlite_rows(self.where, sql) if self.kind == "sqlite" else pg_rows(self.where, sql)

    def execute(self, sql: str) -> None:
        if self.kind == "sqlite":
            with sqlite3.connect(self.where) as conn:
                conn.executescript(sql)
        else:
            with psycopg.connect(self.where, autocommit=True) as conn:
                conn.execute(sql)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    where = str(tmp_path / "r.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = Store(request.param, where)
    yield s
    for w in s.opened:
        w.close()


def rec(seconds: float, value: float, sensor: str = "s1", at: datetime = T0) -> Record:
    return Record.of(Reading(sensor, at + timedelta(seconds=seconds), "temperature", value, location="lab"), 0)


def test_hovering_with_hysteresis_raises_once_and_clears_once_across_writes_and_a_restart(store: Store) -> None:
    rules = "temperature>40 clear<38"
    hovering = [40.5, 39.5, 40.2, 39.0, 41.0, 38.5, 40.1, 39.9, 37.9, 39.5, 40.5]
    events = []
    w = store.writer(rules)
    for i, value in enumerate(hovering):
        if i == 5:  # a restart half-way: the state is the store's, not the process's
            w.close()
            w = store.writer(rules)
        written = w.write([rec(i * 10, value)])
        w.published(written.alerts)
        events += [(e.state, e.value) for e in written.alerts]
    assert events == [("active", 40.5), ("cleared", 37.9), ("active", 40.5)]
    replay = w.write([rec(i * 10, v) for i, v in enumerate(hovering)])
    assert replay == (0, [])
    assert store.rows("SELECT state, raised_value, cleared_value FROM alerts ORDER BY raised_at") == [
        ("cleared", 40.5, 37.9),
        ("active", 40.5, None),
    ]


def test_for_two_minutes_ignores_a_one_minute_spike_and_keeps_its_start_across_a_restart(store: Store) -> None:
    rules = "temperature>40 for 2m"
    w = store.writer(rules)
    assert w.write([rec(s, 45.0) for s in range(0, 61, 10)] + [rec(70, 30.0)]).alerts == []
    assert w.write([rec(s, 45.0) for s in range(100, 161, 10)]).alerts == []  # 60 s above so far
    w.close()
    w = store.writer(rules)
    assert store.rows("SELECT since FROM alert_state") == [("2025-11-17T14:01:40.000000Z",)]
    assert w.write([rec(210, 46.0)]).alerts == []
    (raised,) = w.write([rec(220, 47.0)]).alerts  # 120 s of event time above the threshold
    assert (raised.state, raised.timestamp, raised.value) == ("active", "2025-11-17T14:03:40.000000Z", 47.0)


def test_a_silent_sensor_alerts_once_whoever_sweeps_and_clears_when_it_talks_again(store: Store) -> None:
    rules = "q*:temperature silent 5s,temperature>40"  # only sensors named q…: "other" is silent too
    now = datetime.now(timezone.utc).replace(microsecond=0)
    first, second = store.writer(rules), store.writer(rules)  # two workers, or one restarted
    first.write([rec(-20, 21.0, "quiet", now), rec(-1, 22.0, "talking", now)])
    assert first.sweep_silent(now - timedelta(seconds=30)) == []  # not silent yet then
    (raised,) = first.sweep_silent(now)
    assert (raised.state, raised.sensor_id, raised.rule, raised.threshold) == (
        "active",
        "quiet",
        rules.split(",")[0],
        5,
    )
    assert second.sweep_silent(now + timedelta(seconds=1)) == []  # already open: not raised twice
    assert first.sweep_silent(now + timedelta(seconds=2)) == []
    # Not published yet: the next write hands it back (at least once), then it is marked.
    assert [e.id for e in second.write([rec(-19, 1.0, "other", now)]).alerts] == [raised.id]
    second.published([raised])
    late = second.write([rec(-30, 20.0, "quiet", now)])  # older than the silence: not talking now
    assert late.alerts == []
    (cleared,) = second.write([rec(10, 23.0, "quiet", now)]).alerts
    assert (cleared.id, cleared.state, cleared.value) == (raised.id, "cleared", 23.0)
    second.published([cleared])
    assert first.sweep_silent(now + timedelta(seconds=11)) == []  # it talked 1 s ago
    (again,) = first.sweep_silent(now + timedelta(seconds=16))  # a new silence, a new alert
    assert again.id != raised.id
    assert store.rows("SELECT sensor_id, state FROM alerts ORDER BY raised_at") == [
        ("quiet", "cleared"),
        ("quiet", "active"),
    ]


def test_the_store_refuses_a_second_open_alert_for_a_rule_sensor_and_type(store: Store) -> None:
    w = store.writer("temperature>40")
    w.published(w.write([rec(0, 41.0)]).alerts)
    duplicate = (
        "INSERT INTO alerts (id, rule, sensor_id, type, state, raised_at, raised_value, threshold, last_at, last_value)"
        " VALUES ('x', 'temperature>40', 's1', 'temperature', 'active', 'a', 41, 40, 'a', 41)"
    )
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        store.execute(duplicate)
    store.execute(duplicate.replace("'x'", "'y'").replace("'active'", "'cleared'"))  # closed ones: any number


def test_an_existing_database_is_upgraded_in_place(store: Store) -> None:
    old_schema = SCHEMA.replace("    since TEXT,\n", "")
    assert old_schema != SCHEMA
    store.execute(old_schema)
    row = (
        "INSERT INTO alerts (id, rule, sensor_id, type, state, raised_at, raised_value, threshold, last_at, last_value)"
        " VALUES ('{id}', 'temperature>40', 's1', 'temperature', 'active', '{at}', 41, 40, '{at}', 42)"
    )
    store.execute(row.format(id="older", at="2025-11-17T14:00:00.000000Z"))
    store.execute(row.format(id="newer", at="2025-11-17T14:05:00.000000Z"))
    store.execute(
        "INSERT INTO alert_state (rule, sensor_id, type, last_ts, active_id)"
        " VALUES ('temperature>40', 's1', 'temperature', '2025-11-17T14:05:00.000000Z', 'newer')"
    )
    w = store.writer("temperature>40")
    assert store.rows("SELECT id, state, cleared_value FROM alerts ORDER BY id") == [
        ("newer", "active", None),
        ("older", "cleared", 42.0),
    ]
    # The surviving open alert goes on as before (the closed one is published as closed too).
    written = w.write([rec(400, 20.0)])
    assert sorted((e.id, e.state) for e in written.alerts) == [("newer", "cleared"), ("older", "cleared")]
    assert store.rows("SELECT since FROM alert_state") == [(None,)]
    store.writer("temperature>40")  # and a second setup changes nothing
