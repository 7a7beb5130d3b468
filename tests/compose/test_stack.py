"""The Docker Compose stack, checked as a user would: through the published host ports.

Run by `make compose-test` (deploy/docker/compose-test.sh), which brings the stack up with
`docker compose up -d --wait` and points COMPOSE_STACK_ENV at the env file it used (the host
ports and ALERT_RULES are read from it). Without it these tests are skipped: the normal pytest
run has no Docker engine. What this can and cannot verify: docs/docker.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from confluent_kafka import Consumer, TopicPartition
from dotenv import dotenv_values

from harness.npm import npm_ci
from harness.process import ROOT
from harness.readings import SEED_READING

ENV_FILE = os.environ.get("COMPOSE_STACK_ENV", "")
pytestmark = [
    pytest.mark.compose,
    pytest.mark.skipif(not ENV_FILE, reason="needs the compose stack: make compose-test"),
]

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return {k: v or "" for k, v in dotenv_values(ENV_FILE).items()}


@pytest.fixture(scope="module")
def api(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['API_PORT']}"


def eventually(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    """check()'s first truthy result; fails naming `what` and the last result or error."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except (requests.RequestException, psycopg.Error, KeyError, ValueError) as e:
            last = e
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout} s (last: {last!r})")


def get(url: str, **params: str) -> Any:
    resp = requests.get(url, params=params, timeout=10)
    assert resp.status_code == 200, f"GET {url}: {resp.status_code} {resp.text[:300]}"
    return resp.json()


@pytest.fixture(scope="module")
def seed_posted(api: str) -> float:
    """The seed's reading POSTed to the published API port; when (the clock) it was."""
    at = time.time()
    resp = requests.post(f"{api}/sensor", json=SEED_READING, timeout=15)
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "accepted"
    return at


