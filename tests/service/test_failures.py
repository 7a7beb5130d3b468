"""Failure behaviour with real processes: the broker stops and comes back, the API is
SIGTERMed mid-stream. Nothing answered 2xx may be missing from Kafka."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests

from harness.kafka import payload, read_topic
from harness.poll import wait_until
from harness.process import ROOT, free_port, unique
from harness.readings import SEED_READING
from tests.conftest import ApiFactory


@dataclass
class Broker:
    address: str
    run: Callable[[str], None]


@pytest.fixture
def private_broker(tmp_path) -> Iterator[Broker]:
    """A second real broker of our own, so this test can stop it without disturbing others."""
    env = {
        **os.environ,
        "RUN_DIR": str(tmp_path / "kafka-run"),
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_HEAP": "384m",
    }

    def run(command: str) -> None:
        subprocess.run([str(ROOT / "deploy/local/kafka.sh"), command], env=env, check=True)

    run("start")
    try:
        yield Broker(f"127.0.0.1:{env['KAFKA_PORT']}", run)
    finally:
        run("stop")


def reading(i: int, run_id: str) -> dict[str, object]:
    return {
        **SEED_READING,
        "sensor_id": f"{run_id}-{i % 13}",
        "value": float(i),
        "timestamp": f"2025-11-17T14:20:00.{i:06d}Z",
    }


def identity(record: dict[str, object]) -> tuple[object, object]:
    return record["sensor_id"], record["value"]


def test_broker_outage_gives_503_then_recovers_without_false_acknowledgements(
    start_api: ApiFactory, private_broker: Broker
) -> None:
    topic = unique("outage")
    base, _ = start_api(KAFKA_BROKER=private_broker.address, TOPIC_NAME=topic, ACK_TIMEOUT_MS="1500")
    run_id = unique("o")
    acknowledged: list[dict[str, object]] = []
    counter = iter(range(1_000_000))

    def send() -> requests.Response:
        r = reading(next(counter), run_id)
        resp = requests.post(f"{base}/sensor", json=r, timeout=30)
        if resp.status_code == 202:
            acknowledged.append(r)
        return resp

    assert all(send().status_code == 202 for _ in range(20))

    private_broker.run("stop")
    during = [send() for _ in range(5)]

    assert [r.status_code for r in during] == [503] * 5
    assert all(r.headers.get("Retry-After") and "acknowledge" in r.json()["error"] for r in during)
    assert requests.get(f"{base}/readyz", timeout=10).status_code == 503

    private_broker.run("start")
    wait_until("a 202 after the broker restart", lambda: send().status_code == 202, 90, interval=0.5)
    assert all(send().status_code == 202 for _ in range(20))

    # Readings answered 503 may still arrive (the producer retries them); every 202 must.
    records = read_topic(private_broker.address, topic, expected=len(acknowledged) + len(during), timeout=30)
    in_kafka = {identity(json.loads(payload(r))) for r in records}
    assert {identity(r) for r in acknowledged} <= in_kafka
    assert len(acknowledged) >= 41


@pytest.mark.parametrize("ack_mode", ["delivered", "enqueued"])
def test_sigterm_mid_stream_loses_nothing_that_was_answered_2xx(
    start_api: ApiFactory, kafka_broker: str, topic: str, ack_mode: str
) -> None:
    base, proc = start_api(ACK_MODE=ack_mode)
    run_id = unique("t")
    acknowledged: list[dict[str, object]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def stream(worker: int) -> None:
        session = requests.Session()
        i = worker
        while not stop.is_set():
            r = reading(i, run_id)
            i += 8
            try:
                resp = session.post(f"{base}/sensor", json=r, timeout=10)
            except requests.RequestException:
                session = requests.Session()
                time.sleep(0.01)
                continue
            if 200 <= resp.status_code < 300:
                with lock:
                    acknowledged.append(r)

    threads = [threading.Thread(target=stream, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    try:
        wait_until("300 acknowledged readings", lambda: len(acknowledged) > 300, 60)
        proc.signal(signal.SIGTERM)
        assert proc.popen.wait(60) == 0, proc.log()[-3000:]
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert "flushed its producer (0 undelivered)" in proc.log()
    records = read_topic(kafka_broker, topic, expected=len(acknowledged), timeout=30)
    in_kafka = {identity(json.loads(payload(r))) for r in records}
    missing = {identity(r) for r in acknowledged} - in_kafka
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged readings are not in Kafka"
