"""2xx <=> stored: the hostile readings (harness/hostile.py) go through the real API, Kafka and
a pool per sink (console, SQLite, PostgreSQL); every reading answered 202 is stored by each
sink exactly as sent, nothing answered 422 reaches Kafka, and nothing is dead-lettered."""

from __future__ import annotations

import functools
import json

import pytest
import requests

from harness.db import pg_rows, sqlite_rows
from harness.hostile import ACCEPTED, HOSTILE
from harness.kafka import watermarks
from harness.poll import wait_until
from harness.process import free_port, unique
from pipeline.reading import decode_reading, utc_text
from tests.conftest import ApiFactory
from tests.consumer_pool.conftest import PoolFactory

pytestmark = pytest.mark.integration

Row = tuple[str, str, str, float, str | None, str | None]


def expected_row(reading: dict[str, object]) -> Row:
    """What a store must hold for a reading: the model's own decoding of what was sent."""
    r = decode_reading(json.dumps(reading).encode())
    return (r.sensor_id, r.type, utc_text(r.timestamp), r.value, r.unit, r.location)


def console_rows(log: str) -> set[Row]:
    rows = set()
    for line in log.split("\n"):  # NOTE: not splitlines(): U+2028 in a reading is not a line end
        if line.startswith("Message received: "):
            r = decode_reading(line.removeprefix("Message received: ").encode())
            rows.add((r.sensor_id, r.type, utc_text(r.timestamp), r.value, r.unit, r.location))
    return rows


COLUMNS = "sensor_id, type, ts, value, unit, location"


def test_what_is_answered_202_is_stored_by_every_sink(
    start_api: ApiFactory, start_pool: PoolFactory, pg_url: str, kafka_broker: str, topic: str, tmp_path
) -> None:
    api, _ = start_api()
    for case in HOSTILE:
        resp = requests.post(
            f"{api}/sensor", data=json.dumps(case.reading), headers={"Content-Type": "application/json"}, timeout=15
        )
        assert resp.status_code == case.status, (case.name, resp.text)
        if case.status == 422:
            assert resp.json()["path"] == case.path, case.name

    # The same readings as one batch: refused whole, every invalid one listed with its path.
    resp = requests.post(f"{api}/sensor/batch", json=[c.reading for c in HOSTILE], timeout=15)
    assert resp.status_code == 422
    refused = [(f"$[{i}]{c.path[1:]}") for i, c in enumerate(HOSTILE) if c.status == 422]  # type: ignore[index]
    assert [e["path"] for e in resp.json()["errors"]] == refused
    assert resp.json()["invalid"] == len(refused)

    expected = {expected_row(c.reading) for c in ACCEPTED}
    assert sum(high for _, high in watermarks(kafka_broker, topic).values()) == len(ACCEPTED)

    sqlite_path = str(tmp_path / "hostile.db")
    pools = {
        sink: start_pool(
            SINK=sink,
            CONSUMER_WORKERS="1",
            CONSUMER_GROUP=unique(f"hostile-{sink}"),
            CONSUMER_METRICS_PORT=str(free_port()),
            CONSUMER_METRICS_DIR=str(tmp_path / f"metrics-{sink}"),
            SQLITE_PATH=sqlite_path,
            DATABASE_URL=pg_url,
        )
        for sink in ("console", "sqlite", "postgres")
    }

    def stored(sink: str) -> set[Row]:
        if sink == "console":
            return console_rows(pools[sink].log())
        if sink == "sqlite":
            return set(sqlite_rows(sqlite_path, f"SELECT {COLUMNS} FROM readings"))
        return {
            (s, t, utc_text(ts), v, u, loc)
            for s, t, ts, v, u, loc in pg_rows(pg_url, f"SELECT {COLUMNS} FROM readings")
        }

    def all_stored(sink: str) -> set[Row]:
        rows = stored(sink)
        return rows if len(rows) >= len(expected) else set()

    for sink, proc in pools.items():
        got = wait_until(f"{sink} to store {len(expected)} readings", functools.partial(all_stored, sink), 60, proc)
        assert got == expected, (sink, got ^ expected)
    dlq = watermarks(kafka_broker, f"{topic}.dlq")
    assert sum(high for _, high in dlq.values()) == 0, "a reading the API accepted was dead-lettered"
    for sink, proc in pools.items():
        assert "failed (attempt" not in proc.log(), (sink, proc.log_tail())
    # PostgreSQL's aggregates hold the two 1e297 readings of one minute without overflowing.
    (total,) = pg_rows(pg_url, "SELECT sum FROM readings_1m WHERE sensor_id = 'hostile-12'")
    assert total == (2e297,)
    assert pg_rows(pg_url, "SELECT sum FROM readings_1d WHERE sensor_id = 'hostile-12'") == [(2e297,)]
