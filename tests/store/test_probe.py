"""The probe the harness and the benches read through: rows of a run (by sensor_id prefix),
their values, latencies and span, on both stores; a store not created yet has no rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline.reading import Reading
from pipeline.record import Record
from store import open_writer
from store.probe import Probe


def at(sensor: str, value: float, ingested_at_ns: int) -> Record:
    return Record.of(Reading(sensor, datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc), "t", value), ingested_at_ns)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def probe(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Probe]:
    path = str(tmp_path / "r.db")
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    writer = open_writer(request.param, path, url)
    writer.setup()
    writer.write([at("run1-a", 1.0, 100), at("run1-b", 2.0, 200), at("run10-a", 3.0, 300), at("other", 4.0, 400)])
    writer.close()
    yield Probe(database_url=url) if url else Probe(sqlite_path=path)


def test_rows_of_a_run_are_counted_by_prefix(probe: Probe) -> None:
    n, last = probe.count("run1-")
    assert n == 2 and last is not None and last > 10**18  # stored_at_ns: the write's own clock
    assert sorted(probe.values("run1-")) == [1.0, 2.0]
    assert sorted(probe.values("")) == [1.0, 2.0, 3.0, 4.0]
    assert probe.count("nobody-") == (0, None)


def test_latencies_and_span(probe: Probe) -> None:
    first, last = probe.span()
    assert first is not None and first == last  # one batch: one stored_at_ns
    assert probe.latencies_ns("run1-") == [first - 200, first - 100]  # sorted
    assert probe.latencies_ns("run1") == [first - 300, first - 200, first - 100]  # a prefix, not a run id
    assert probe.latencies_ns(ingested_from_ns=300) == [first - 400, first - 300]


def test_a_store_not_created_yet_has_no_rows(tmp_path: Path) -> None:
    probe = Probe(sqlite_path=str(tmp_path / "none.db"))
    assert probe.count("x") == (0, None) and probe.values() == [] and probe.span() == (None, None)


@pytest.mark.integration
def test_a_postgres_database_without_the_table_has_no_rows(pg_url: str) -> None:
    assert Probe(database_url=pg_url).count("x") == (0, None)