def test_dashboard_shows_readings_health_and_an_alert(api: str) -> None:
    """web/dashboard-test.mjs (the browser test of tests/dashboard) against the compose API:
    readings in the table, chart and live view, the health cards (2 workers), an alert raised,
    acknowledged and cleared. The screenshots are kept in reports/compose/. First: the script
    expects the store to hold only its own sensors (a fresh stack)."""
    assert Path(CHROMIUM).exists(), "Chromium is needed (Debian: apt-get install chromium)"
    node = shutil.which("node")
    assert node, "Node.js is needed"
    npm_ci(ROOT / "web")
    shots = Path(os.environ.get("COMPOSE_REPORTS") or ROOT / "reports" / "compose").resolve()
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    result = subprocess.run(
        [node, "dashboard-test.mjs"],
        cwd=ROOT / "web",
        env={**os.environ, "DASHBOARD_URL": api, "SCREENSHOTS_DIR": str(shots), "CHROMIUM": CHROMIUM},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, f"the browser test failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    print(f"dashboard under compose, timings (ms): {result.stdout.strip().splitlines()[-1]}")
    assert (shots / "dashboard.png").stat().st_size > 10_000, "the screenshot looks empty"


def test_seed_reading_is_in_kafka(env: dict[str, str], seed_posted: float) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": f"localhost:{env['KAFKA_HOST_PORT']}",
            "group.id": f"compose-test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        topic = env["TOPIC_NAME"]
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assert len(partitions) == int(env["TOPIC_PARTITIONS"]), "kafka-init made the topic with TOPIC_PARTITIONS"
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        found = None
        deadline = time.monotonic() + 30
        while found is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() or msg.value() is None:
                continue
            value = json.loads(msg.value() or b"")
            if value.get("sensor_id") == "sensor01" and value.get("value") == SEED_READING["value"]:
                found = value
        assert found, f"the seed reading is not in {topic}"
        assert found["timestamp"].startswith("2025-11-17T14:20:00")
    finally:
        consumer.close()


def test_seed_reading_is_in_the_compose_postgresql(env: dict[str, str], seed_posted: float) -> None:
    if env.get("SINK") == "sqlite":
        pytest.skip("SINK=sqlite: the store is the shared volume's file, read through the API below")
    url = (
        f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@127.0.0.1:{env['POSTGRES_HOST_PORT']}"
        f"/{env['POSTGRES_DB']}"
    )

    def stored() -> Any:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute(
                "SELECT value, unit, location FROM readings WHERE sensor_id = 'sensor01' AND type = 'temperature'"
                " AND ts = '2025-11-17T14:20:00Z'"
            ).fetchone()

    assert eventually("the seed reading in PostgreSQL", stored) == (25.3, "C", "lab")


def test_read_api_answers_with_the_seed_reading(api: str, seed_posted: float) -> None:
    def listed() -> Any:
        sensors = {s["sensor_id"]: s for s in get(f"{api}/sensors", limit="1000")["items"]}
        return sensors.get("sensor01")

    sensor = eventually("sensor01 in GET /sensors", listed)
    assert sensor["latest"]["temperature"]["value"] == 25.3
    readings = get(f"{api}/sensors/sensor01/readings", **{"from": "2025-11-17T00:00:00Z", "to": "2025-11-18T00:00:00Z"})
    assert any(r["value"] == 25.3 and r["timestamp"].startswith("2025-11-17T14:20:00") for r in readings["items"])
    get(f"{api}/alerts")  # 200: the store is there (it was 503 before the api service had it)


def test_pipeline_health_reaches_the_pool(api: str, env: dict[str, str], seed_posted: float) -> None:
    def health() -> Any:
        body = get(f"{api}/pipeline")
        return body if body["pool_reachable"] and body["workers_alive"] is not None else None

    body = eventually("GET /pipeline with the pool reachable", health)
    assert body["workers_alive"] == int(env["CONSUMER_WORKERS"])


def test_alert_rule_from_the_env_file_raises_an_alert(api: str, env: dict[str, str]) -> None:
    rule = "compose-*:temperature>40"
    assert rule in env["ALERT_RULES"].split(","), "the env file the stack was started with sets the rule"
    sensor = f"compose-hot-{uuid.uuid4().hex[:6]}"
    hot = {**SEED_READING, "sensor_id": sensor, "value": 45.0, "timestamp": _now()}
    assert requests.post(f"{api}/sensor", json=hot, timeout=15).status_code == 202

    def raised() -> Any:
        return [a for a in get(f"{api}/alerts", sensor_id=sensor)["items"] if a["sensor_id"] == sensor]

    alerts = eventually(f"an active alert for {sensor} in GET /alerts", raised)
    assert alerts[0]["type"] == "temperature" and alerts[0]["rule"] == rule


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@pytest.fixture
def stream(api: str) -> Iterator[requests.Response]:
    with requests.get(f"{api}/stream", stream=True, timeout=(5, 30)) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        yield resp


def test_stream_delivers_a_live_reading(api: str, stream: requests.Response) -> None:
    sensor = f"compose-live-{uuid.uuid4().hex[:6]}"
    time.sleep(1)  # the stream starts at the end of the topics: POST after it is open
    live = {**SEED_READING, "sensor_id": sensor, "timestamp": _now()}
    assert requests.post(f"{api}/sensor", json=live, timeout=15).status_code == 202
    deadline = time.monotonic() + 20
    for line in stream.iter_lines(decode_unicode=True):
        if line and line.startswith("data:") and sensor in line:
            assert json.loads(line[5:])["reading"]["sensor_id"] == sensor
            return
        assert time.monotonic() < deadline, "no live reading on /stream within 20 s"
    pytest.fail("/stream ended without the reading")


def test_prometheus_scrapes_api_and_pool(env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{env['PROMETHEUS_PORT']}/api/v1/query"

    def up() -> Any:
        result = requests.get(url, params={"query": "up"}, timeout=10).json()["data"]["result"]
        jobs = {r["metric"]["job"]: r["value"][1] for r in result}
        return jobs if jobs.get("sensor-api") == "1" and jobs.get("sensor-consumer-pool") == "1" else None

    eventually("Prometheus up == 1 for sensor-api and sensor-consumer-pool", up, 60)
