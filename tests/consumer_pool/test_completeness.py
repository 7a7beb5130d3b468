"""The completeness ledger under a killed worker (docs/contract.md, "Completeness"): a pool
worker is SIGKILLed mid-stream while it holds stored but uncommitted readings, their
replay is absorbed, and the ledger shows no false gap and no false duplicate, only the gap
the devices really left; on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from harness.db import pg_count, pg_rows, sqlite_count, sqlite_rows
from harness.kafka import group_assignment, produce
from harness.poll import wait_until
from harness.prometheus import metric, scrape
from harness.readings import encoded
from tests.consumer_pool.conftest import PoolFactory
from tests.consumer_pool.test_supervisor import exactly_once_in_effects, worker_pids

pytestmark = pytest.mark.timeout(240)

SENSORS = 20
PER_SENSOR = 300
SKIPPED = range(100, 110)  # sensor 0's device never sent these


def numbered(i: int) -> dict[str, object]:
    """Reading i: sensor i % SENSORS, seq i // SENSORS, one second apart per sensor."""
    seq = i // SENSORS
    return {
        "sensor_id": f"k{i % SENSORS}",
        "timestamp": f"2025-11-17T{14 + seq // 3600:02d}:{(seq // 60) % 60:02d}:{seq % 60:02d}Z",
        "type": "temperature",
        "value": float(seq),
        "seq": seq,
    }


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_killed_worker_leaves_no_false_gap_and_no_false_duplicate(
    start_pool: PoolFactory,
    pool_env: dict[str, str],
    kafka_broker: str,
    topic: str,
    store: str,
    request: pytest.FixtureRequest,
) -> None:
    readings = [numbered(i) for i in range(SENSORS * PER_SENSOR)]
    readings = [r for r in readings if not (r["sensor_id"] == "k0" and r["seq"] in SKIPPED)]
    total = len(readings)
    if store == "postgres":
        url: str = request.getfixturevalue("pg_url")
        extra = {"SINK": "postgres", "DATABASE_URL": url}
        count = lambda: pg_count(url)  # noqa: E731
        rows = lambda sql: pg_rows(url, sql)  # noqa: E731
    else:
        path = pool_env["SQLITE_PATH"]
        extra = {"SINK": "sqlite"}
        count = lambda: sqlite_count(path) if os.path.exists(path) else 0  # noqa: E731
        rows = lambda sql: sqlite_rows(path, sql)  # noqa: E731
    # NOTE: commits at most every 2 s, so the killed worker holds stored, uncommitted readings
    # whose replay the ledger must absorb.
    pool = start_pool("--workers", "2", CONSUMER_BATCH_SIZE="200", CONSUMER_COMMIT_INTERVAL_MS="2000", **extra)
    wait_until("a stable group", lambda: len(group_assignment(kafka_broker, pool_env["CONSUMER_GROUP"])) == 2, 90, pool)

    def stream() -> None:  # ~3 s of steady traffic, so the kill lands mid-stream
        for start in range(0, total, 200):
            produce(kafka_broker, topic, encoded(readings[start : start + 200]))
            time.sleep(0.1)

    producer = threading.Thread(target=stream)
    producer.start()
    try:
        wait_until("the first rows", lambda: count() >= 600, 60, pool)
        victim = worker_pids(pool.log())[0]
        os.kill(victim, signal.SIGKILL)
        wait_until("the worker to be replaced", lambda: worker_pids(pool.log())[0] != victim, 60, pool)
    finally:
        producer.join()

    wait_until(f"{total} rows", lambda: count() >= total, 120, pool)
    port = int(pool_env["CONSUMER_METRICS_PORT"])
    wait_until("two live workers again", lambda: metric(scrape(port), "sensor_consumer_workers_alive") == 2, 30, pool)
    _, replayed = exactly_once_in_effects(port, total, pool)
    assert replayed > 0, "no replay happened: the kill did not test the ledger"

    ledger = rows("SELECT sensor_id, first_seq, last_seq, received, missing, duplicates FROM seq_ledger")
    expected = {f"k{s}": (0, PER_SENSOR - 1, PER_SENSOR, 0, 0) for s in range(SENSORS)}
    expected["k0"] = (0, PER_SENSOR - 1, PER_SENSOR - len(SKIPPED), len(SKIPPED), 0)
    assert {s: tuple(int(v) for v in rest) for s, *rest in ledger} == expected
    ranges = rows("SELECT sensor_id, first, last FROM seq_ranges ORDER BY sensor_id, first")
    assert [tuple(r) for r in ranges if r[0] == "k0"] == [("k0", 0, 99), ("k0", 110, PER_SENSOR - 1)]
    assert len(ranges) == SENSORS + 1  # one range per sensor, two for the one with a gap
    wait_until(
        "sensor_readings_missing",
        lambda: metric(scrape(port), "sensor_readings_missing", type="temperature") == len(SKIPPED),
        30,
        pool,
    )
