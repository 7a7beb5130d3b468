"""The local runtime scripts: `make up` / `make down` without Docker, and kafka.sh's
idempotent start, exact stop and clear errors."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from harness.kafka import read_at
from harness.poll import wait_until
from harness.process import ROOT, free_port, unique
from harness.readings import SEED_READING

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
