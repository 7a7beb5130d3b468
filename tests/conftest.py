"""Shared fixtures: the real Kafka broker (and PostgreSQL), fresh topics, a running API.

`make test` starts the broker and PostgreSQL and exports TEST_KAFKA_BROKER and
TEST_DATABASE_URL; run alone, pytest starts them itself with the same scripts.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support import PYTHON, ROOT, Process, free_port, spawn, unique, wait_http


@pytest.fixture(scope="session")
def kafka_broker() -> str:
    broker = os.environ.get("TEST_KAFKA_BROKER")
    if not broker:
        subprocess.run([str(ROOT / "deploy/local/kafka.sh"), "start"], check=True)
        broker = "127.0.0.1:9092"
    return broker


@pytest.fixture(scope="session")
def database_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        script = str(ROOT / "deploy/local/postgres.sh")
        subprocess.run([script, "start"], check=True)
        url = subprocess.run([script, "url"], check=True, capture_output=True, text=True).stdout.strip()
    return url


@pytest.fixture
def pg_url(database_url: str) -> Iterator[str]:
    """A database of its own (dropped afterwards), so tests never see each other's rows."""
    name = unique("test_db").replace("-", "_")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = database_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def topic(kafka_broker: str) -> Iterator[str]:
    """A fresh readings topic (6 partitions) for one test; deleted afterwards."""
    name = unique("test-sensor")
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    for future in admin.create_topics([NewTopic(name, 6, 1)]).values():
        future.result(30)
    yield name
    admin.delete_topics([name, f"{name}.dlq", f"{name}.alerts"])


@pytest.fixture
def pipeline_env(kafka_broker: str, topic: str, tmp_path) -> dict[str, str]:
    """Environment for an API / pool process bound to this test's topic and ports."""
    return {
        "KAFKA_BROKER": kafka_broker,
        "TOPIC_NAME": topic,
        "DLQ_TOPIC": f"{topic}.dlq",
        "ALERTS_TOPIC": f"{topic}.alerts",
        "CONSUMER_GROUP": unique("test-group"),
        "API_HOST": "127.0.0.1",
        "API_PORT": str(free_port()),
        "CONSUMER_METRICS_PORT": str(free_port()),
        "SQLITE_PATH": str(tmp_path / "readings.db"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "api-metrics"),
        "API_WORKERS": "2",
        "API_THREADS": "8",
    }


ApiFactory = Callable[..., tuple[str, Process]]


@pytest.fixture
def start_api(pipeline_env: dict[str, str], tmp_path) -> Iterator[ApiFactory]:
    """Start `python -m service` (real gunicorn) with extra env; returns (base_url, proc)."""
    with ExitStack() as stack:

        def start(**extra: str) -> tuple[str, Process]:
            env = {**pipeline_env, **extra}
            proc = stack.enter_context(spawn([PYTHON, "-m", "service"], env, tmp_path / f"api-{env['API_PORT']}.log"))
            base = f"http://127.0.0.1:{env['API_PORT']}"
            wait_http(f"{base}/readyz", 60, proc=proc)
            return base, proc

        yield start


@pytest.fixture
def api(start_api: ApiFactory) -> str:
    base, _ = start_api()
    return base
