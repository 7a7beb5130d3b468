"""Retention: expired rows go in small steps, the rest stays; the pool's worker 0 runs it."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from consumer_pool.retention import Retention
from harness.db import sqlite_count, sqlite_rows
from harness.kafka import produce
from harness.poll import wait_until
from harness.prometheus import metric, scrape
from harness.readings import encoded, reading
from pipeline.reading import Reading
from pipeline.record import Record
from store.sqlite import SqliteWriter
from tests.consumer_pool.conftest import PoolFactory

NOW = datetime(2025, 11, 20, tzinfo=timezone.utc).timestamp()


def test_a_sweep_deletes_what_expired_sensor_by_sensor_and_then_rests(tmp_path: Path) -> None:
    sink = SqliteWriter(str(tmp_path / "r.db"))
    sink.setup()
    old, new = datetime(2025, 11, 1, tzinfo=timezone.utc), datetime(2025, 11, 19, tzinfo=timezone.utc)
    sink.write([Record.of(Reading(f"s{i:02d}", when, "t", 1.0), 0) for i in range(45) for when in (old, new)])
    retention = Retention(sink, raw_days=10, agg_days=0, clock=lambda: NOW, busy_interval_s=0, idle_interval_s=3600)

    steps = [retention.step() for _ in range(4)]
    assert steps == [20, 20, 5, 0]  # 20 sensors per step; the fourth begins a new sweep and finds nothing
    assert sqlite_count(str(tmp_path / "r.db")) == 45
    assert sqlite_rows(str(tmp_path / "r.db"), "SELECT count(*) FROM readings_1m") == [(90,)]  # aggregates kept
    sink.close()


def test_the_pool_enforces_retention(
    start_pool: PoolFactory, pool_env: dict[str, str], kafka_broker: str, topic: str
) -> None:
    port = int(pool_env["CONSUMER_METRICS_PORT"])
    pool = start_pool("--workers", "2", RETENTION_RAW_DAYS="30")
    produce(kafka_broker, topic, encoded([reading(i, sensors=5) for i in range(100)]))  # from 2025: long expired
    wait_until(
        "stored", lambda: metric(scrape(port), "sensor_consumer_readings_total", result="stored") == 100, 60, pool
    )
    wait_until(
        "expired rows deleted", lambda: sqlite_count(pool_env["SQLITE_PATH"]) == 0, 45, pool
    )  # next sweep <= 10 s
    assert metric(scrape(port), "sensor_consumer_retention_deleted_total") == 100
    assert sqlite_rows(pool_env["SQLITE_PATH"], "SELECT count(*) FROM latest") == [(5,)]
