"""The supervisor against the real broker and PostgreSQL: partitions split across workers,
a SIGKILLed worker is replaced without losing or duplicating a reading, SIGTERM drains and
commits, and a worker that cannot boot stops the pool instead of a restart loop."""

from __future__ import annotations

import os
import signal
import threading
import time

import msgspec
import pytest

from consumer_pool.errors import WORKER_BOOT_ERROR
from service.models import decode_reading, encode
from tests.consumer_pool.conftest import PoolFactory
from tests.consumer_pool.helpers import (
    committed,
    encoded,
    group_assignment,
    group_state,
    metric,
    pg_count,
    produce,
    reading,
    scrape,
    sqlite_count,
    sqlite_rows,
    until,
    worker_pids,
)
from tests.support import SEED_READING, free_port

pytestmark = pytest.mark.timeout(240)


def test_partitions_are_split_between_two_workers_and_console_prints_each_reading(
    start_pool: PoolFactory, pool_env: dict[str, str], kafka_broker: str, topic: str
) -> None:
    pool = start_pool("--workers", "2", "--sink", "console")
    group = pool_env["CONSUMER_GROUP"]

    def split() -> dict[str, set[int]]:
        members = group_assignment(kafka_broker, group)
        return members if len(members) == 2 and all(members.values()) else {}

    members = list(until(split, 90, "two workers sharing the partitions", pool).values())
    assert members[0].isdisjoint(members[1])
    assert members[0] | members[1] == set(range(6))

    produce(kafka_broker, topic, [(b"sensor01", msgspec.json.encode(SEED_READING))])
    expected = f"Message received: {encode(decode_reading(msgspec.json.encode(SEED_READING))).decode()}"
    until(lambda: expected in pool.log(), 30, "the console line", pool)
    assert pool.log().count("Message received:") == 1
    port = int(pool_env["CONSUMER_METRICS_PORT"])
    # NOTE: the console line is written by the sink; the counter moves only after the commit.
    until(lambda: metric(scrape(port), "sensor_consumer_readings_total", result="stored") == 1, 15, "stored=1", pool)
    assert metric(scrape(port), "sensor_consumer_workers_alive") == 2


def test_sigkilled_worker_is_replaced_and_every_reading_is_stored_exactly_once(
    start_pool: PoolFactory, pool_env: dict[str, str], kafka_broker: str, topic: str, pg_url: str
) -> None:
    total = 6000
    pool = start_pool("--workers", "2", SINK="postgres", DATABASE_URL=pg_url, CONSUMER_BATCH_SIZE="200")
    until(lambda: len(group_assignment(kafka_broker, pool_env["CONSUMER_GROUP"])) == 2, 90, "a stable group", pool)

    def stream() -> None:  # ~3 s of steady traffic, so the kill lands mid-stream
        for start in range(0, total, 200):
            produce(kafka_broker, topic, encoded([reading(i, sensors=20) for i in range(start, start + 200)]))
            time.sleep(0.1)

    producer = threading.Thread(target=stream)
    producer.start()
    try:
        until(lambda: pg_count(pg_url) >= 600, 60, "the first rows", pool)
        victim = worker_pids(pool.log())[0]
        os.kill(victim, signal.SIGKILL)
        until(lambda: worker_pids(pool.log())[0] != victim, 60, "the worker to be replaced", pool)
    finally:
        producer.join()

    until(lambda: pg_count(pg_url) >= total, 120, f"{total} rows", pool)
    time.sleep(1.5)  # anything replayed late would show up as an extra row (it must not)
    assert pg_count(pg_url) == total
    assert "was sent SIGKILL" in pool.log()
    samples = scrape(int(pool_env["CONSUMER_METRICS_PORT"]))
    assert metric(samples, "sensor_consumer_worker_restarts_total") >= 1
    port = int(pool_env["CONSUMER_METRICS_PORT"])
    until(lambda: metric(scrape(port), "sensor_consumer_workers_alive") == 2, 30, "two live workers again", pool)
    # the dead worker's counters survive it; a batch stored just before the kill counts as duplicate on replay
    assert 0 < metric(samples, "sensor_consumer_readings_total", result="stored") <= total


def test_sigterm_drains_commits_and_leaves_the_group(
    start_pool: PoolFactory, pool_env: dict[str, str], kafka_broker: str, topic: str
) -> None:
    sent = produce(kafka_broker, topic, encoded([reading(i, sensors=30) for i in range(6000)]))
    db = pool_env["SQLITE_PATH"]
    pool = start_pool("--workers", "2", CONSUMER_BATCH_SIZE="50")
    until(lambda: os.path.exists(db) and sqlite_count(db) >= 300, 60, "the first rows", pool)

    pool.signal(signal.SIGTERM)  # the supervisor only; it drains its workers
    assert pool.popen.wait(60) == 0, pool.log()[-3000:]
    assert pool.log().count("left the group") == 2

    group = pool_env["CONSUMER_GROUP"]
    offsets = committed(kafka_broker, group, topic)
    stored = {(r[0], r[1]) for r in sqlite_rows(db, "SELECT sensor_id, ts FROM readings")}
    # Everything below a committed offset is in the store (commit after write)...
    for record in sent:
        if record.offset < offsets[record.partition]:
            body = msgspec.json.decode(record.value)
            assert (body["sensor_id"], body["timestamp"]) in stored
    assert sum(max(o, 0) for o in offsets.values()) > 0
    assert str(group_state(kafka_broker, group)).endswith("EMPTY")

    # ...and a new run of the same group picks up the rest: all of it, once.
    again = start_pool("--workers", "1")
    until(lambda: sqlite_count(db) == len(sent), 90, "the rest after restart", again)


def test_worker_that_cannot_boot_stops_the_pool(start_pool: PoolFactory) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    pool = start_pool("--workers", "2", SINK="postgres", DATABASE_URL=unreachable, wait=False)
    assert pool.popen.wait(90) == WORKER_BOOT_ERROR
    log = pool.log()
    assert "failed to boot" in log
    assert log.count("booting worker") == 2  # no restart loop


def test_bad_configuration_exits_before_starting_workers(start_pool: PoolFactory) -> None:
    pool = start_pool(wait=False, ALERT_RULES="temperature>>40")
    assert pool.popen.wait(60) == 2
    assert "configuration error" in pool.log()
    assert "booting worker" not in pool.log()
