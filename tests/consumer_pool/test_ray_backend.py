"""CONSUMER_BACKEND=ray against the real broker and PostgreSQL, on a local Ray the pool starts:
two actors share the partitions, one actor's process SIGKILLed mid-stream comes back and
every reading is stored exactly once (aggregates too), dead letters and alerts still flow,
the pool's metrics keep their names, SIGTERM drains every actor and no Ray process is left;
an actor that cannot boot stops the pool."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer_pool.errors import WORKER_BOOT_ERROR
from harness.db import pg_count, pg_rows
from harness.kafka import group_assignment, group_state, produce, read_topic
from harness.poll import wait_until
from harness.process import Process, free_port
from harness.prometheus import metric, scrape, series
from harness.readings import encoded, reading
from tests.consumer_pool.conftest import PoolFactory
from tests.consumer_pool.test_supervisor import exactly_once_in_effects

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# NOTE: Ray is an optional extra (requirements-ray.txt); `make test` installs it.
RAY = {"CONSUMER_BACKEND": "ray", "RAY_ADDRESS": ""}


def actor_pids(log: str) -> dict[int, int]:
    """slot -> pid of the latest actor process in that slot (from the driver's log line)."""
    return {int(slot): int(pid) for slot, pid in re.findall(r"worker (\d+) runs in pid (\d+)", log)}


def ray_processes(temp_dir: str) -> list[int]:
    """Pids of the processes of the local Ray whose temp folder is `temp_dir` (ours only)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if temp_dir.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def ray_temp_dir(pool: Process) -> str:
    found = re.search(r"local Ray started \(temp dir (\S+)\)", pool.log())
    assert found, pool.log_tail()
    return found.group(1)


@pytest.fixture
def no_ray_left() -> Iterator[list[str]]:
    """Tests append their local Ray's temp folder; whatever of it still runs at the end is
    killed (by pid) so nothing outlives the test, and the test has already failed for it."""
    folders: list[str] = []
    yield folders
    for folder in folders:
        for pid in ray_processes(folder):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_ray_actor_killed_mid_stream_comes_back_and_every_reading_is_stored_once(
    start_pool: PoolFactory,
    pool_env: dict[str, str],
    kafka_broker: str,
    topic: str,
    pg_url: str,
    no_ray_left: list[str],
) -> None:
    total, bad = 6000, 3
    pool = start_pool(
        "--workers",
        "2",
        SINK="postgres",
        DATABASE_URL=pg_url,
        CONSUMER_BATCH_SIZE="200",
        CONSUMER_COMMIT_INTERVAL_MS="2000",  # a replay after the kill is then certain
        ALERT_RULES="temperature>1000",
        **RAY,
    )
    wait_until("the local Ray", lambda: "local Ray started" in pool.log(), 60, pool)
    no_ray_left.append(ray_temp_dir(pool))
    group = pool_env["CONSUMER_GROUP"]

    def split() -> bool:
        members = group_assignment(kafka_broker, group)
        return len(members) == 2 and all(members.values())

    wait_until("two actors sharing the partitions", split, 120, pool)
    members = list(group_assignment(kafka_broker, group).values())
    assert members[0].isdisjoint(members[1]) and members[0] | members[1] == set(range(6))

    hot = [reading(i, sensors=20, value=2000.0) for i in range(5)]  # 5 alerts
    produce(kafka_broker, topic, [(b"bad", b"not json")] * bad + encoded(hot))

    def stream() -> None:  # ~3 s of steady traffic, so the kill lands mid-stream
        for start in range(5, total, 200):
            batch = [reading(i, sensors=20) for i in range(start, min(start + 200, total))]
            produce(kafka_broker, topic, encoded(batch))
            time.sleep(0.1)

    producer = threading.Thread(target=stream)
    producer.start()
    try:
        wait_until("the first rows", lambda: pg_count(pg_url) >= 600, 60, pool)
        victim = actor_pids(pool.log())[0]
        os.kill(victim, signal.SIGKILL)
        wait_until("the actor to come back", lambda: actor_pids(pool.log()).get(0, victim) != victim, 90, pool)
    finally:
        producer.join()

    wait_until(f"{total} rows", lambda: pg_count(pg_url) >= total, 120, pool)
    assert f"worker 0 (pid {victim}) died" in pool.log()
    assert len(read_topic(kafka_broker, f"{topic}.dlq", bad)) == bad
    assert len(read_topic(kafka_broker, f"{topic}.alerts", len(hot))) >= len(hot)  # a replay may repeat one

    port = int(pool_env["CONSUMER_METRICS_PORT"])
    wait_until("two live actors again", lambda: metric(scrape(port), "sensor_consumer_workers_alive") == 2, 60, pool)
    wait_until("the counts", lambda: metric(scrape(port), "sensor_consumer_readings_total", result="dlq") == bad, 15)
    stored, replayed = exactly_once_in_effects(port, total, pool)
    assert replayed > 0, "no replay happened: the kill did not test exactly-once"
    assert stored <= total, f"{stored} readings counted as stored, {total} were produced"
    assert pg_count(pg_url) == total
    assert pg_rows(pg_url, "SELECT sum(count) FROM readings_1m")[0][0] == total  # aggregates: once each
    samples = scrape(port)
    assert metric(samples, "sensor_consumer_worker_restarts_total") == 1
    assert {labels["partition"] for labels, _ in series(samples, "sensor_consumer_lag")} == {str(p) for p in range(6)}
    assert metric(samples, "sensor_pipeline_e2e_latency_seconds_count") > 0
    assert metric(samples, "sensor_consumer_alerts_total", rule="temperature>1000") >= len(hot)

    pool.signal(signal.SIGTERM)  # the driver only; it drains its actors
    assert pool.popen.wait(90) == 0, pool.log_tail(3000)
    # NOTE: the driver's lines; the actors' own last lines may not be forwarded before Ray stops
    assert pool.log().count("stopped: committed and left the group") == 2
    wait_until("the group to be empty", lambda: str(group_state(kafka_broker, group)).endswith("EMPTY"), 15)
    wait_until("no Ray process left", lambda: not ray_processes(no_ray_left[0]), 30)
    assert not os.path.exists(no_ray_left[0])


def test_ray_actor_that_cannot_boot_stops_the_pool(start_pool: PoolFactory, no_ray_left: list[str]) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    pool = start_pool("--workers", "2", SINK="postgres", DATABASE_URL=unreachable, wait=False, **RAY)
    wait_until("the local Ray", lambda: "local Ray started" in pool.log(), 60, pool)
    no_ray_left.append(ray_temp_dir(pool))
    assert pool.popen.wait(120) == WORKER_BOOT_ERROR, pool.log_tail(3000)
    log = pool.log()
    assert "failed to boot" in log
    assert log.count("booting worker") == 2  # no restart loop
    wait_until("no Ray process left", lambda: not ray_processes(no_ray_left[0]), 30)


def test_unreachable_ray_address_stops_the_pool(start_pool: PoolFactory) -> None:
    pool = start_pool(wait=False, CONSUMER_BACKEND="ray", RAY_ADDRESS=f"127.0.0.1:{free_port()}")
    assert pool.popen.wait(60) == WORKER_BOOT_ERROR, pool.log_tail(3000)
    assert "cannot start or reach Ray" in pool.log()
    assert "booting worker" not in pool.log()
