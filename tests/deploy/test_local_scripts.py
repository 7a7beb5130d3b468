"""The local runtime scripts: `make up` / `make down` without Docker, and kafka.sh's
idempotent start, exact stop and clear errors."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import pytest
import requests
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from harness.kafka import read_at
from harness.poll import wait_until
from harness.process import ROOT, free_port, unique
from harness.readings import SEED_READING
from pipeline.settings import KafkaSettings
from pipeline.topics import ensure_topics

pytestmark = pytest.mark.integration  # real processes (see tests/conftest.py)

KAFKA = str(ROOT / "deploy/local/kafka.sh")
STACK = str(ROOT / "deploy/local/stack.sh")


def run(cmd: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def private_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RUN_DIR": str(tmp_path / "run"),
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_HEAP": "384m",
    }


def test_make_up_serves_the_seed_reading_end_to_end_and_make_down_stops_it(tmp_path: Path) -> None:
    env = private_env(tmp_path)
    topic = unique("up")
    env.update(
        KAFKA_BROKER=f"127.0.0.1:{env['KAFKA_PORT']}",
        TOPIC_NAME=topic,
        DLQ_TOPIC=f"{topic}.dlq",
        ALERTS_TOPIC=f"{topic}.alerts",
        API_PORT=str(free_port()),
        CONSUMER_METRICS_PORT=str(free_port()),
        SQLITE_PATH=str(tmp_path / "readings.db"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "api-metrics"),
    )
    run_dir = Path(env["RUN_DIR"])
    pids: dict[str, int] = {}
    try:
        up = run([STACK, "up"], env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{env['API_PORT']}" in up.stdout and "make down" in up.stdout
        pids = {name: int((run_dir / f"{name}.pid").read_text()) for name in ("kafka", "api", "consumer-pool")}

        again = run([STACK, "up"], env)
        assert again.returncode == 0 and "already running" in again.stdout
        assert {name: int((run_dir / f"{name}.pid").read_text()) for name in pids} == pids

        resp = requests.post(f"http://127.0.0.1:{env['API_PORT']}/sensor", json=SEED_READING, timeout=10)
        assert resp.status_code == 202, resp.text
        record = read_at(env["KAFKA_BROKER"], topic, resp.json()["partition"], resp.json()["offset"])
        assert record.key() == b"sensor01"
        pool_log = run_dir / "logs" / "consumer-pool.log"
        wait_until("the consumer's echo", lambda: "Message received: " in pool_log.read_text(), 30)
        log = pool_log.read_text()
        assert f"Listening to topic: {topic}" in log
        assert '"sensor_id":"sensor01"' in log.split("Message received: ", 1)[1]
    finally:
        down = run([STACK, "down"], env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(alive(pid) for pid in pids.values()), pids
    assert run([STACK, "down"], env).stdout.strip().endswith("nothing started by make up")


def test_kafka_start_is_idempotent_and_stop_ends_only_its_own_broker(tmp_path: Path, kafka_broker: str) -> None:
    env = private_env(tmp_path)
    pidfile = Path(env["RUN_DIR"]) / "kafka.pid"
    try:
        assert run([KAFKA, "start"], env).returncode == 0
        pid = int(pidfile.read_text())
        second = run([KAFKA, "start"], env)
        assert second.returncode == 0 and "already running" in second.stdout
        assert int(pidfile.read_text()) == pid
    finally:
        stop = run([KAFKA, "stop"], env)
    assert stop.returncode == 0
    assert not alive(pid) and not pidfile.exists()
    # The shared broker the other tests use is still there.
    assert run([KAFKA, "status"], {**os.environ}).returncode == 0
    assert run([KAFKA, "stop"], env).stdout.strip().endswith("not running")


def test_kafka_script_says_what_is_missing_without_java(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sed", "dirname"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip())
    env = {**private_env(tmp_path), "PATH": str(bin_dir)}

    result = run([str(bin_dir / "bash"), KAFKA, "start"], env)

    assert result.returncode != 0
    assert "Java 17+ is needed" in result.stderr


def test_three_nodes_replicate_every_topic_and_stop_stops_all_three(tmp_path: Path) -> None:
    """KAFKA_NODES=3: three brokers+controllers; the pipeline's topics (ensure_topics) and
    Kafka's own offsets topic get replication factor 3 and min.insync.replicas=2; a plain
    `kafka.sh stop` (as `make down` runs it) stops all three."""
    env = {**private_env(tmp_path), "KAFKA_NODES": "3"}
    run_dir = Path(env["RUN_DIR"])
    try:
        started = run([KAFKA, "start"], env)
        assert started.returncode == 0, started.stderr
        bootstrap = run([KAFKA, "bootstrap"], env).stdout.strip()
        assert len(bootstrap.split(",")) == 3
        pids = [int((run_dir / f"kafka-{n}.pid").read_text()) for n in (1, 2, 3)]
        kafka = KafkaSettings(kafka_broker=bootstrap, topic_name=unique("rf"))
        ensure_topics(kafka, timeout=30)
        # A committed offset makes Kafka create __consumer_offsets.
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("rf")})
        # NOTE: the new offsets topic's coordinator answers COORDINATOR_LOAD_IN_PROGRESS (a
        # retriable error) while it loads; retried here as the pool's own commits are.
        wait_until("a committed offset", lambda: committed_once(consumer, kafka.topic_name), 60)
        consumer.close()
        client = AdminClient({"bootstrap.servers": bootstrap})

        def replicated(topic: str) -> bool:
            parts = client.list_topics(topic, timeout=10).topics[topic].partitions.values()
            return bool(parts) and all(len(p.replicas) == 3 and len(p.isrs) == 3 for p in parts)

        for topic in (kafka.topic_name, kafka.dlq_topic, kafka.alerts_topic, "__consumer_offsets"):
            wait_until(f"{topic} on three replicas", functools.partial(replicated, topic), 30)
        resource = ConfigResource("topic", kafka.topic_name)
        config = client.describe_configs([resource])[resource].result(30)
        assert config["min.insync.replicas"].value == "2"
    finally:
        stop = run([KAFKA, "stop"], {**env, "KAFKA_NODES": "1"})
    assert stop.returncode == 0
    assert not any(alive(pid) for pid in pids)
    assert not list(run_dir.glob("kafka*.pid"))


def committed_once(consumer: Consumer, topic: str) -> bool:
    """One synchronous commit; False on a retriable error (the coordinator still loading)."""
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    except KafkaException as e:
        if e.args[0].retriable():
            return False
        raise
    return True
