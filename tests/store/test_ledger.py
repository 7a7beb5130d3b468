"""The completeness ledger (store/ledger.py): the range merge, and the ledger kept by both
writers in the write's transaction, on real databases."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.db import pg_rows, sqlite_rows
from pipeline.reading import SEQ_MAX, Reading
from pipeline.record import Record
from store import Writer, ledger
from store.postgres import PostgresWriter
from store.sqlite import SqliteReader, SqliteWriter

BASE = datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc)


def expand(ranges: list[tuple[int, int]]) -> set[int]:
    return {s for a, b in ranges for s in range(a, b + 1)}


def test_runs_and_missing() -> None:
    assert ledger.runs([4, 1, 2, 2, 3, 10, 12, 11]) == [(1, 4), (10, 12)]
    assert ledger.missing([(1, 4), (10, 12), (14, 14)]) == [(5, 9), (13, 13)]
    assert ledger.missing([(1, 4)]) == []


def test_merge_fills_gaps_and_counts_duplicates() -> None:
    m = ledger.merge([(1, 4), (10, 12)], [5, 6, 7, 8, 9])
    assert m == ledger.Merge([(1, 12)], 5, 0)
    m = ledger.merge([(1, 4)], [4, 6, 6])  # 4 again; 6 twice among new readings
    assert m == ledger.Merge([(1, 4), (6, 6)], 1, 2)
    assert ledger.merge([], [SEQ_MAX, 0]) == ledger.Merge([(0, 0), (SEQ_MAX, SEQ_MAX)], 2, 0)


@given(st.lists(st.lists(st.integers(0, 60), max_size=12), max_size=8))
def test_merging_batches_in_any_order_equals_the_set_of_seqs(batches: list[list[int]]) -> None:
    ranges: list[tuple[int, int]] = []
    seen: set[int] = set()
    for batch in batches:
        m = ledger.merge(ranges, batch)
        ranges = m.ranges
        assert expand(ranges) == seen | set(batch)
        assert m.added == len(set(batch) - seen)
        assert m.duplicates == len(batch) - m.added
        seen |= set(batch)
        # disjoint, sorted, not adjacent: the compact form
        assert all(a[1] + 1 < b[0] for a, b in pairwise(ranges))
        assert all(a <= b for a, b in ranges)
    assert expand(ledger.missing(ranges)) == (set(range(min(seen), max(seen) + 1)) - seen if seen else set())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Writer, str]]:
    if request.param == "sqlite":
        where = str(tmp_path / "r.db")
        s: Writer = SqliteWriter(where)
    else:
        where = request.getfixturevalue("pg_url")
        s = PostgresWriter(where)
    s.setup()
    yield s, where
    s.close()


def rows(kind: Writer, where: str, sql: str) -> list[tuple]:
    return sqlite_rows(where, sql) if isinstance(kind, SqliteWriter) else pg_rows(where, sql)


def reading(seq: int | None, second: int | None = None, sensor: str = "s1", type_: str = "t") -> Record:
    offset = second if second is not None else seq
    assert offset is not None
    moment = BASE + timedelta(seconds=offset)
    return Record.of(Reading(sensor, moment, type_, 1.0, seq=seq), 1)


def ledger_of(s: Writer, where: str, sensor: str = "s1", type_: str = "t") -> tuple:
    (row,) = rows(
        s,
        where,
        f"SELECT first_seq, last_seq, received, missing, duplicates FROM seq_ledger"
        f" WHERE sensor_id = '{sensor}' AND type = '{type_}'",
    )
    return tuple(row)


def ranges_of(s: Writer, where: str) -> list[tuple]:
    return [tuple(r) for r in rows(s, where, "SELECT first, last FROM seq_ranges ORDER BY first")]


def test_a_gap_is_kept_as_two_ranges_and_filled_out_of_order(sink: tuple[Writer, str]) -> None:
    s, where = sink
    assert s.write([reading(n) for n in (1, 2, 3, 4, 10, 11, 12)]).stored == 7
    assert ranges_of(s, where) == [(1, 4), (10, 12)]
    assert ledger_of(s, where) == (1, 12, 7, 5, 0)
    s.write([reading(7), reading(5)])
    assert ranges_of(s, where) == [(1, 5), (7, 7), (10, 12)]
    s.write([reading(n) for n in (6, 8, 9)])
    assert ranges_of(s, where) == [(1, 12)]
    assert ledger_of(s, where) == (1, 12, 12, 0, 0)


def test_a_replay_changes_nothing_and_a_resent_seq_is_a_duplicate(sink: tuple[Writer, str]) -> None:
    s, where = sink
    batch = [reading(n) for n in range(1, 6)]
    s.write(batch)
    s.write(batch)  # a replay: no new row, no duplicate
    s.write([batch[0], batch[0]])
    assert ledger_of(s, where) == (1, 5, 5, 0, 0)
    s.write([reading(3, second=100), reading(9, second=101), reading(9, second=102)])
    assert ledger_of(s, where) == (1, 9, 6, 3, 2)  # seq 3 again; seq 9 twice
    assert ranges_of(s, where) == [(1, 5), (9, 9)]


def test_readings_without_seq_keep_no_ledger_and_types_are_apart(sink: tuple[Writer, str]) -> None:
    s, where = sink
    s.write([reading(None, second=1), reading(1, type_="a"), reading(1, type_="b", second=2)])
    assert rows(s, where, "SELECT type, received FROM seq_ledger ORDER BY type") == [("a", 1), ("b", 1)]


def test_the_reader_answers_received_missing_and_duplicates(tmp_path: Path) -> None:
    where = str(tmp_path / "r.db")
    s = SqliteWriter(where)
    s.setup()
    s.write([reading(n) for n in (1, 2, 3, 4, 10, 11, 12)])
    got = asyncio.run(SqliteReader(where).completeness("s1", "t"))
    assert got == {
        "sensor_id": "s1",
        "type": "t",
        "received": 7,
        "missing": [[5, 9]],
        "missing_count": 5,
        "first_seq": 1,
        "last_seq": 12,
        "duplicates": 0,
    }
    assert asyncio.run(SqliteReader(where).completeness("s1", "other"))["last_seq"] is None


@pytest.mark.integration
def test_concurrent_postgres_writers_lose_no_update(pg_url: str) -> None:
    """Two writers (two owners of a partition during a rebalance) insert different readings
    of the same sensors at once and every range and count is kept. NOTE: the upsert of
    `latest` already locks the sensor's row, so this holds even without the ledger's own
    `FOR UPDATE` (checked: it passes with it removed); that lock is there so the ledger does
    not depend on another table's statement."""
    writers = [PostgresWriter(pg_url), PostgresWriter(pg_url)]
    for w in writers:
        w.setup()
    rounds = 40
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(parity: int) -> None:
        try:
            for n in range(rounds):
                barrier.wait()
                seqs = [4 * n + 2 * k + parity for k in range(2)]  # the two interleave
                writers[parity].write([reading(s, sensor=sensor) for s in seqs for sensor in ("a", "b", "c")])
        except BaseException as e:  # reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(p,)) for p in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers:
        w.close()
    assert not errors, errors
    got = pg_rows(pg_url, "SELECT sensor_id, first_seq, last_seq, received, missing, duplicates FROM seq_ledger")
    assert sorted(tuple(r) for r in got) == [(s, 0, 4 * rounds - 1, 4 * rounds, 0, 0) for s in "abc"]
    assert sorted(tuple(r) for r in pg_rows(pg_url, "SELECT sensor_id, first, last FROM seq_ranges")) == [
        (s, 0, 4 * rounds - 1) for s in "abc"
    ]
