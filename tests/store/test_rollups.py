"""Hourly and daily rollups on real databases: the 1h and 1d aggregates read from them give
exactly the answer the old roll-up of readings_1m gave, on random data and random windows
(aligned or not, paged), in both stores; replays count once; an existing database is
backfilled at setup; retention keeps a bucket until all of it is older than the cutoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from harness.db import pg_rows, sqlite_rows
from pipeline.reading import Reading, utc_text
from pipeline.record import Record
from store import Bucket, Reader, open_reader, open_writer, reads
from store.dialect import minute_text
from store.reads import Page

T0 = datetime(2025, 10, 30, 21, 0, tzinfo=timezone.utc)
SPAN_S = 5 * 86_400  # five days, across a month's end


class Store:
    def __init__(self, kind: str, path: str, url: str) -> None:
        self.kind, self.path, self.url = kind, path, url
        self.writer = open_writer(kind, path, url)
        self.writer.setup()

    def write(self, records: list[Record]) -> int:
        return self.writer.write(records).stored

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return sqlite_rows(self.path, sql) if self.kind == "sqlite" else pg_rows(self.url, sql)

    def both(self, windows: list[tuple[str | None, datetime, datetime, Bucket, int]]) -> list[tuple[list, list]]:
        """For each window, every page of the rollup answer and of the old readings_1m roll-up."""

        async def run() -> list[tuple[list, list]]:
            reader = open_reader(self.kind, self.path, self.url)
            assert reader is not None
            try:
                return [(await pages(reader, w, rollup=True), await pages(reader, w, rollup=False)) for w in windows]
            finally:
                await reader.close()

        return asyncio.run(run())


async def old_roll_up(reader: Reader, sensor_id: str, type_: str | None, start: datetime, end: datetime,
                      bucket: Bucket, limit: int, cursor: str | None) -> Page:  # fmt: skip
    """The aggregates as they were read before the rollups: every bucket from readings_1m."""
    d = reader.dialect
    sql, args = reads.aggregates_sql(d.buckets, bucket, type_, reads.decode_cursor(cursor, 2), d.cast)
    rows = await reader._query(sql, [sensor_id, d.bound(start), d.bound(end), *args, limit + 1])
    return reads.page(rows, limit, reads.aggregate, lambda r: [minute_text(r[1]), r[0]])


async def pages(reader: Reader, window: tuple[str | None, datetime, datetime, Bucket, int], rollup: bool) -> list:
    type_, start, end, bucket, limit = window
    got, cursor = [], None
    while True:
        if rollup:
            page = await reader.aggregates("s1", type_, start, end, bucket, limit, cursor)
        else:
            page = await old_roll_up(reader, "s1", type_, start, end, bucket, limit, cursor)
        got.append(page.items)
        if page.next_cursor is None:
            return got
        cursor = page.next_cursor


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    s = Store(request.param, str(tmp_path / "r.db"), url)
    yield s
    s.writer.close()


def random_records(rng: random.Random, count: int) -> list[Record]:
    """Readings of s1 (two types) and s2 at random microseconds of the span. Values are
    multiples of 1/8 well inside 2^40, so every sum is exact whatever the order of addition
    (float addition is not associative: otherwise the two answers could differ in the last bit)."""
    out = []
    for _ in range(count):
        moment = T0 + timedelta(microseconds=rng.randrange(SPAN_S * 1_000_000))
        sensor = rng.choice(["s1", "s1", "s1", "s2"])
        out.append(
            Record.of(Reading(sensor, moment, rng.choice(["temperature", "humidity"]), rng.randint(-8000, 8000) / 8), 0)
        )
    return out


def random_windows(rng: random.Random, count: int) -> list[tuple[str | None, datetime, datetime, Bucket, int]]:
    def moment() -> datetime:
        at = T0 + timedelta(seconds=rng.randrange(-3600, SPAN_S + 3600))
        kind = rng.random()
        if kind < 0.3:
            return at.replace(minute=0, second=0)  # on an hour
        if kind < 0.5:
            return at.replace(hour=0, minute=0, second=0)  # on a day
        if kind < 0.6:
            return at.replace(microsecond=rng.randrange(1_000_000))
        return at

    windows = []
    for _ in range(count):
        a, b = sorted([moment(), moment()])
        bucket: Bucket = rng.choice(["1h", "1d"])
        windows.append((rng.choice([None, "temperature"]), a, b, bucket, rng.choice([3, 50, 1000])))
    windows.append((None, T0 - timedelta(days=1), T0 + timedelta(days=7), "1d", 1000))  # everything
    windows.append(("humidity", T0, T0 + timedelta(days=5), "1h", 1000))
    windows.append((None, T0 + timedelta(minutes=7), T0 + timedelta(minutes=43), "1h", 10))  # inside one hour
    return windows


def test_rollup_answers_equal_the_minute_roll_up_on_random_data(store: Store) -> None:
    rng = random.Random(23)
    records = random_records(rng, 6000)
    for i in range(0, len(records), 700):
        store.write(records[i : i + 700])
    store.write(records[100:900] + records[:50])  # a replay, in another batch shape: counted once
    assert store.rows("SELECT count(*) FROM readings") == [
        (len({(r.reading.sensor_id, r.reading.type, r.ts) for r in records}),)
    ]
    windows = random_windows(rng, 60)
    answers = store.both(windows)
    buckets = 0
    for window, (new, old) in zip(windows, answers, strict=True):
        assert new == old, window
        buckets += sum(len(p) for p in new)
    assert buckets > 500  # the windows did cover data
    total = store.rows("SELECT sum(count) FROM readings_1h")[0][0]
    assert (
        total
        == store.rows("SELECT sum(count) FROM readings_1d")[0][0]
        == store.rows("SELECT count(*) FROM readings")[0][0]
    )


def test_the_rollups_count_only_rows_really_inserted(store: Store) -> None:
    at = lambda s, v: Record.of(Reading("s1", T0 + timedelta(seconds=s), "temperature", v), 0)  # noqa: E731
    assert store.write([at(0, 1.0), at(0, 99.0), at(10, 3.0), at(4000, 5.0)]) == 3  # a duplicate inside
    assert store.write([at(10, 50.0), at(20, 7.0)]) == 1  # a replayed reading and a new one
    assert store.write([at(0, 1.0), at(10, 3.0)]) == 0
    hours = store.rows("SELECT count, min, max, sum FROM readings_1h ORDER BY start")
    assert hours == [(3, 1.0, 7.0, 11.0), (1, 5.0, 5.0, 5.0)]
    assert store.rows("SELECT count, min, max, sum FROM readings_1d") == [(4, 1.0, 7.0, 16.0)]


def test_an_existing_database_is_backfilled_from_the_minute_rows(store: Store) -> None:
    rng = random.Random(7)
    records = random_records(rng, 2000)
    store.write(records)
    want_h = store.rows("SELECT sensor_id, type, start, count, min, max, sum FROM readings_1h ORDER BY 1, 2, 3")
    want_d = store.rows("SELECT sensor_id, type, start, count, min, max, sum FROM readings_1d ORDER BY 1, 2, 3")
    store.writer.close()
    drop = "DROP TABLE readings_1h; DROP TABLE readings_1d"
    if store.kind == "sqlite":
        import sqlite3

        with sqlite3.connect(store.path) as conn:
            conn.executescript(drop)
    else:
        import psycopg

        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute(drop)
    store.writer = open_writer(store.kind, store.path, store.url)
    store.writer.setup()  # as a database from before the rollups: created and filled once
    assert store.rows("SELECT sensor_id, type, start, count, min, max, sum FROM readings_1h ORDER BY 1, 2, 3") == want_h
    assert store.rows("SELECT sensor_id, type, start, count, min, max, sum FROM readings_1d ORDER BY 1, 2, 3") == want_d
    assert len(want_h) > 100
    store.writer.setup()  # a second setup changes nothing
    assert store.rows("SELECT sum(count) FROM readings_1h") == [(len(records),)]


def test_retention_prunes_a_bucket_once_all_of_it_is_older(store: Store) -> None:
    at = lambda h, s=0: Record.of(Reading("s1", T0 + timedelta(hours=h, seconds=s), "temperature", 1.0), 0)  # noqa: E731
    store.write([at(h) for h in range(0, 30)] + [at(0, 1800)])  # 21:00 on day 1 .. 02:00 on day 3
    cutoff = utc_text(T0 + timedelta(hours=10, minutes=30))  # 07:30 on day 2
    while not store.writer.prune(None, cutoff, 10)[1]:
        pass
    first_hour = store.rows("SELECT min(start) FROM readings_1h")[0][0]
    first_day = store.rows("SELECT min(start) FROM readings_1d")[0][0]
    assert minute_text(first_hour) == "2025-10-31T07:00:00Z"  # 07:00-08:00 still holds newer minutes
    assert minute_text(first_day) == "2025-10-31T00:00:00Z"
    assert store.rows("SELECT count(*) FROM readings_1d") == [(2,)]


def test_windows_at_the_calendars_edges(store: Store) -> None:
    last = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
    store.write([Record.of(Reading("s1", last, "temperature", 2.0), 0)])
    windows: list[tuple[str | None, datetime, datetime, Bucket, int]] = [
        (None, datetime(9999, 12, 31, 23, 30, tzinfo=timezone.utc), last + timedelta(microseconds=999_999), "1h", 10),
        (None, datetime(9999, 12, 31, 0, 0, 1, tzinfo=timezone.utc), last, "1d", 10),
        (None, datetime(1, 1, 1, tzinfo=timezone.utc), last, "1d", 10),
        (None, last, datetime(9999, 12, 31, tzinfo=timezone.utc), "1h", 10),  # from after to
    ]
    answers = store.both(windows)
    assert [new for new, _ in answers] == [old for _, old in answers]
    assert answers[0][0] == [
        [{"type": "temperature", "start": "9999-12-31T23:00:00Z", "count": 1, "min": 2.0, "max": 2.0, "avg": 2.0}]
    ]
