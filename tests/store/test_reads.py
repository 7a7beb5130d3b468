"""The read side of both stores on real databases: the same pages from SQLite and PostgreSQL
(sensors, readings, aggregates, alerts, acknowledging), cursors, and StoreUnavailable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from harness.process import free_port
from pipeline.alerts import parse_rules
from pipeline.reading import Reading
from pipeline.record import Record
from store import BadCursor, Bucket, Reader, SensorQuery, StoreUnavailable, Writer, open_reader, open_writer

Ask = Callable[[Callable[[Reader], Awaitable[Any]]], Any]

T0 = datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc)


def at(seconds: int, value: float, type_: str = "temperature", sensor: str = "s1") -> Record:
    return Record.of(Reading(sensor, T0 + timedelta(seconds=seconds), type_, value, unit="C"), 0)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Writer, Ask]]:
    """The writer, and `ask(lambda reader: reader.<query>(...))`: one query on a reader of its
    own (an async connection pool belongs to the event loop it was opened in)."""
    path = str(tmp_path / "r.db")
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    writer = open_writer(request.param, path, url, parse_rules("temperature>40"))
    writer.setup()

    def ask(query: Callable[[Reader], Awaitable[Any]]) -> Any:
        async def once() -> Any:
            reader = open_reader(request.param, path, url)
            assert reader is not None
            try:
                return await query(reader)
            finally:
                await reader.close()

        return asyncio.run(once())

    yield writer, ask
    writer.close()


def test_readings_are_paged_newest_first_within_bounds(store: tuple[Writer, Ask]) -> None:
    writer, ask = store
    writer.write([at(0, 1.0), at(0, 50.0, "humidity"), at(30, 2.0), at(90, 3.0), at(400, 4.0), at(5, 9.0, sensor="s2")])

    def pages() -> list[list[tuple[str, str, float]]]:
        got, cursor = [], None
        while True:
            page = ask(partial(lambda r, c: r.readings("s1", None, T0, T0 + timedelta(seconds=400), 2, c), c=cursor))
            got.append([(x["timestamp"], x["type"], x["value"]) for x in page.items])
            if page.next_cursor is None:
                return got
            cursor = page.next_cursor

    assert pages() == [
        [("2025-11-17T14:01:30.000000Z", "temperature", 3.0), ("2025-11-17T14:00:30.000000Z", "temperature", 2.0)],
        [("2025-11-17T14:00:00.000000Z", "temperature", 1.0), ("2025-11-17T14:00:00.000000Z", "humidity", 50.0)],
    ]
    only = ask(lambda r: r.readings("s1", "humidity", None, None, 10, None))
    assert [(r["type"], r["unit"], r["location"]) for r in only.items] == [("humidity", "C", None)]
    assert ask(lambda r: r.known("s2")) and not ask(lambda r: r.known("s3"))


def test_aggregates_roll_the_minutes_up_into_buckets_with_the_same_start_text(store: tuple[Writer, Ask]) -> None:
    writer, ask = store
    writer.write([at(0, 1.0), at(30, 3.0), at(90, 5.0), at(400, 7.0), at(3700, 9.0)])

    def buckets(bucket: Bucket, limit: int = 10, cursor: str | None = None) -> tuple[list[tuple], str | None]:
        page = ask(lambda r: r.aggregates("s1", "temperature", T0, T0 + timedelta(hours=2), bucket, limit, cursor))
        return [(a["start"], a["count"], a["min"], a["max"], a["avg"]) for a in page.items], page.next_cursor

    assert buckets("1m")[0] == [
        ("2025-11-17T14:00:00Z", 2, 1.0, 3.0, 2.0),
        ("2025-11-17T14:01:00Z", 1, 5.0, 5.0, 5.0),
        ("2025-11-17T14:06:00Z", 1, 7.0, 7.0, 7.0),
        ("2025-11-17T15:01:00Z", 1, 9.0, 9.0, 9.0),
    ]
    first, cursor = buckets("5m", limit=1)
    assert first == [("2025-11-17T14:00:00Z", 3, 1.0, 5.0, 3.0)] and cursor is not None
    assert buckets("5m", 1, cursor)[0] == [("2025-11-17T14:05:00Z", 1, 7.0, 7.0, 7.0)]
    assert buckets("1h")[0] == [("2025-11-17T14:00:00Z", 4, 1.0, 7.0, 4.0), ("2025-11-17T15:00:00Z", 1, 9.0, 9.0, 9.0)]
    assert buckets("1d")[0] == [("2025-11-17T00:00:00Z", 5, 1.0, 9.0, 5.0)]


def test_sensors_list_the_latest_reading_per_type(store: tuple[Writer, Ask]) -> None:
    writer, ask = store
    writer.write([at(0, 1.0), at(60, 2.0), at(0, 50.0, "humidity"), at(5, 9.0, sensor="s2"), at(5, 8.0, sensor="s3")])
    first = ask(lambda r: r.sensors(2, None))
    assert [s["sensor_id"] for s in first.items] == ["s1", "s2"]
    assert first.items[0]["types"] == ["humidity", "temperature"]
    assert first.items[0]["latest"]["temperature"] == {
        "timestamp": "2025-11-17T14:01:00.000000Z",
        "value": 2.0,
        "unit": "C",
        "location": None,
    }
    rest = ask(lambda r: r.sensors(2, first.next_cursor))
    assert [s["sensor_id"] for s in rest.items] == ["s3"] and rest.next_cursor is None


def seen(sensor: str, arrived_s: int, type_: str = "temperature", location: str | None = None, ts: int = 0) -> Record:
    """A reading of `sensor` that arrived at the API `arrived_s` seconds after T0."""
    reading = Reading(sensor, T0 + timedelta(seconds=ts), type_, 1.0, location=location)
    return Record.of(reading, int((T0 + timedelta(seconds=arrived_s)).timestamp()) * 1_000_000_000)


def _all(ask: Ask, limit: int, query: SensorQuery) -> list[list[str]]:
    """Every page of GET /sensors' query, `limit` sensors at a time, as their ids."""
    pages, cursor = [], None
    while True:
        page = ask(partial(lambda r, c: r.sensors(limit, c, query), c=cursor))
        pages.append([s["sensor_id"] for s in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def test_fleet_queries_filter_sort_and_page(store: tuple[Writer, Ask]) -> None:
    writer, ask = store
    writer.write(
        [
            seen("lab-12345.a", 100, location="lab"),
            seen("lab-12345.a", 50, "humidity", ts=-60),  # backfill arriving earlier: last_seen stays 100
            seen("lab-2345", 300, "humidity", location="roof"),
            seen("roof_1", 200, location="roof"),
            seen("roofx1", 200),  # `_` in q is a character, not LIKE's wildcard
            seen("LAB-9", 400),
        ]
    )
    writer.write([seen("lab-12345.a", 30, ts=-120)])  # an old reading arriving late: still seen at 100
    everything = _all(ask, 2, SensorQuery())
    assert everything == [["LAB-9", "lab-12345.a"], ["lab-2345", "roof_1"], ["roofx1"]]
    first = ask(lambda r: r.sensors(10, None, SensorQuery(q="2345")))
    assert [s["sensor_id"] for s in first.items] == ["lab-12345.a", "lab-2345"]
    assert first.items[0]["last_seen"] == "2025-11-17T14:01:40.000000Z"
    assert first.items[0]["types"] == ["humidity", "temperature"]
    assert _all(ask, 1, SensorQuery(q="lab")) == [["LAB-9"], ["lab-12345.a"], ["lab-2345"]]  # any case
    assert _all(ask, 10, SensorQuery(q="f_1")) == [["roof_1"]]  # not roofx1
    assert _all(ask, 10, SensorQuery(q="of_")) == [["roof_1"]]
    assert _all(ask, 10, SensorQuery(q="%")) == [[]]
    assert _all(ask, 10, SensorQuery(type="humidity")) == [["lab-12345.a", "lab-2345"]]
    assert _all(ask, 10, SensorQuery(location="roof")) == [["lab-2345", "roof_1"]]
    assert _all(ask, 10, SensorQuery(location="roof", type="temperature")) == [["roof_1"]]
    newest = [["LAB-9", "lab-2345"], ["roofx1", "roof_1"], ["lab-12345.a"]]  # ties: id descending
    assert _all(ask, 2, SensorQuery(sort="last_seen")) == newest
    before = int((T0 + timedelta(seconds=250)).timestamp()) * 1_000_000_000
    assert _all(ask, 1, SensorQuery(sort="last_seen", silent_before_ns=before)) == [
        ["roofx1"],
        ["roof_1"],
        ["lab-12345.a"],
    ]
    assert _all(ask, 10, SensorQuery(silent_before_ns=before, q="roof")) == [["roof_1", "roofx1"]]
    # a cursor of one sort is refused by the other
    by_id = ask(lambda r: r.sensors(1, None, SensorQuery()))
    with pytest.raises(BadCursor):
        ask(lambda r: r.sensors(1, by_id.next_cursor, SensorQuery(sort="last_seen")))


def test_a_common_substring_scans_instead_of_the_trigram_index(
    store: tuple[Writer, Ask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite narrows `q` through `sensor_ids`, and `silent_for` through the arrival index, only
    when few sensors match; both paths answer alike."""
    from store import reads

    writer, ask = store
    writer.write([seen(f"lab-{i:03d}", i) for i in range(30)])
    by_index = _all(ask, 7, SensorQuery(q="lab-01"))
    quiet = SensorQuery(silent_before_ns=int((T0 + timedelta(seconds=12)).timestamp()) * 10**9)
    few_silent = _all(ask, 7, quiet)
    assert few_silent == [[f"lab-{i:03d}" for i in range(7)], [f"lab-{i:03d}" for i in range(7, 12)]]
    monkeypatch.setattr(reads, "TRIGRAM_MOST", 0)
    assert _all(ask, 7, quiet) == few_silent
    assert (
        _all(ask, 7, SensorQuery(q="lab-01"))
        == by_index
        == [[f"lab-{i:03d}" for i in range(10, 17)], [f"lab-{i:03d}" for i in range(17, 20)]]
    )


def test_sensors_of_a_store_from_before_the_sensors_table_are_backfilled(tmp_path: Path) -> None:
    """An existing SQLite database upgraded in place: `sensors` filled from what is stored."""
    import sqlite3

    path = str(tmp_path / "old.db")
    writer = open_writer("sqlite", path, "")
    writer.setup()
    writer.write([seen("a", 100), seen("a", 200, "humidity"), seen("b", 50)])
    writer.close()
    with sqlite3.connect(path) as conn:
        conn.executescript("DROP TRIGGER sensors_on_insert; DROP TABLE sensors;")
    writer = open_writer("sqlite", path, "")
    writer.setup()
    writer.close()

    async def newest() -> list[tuple[str, str]]:
        reader = open_reader("sqlite", path, "")
        assert reader is not None
        page = await reader.sensors(10, None, SensorQuery(sort="last_seen"))
        return [(s["sensor_id"], s["last_seen"]) for s in page.items]

    assert asyncio.run(newest()) == [("a", "2025-11-17T14:03:20.000000Z"), ("b", "2025-11-17T14:00:50.000000Z")]

    # and one from before the trigram index of the ids: filled from `sensors`
    with sqlite3.connect(path) as conn:
        conn.executescript("DROP TRIGGER sensor_ids_on_insert; DROP TABLE sensor_ids;")
    writer = open_writer("sqlite", path, "")
    writer.setup()
    writer.write([seen("sensor-abc-1", 300)])
    writer.close()

    async def found(q: str) -> list[str]:
        reader = open_reader("sqlite", path, "")
        assert reader is not None
        return [s["sensor_id"] for s in (await reader.sensors(10, None, SensorQuery(q=q))).items]

    assert asyncio.run(found("ABC")) == ["sensor-abc-1"] and asyncio.run(found("a")) == ["a", "sensor-abc-1"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM sensor_ids").fetchone()[0] == 3  # each id once


def test_alerts_are_listed_by_state_and_acknowledged_once(store: tuple[Writer, Ask]) -> None:
    writer, ask = store
    raised = writer.write([at(0, 41.0), at(1, 45.0, sensor="s2")]).alerts
    writer.write([at(2, 20.0)])  # clears s1's
    active = ask(lambda r: r.alerts("active", None, 10, None))
    assert [(a["sensor_id"], a["state"]) for a in active.items] == [("s2", "active")]
    every = ask(lambda r: r.alerts("all", None, 1, None))
    assert len(every.items) == 1 and every.next_cursor is not None
    assert [a["sensor_id"] for a in ask(lambda r: r.alerts("all", None, 1, every.next_cursor)).items] == ["s1"]
    cleared = ask(lambda r: r.alerts("cleared", "s1", 10, None)).items
    assert [(a["id"], a["cleared_value"], a["acked_at"]) for a in cleared] == [(raised[0].id, 20.0, None)]

    acked = ask(lambda r: r.ack(raised[0].id))
    assert acked is not None and acked["acked_at"] is not None
    again = ask(lambda r: r.ack(raised[0].id))
    assert again is not None and again["acked_at"] == acked["acked_at"]  # the first time is kept
    assert ask(lambda r: r.ack("no-such-alert")) is None


@pytest.mark.parametrize("cursor", ["not-base64!", "bnVsbA", "WyJhIl0"])  # garbage, null, one key of two
def test_a_cursor_this_store_did_not_hand_out_is_refused(store: tuple[Writer, Ask], cursor: str) -> None:
    _, ask = store
    with pytest.raises(BadCursor):
        ask(lambda r: r.readings("s1", None, None, None, 10, cursor))


def test_a_sqlite_store_not_created_yet_is_unavailable(tmp_path: Path) -> None:
    reader = open_reader("sqlite", str(tmp_path / "none.db"), "")
    assert reader is not None
    with pytest.raises(StoreUnavailable, match="no SQLite database"):
        asyncio.run(reader.known("s1"))


@pytest.mark.integration
def test_an_unreachable_postgres_is_unavailable_not_a_pool_timeout() -> None:
    from store.postgres import PostgresReader

    reader = PostgresReader(f"postgresql://postgres@127.0.0.1:{free_port()}/x", timeout_s=1.0)

    async def read() -> None:
        try:
            await reader.known("s1")
        finally:
            await reader.close()

    with pytest.raises(StoreUnavailable, match="PostgreSQL"):
        asyncio.run(read())


def test_console_has_no_reader() -> None:
    assert open_reader("console", "x.db", "") is None
