"""Shared fixtures: the real Kafka broker (and PostgreSQL), fresh topics, a running API.

`make test` starts the broker and PostgreSQL and exports TEST_KAFKA_BROKER and
TEST_DATABASE_URL; run alone, pytest starts them itself with the same scripts.

Two tiers: a test that uses one of these real components is marked `integration` here,
by the fixtures it asks for (a module that starts processes by other means marks itself);
`pytest -m "not integration"` runs the fast in-process tier alone.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from harness.db import throwaway_database
from harness.isolation import Isolation
from harness.poll import wait_http
from harness.process import PYTHON, ROOT, Process, spawn

INTEGRATION_FIXTURES = frozenset({"kafka_broker", "database_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


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
    with throwaway_database(database_url) as url:
        yield url


@pytest.fixture
def isolation(kafka_broker: str, tmp_path) -> Iterator[Isolation]:
    """This test's own readings topic (6 partitions, created; deleted afterwards), group and ports."""
    iso = Isolation.fresh(kafka_broker, "test-sensor", sqlite_path=str(tmp_path / "readings.db")).create()
    yield iso
    iso.delete()


@pytest.fixture
def topic(isolation: Isolation) -> str:
    """A fresh readings topic (6 partitions) for one test; deleted afterwards."""
    return isolation.topic


@pytest.fixture
def pipeline_env(isolation: Isolation, tmp_path) -> dict[str, str]:
    """Environment for an API / pool process bound to this test's topic and ports."""
    return {
        **isolation.env(),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "api-metrics"),
        "API_WORKERS": "2",
        "API_THREADS": "8",
    }


ApiFactory = Callable[..., tuple[str, Process]]


@pytest.fixture
def start_api(pipeline_env: dict[str, str], tmp_path) -> Iterator[ApiFactory]:
    """Start `python -m service` (real gunicorn) with extra env; returns (base_url, proc)."""
    with ExitStack() as stack:

        def start(
            _ready: str = "/readyz", _scheme: str = "http", _verify: str | bool = True, **extra: str
        ) -> tuple[str, Process]:
            """`_ready`: the path to wait for (/healthz when no broker is meant to answer);
            `_scheme`/`_verify`: https and the CA file, for an API with API_TLS_CERT."""
            env = {**pipeline_env, **extra}
            proc = stack.enter_context(spawn([PYTHON, "-m", "service"], env, tmp_path / f"api-{env['API_PORT']}.log"))
            base = f"{_scheme}://127.0.0.1:{env['API_PORT']}"
            wait_http(f"{base}{_ready}", 60, proc=proc, verify=_verify)
            return base, proc

        yield start


@pytest.fixture
def api(start_api: ApiFactory) -> str:
    base, _ = start_api()
    return base
