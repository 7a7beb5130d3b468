"""GET /sensors/{id}/completeness through the real API, Kafka, pool and store (SQLite and
PostgreSQL): a device that skipped seq 5-9 shows that gap, a resent seq is a duplicate, a
replayed request is not, and the pool's sensor_readings_missing gauge sums the gaps."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import requests

from harness.db import throwaway_database
from harness.poll import wait_until
from harness.prometheus import metric, scrape
from harness.stack import Endpoints, own_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, kafka_broker: str
) -> Iterator[Endpoints]:
    run_id = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("completeness")
    env = {"CONSUMER_ECHO": "false"}
    with ExitStack() as started:
        if request.param == "postgres":
            url = started.enter_context(throwaway_database(request.getfixturevalue("database_url")))
            env.update(SINK="postgres", DATABASE_URL=url)
        yield started.enter_context(own_stack(run_id, workdir, kafka_broker, env))


def numbered(sensor: str, seq: int, second: int | None = None, type_: str = "temperature") -> dict:
    second = seq if second is None else second
    return {
        "sensor_id": sensor,
        "timestamp": f"2025-11-17T14:{second // 60:02d}:{second % 60:02d}Z",
        "type": type_,
        "value": 20.0,
        "seq": seq,
    }


def post(stack: Endpoints, body: object) -> None:
    resp = requests.post(f"{stack.api_url}/sensor/batch", json=body, timeout=10)
    assert resp.status_code == 202, resp.text


def completeness(stack: Endpoints, sensor: str, status: int = 200, /, **params: str) -> dict:
    resp = requests.get(f"{stack.api_url}/sensors/{sensor}/completeness", params=params, timeout=10)
    assert resp.status_code == status, resp.text
    return resp.json()


def received(stack: Endpoints, sensor: str) -> int | None:
    """The ledger's count, None while the sensor is not stored yet (404)."""
    resp = requests.get(f"{stack.api_url}/sensors/{sensor}/completeness", params={"type": "temperature"}, timeout=10)
    return resp.json()["received"] if resp.status_code == 200 else None


def test_a_device_that_skipped_5_to_9_shows_that_gap(stack: Endpoints) -> None:
    sensor = f"c-{uuid.uuid4().hex[:6]}"
    post(stack, [numbered(sensor, n) for n in (1, 2, 3, 4, 10, 11, 12)])
    wait_until("the ledger", lambda: received(stack, sensor) == 7, 30)
    assert completeness(stack, sensor, type="temperature") == {
        "sensor_id": sensor,
        "type": "temperature",
        "received": 7,
        "missing": [[5, 9]],
        "missing_count": 5,
        "first_seq": 1,
        "last_seq": 12,
        "duplicates": 0,
    }
    # the gauge sums every sensor's gaps per type (other tests of this module add none of theirs first)
    wait_until(
        "sensor_readings_missing",
        lambda: metric(scrape(stack.pool_metrics_url), "sensor_readings_missing", type="temperature") >= 5,
        30,
    )

    post(stack, [numbered(sensor, n) for n in (1, 2, 3, 4, 10, 11, 12)])  # a client retry: a replay
    post(stack, [numbered(sensor, 3, second=40), *(numbered(sensor, n) for n in (5, 6, 7, 8, 9))])
    wait_until("the gap filled", lambda: completeness(stack, sensor, type="temperature")["missing"] == [], 30)
    got = completeness(stack, sensor, type="temperature")
    assert (got["received"], got["missing_count"], got["last_seq"], got["duplicates"]) == (12, 0, 12, 1)
    # a type that never sent a seq has an empty ledger
    assert completeness(stack, sensor, type="humidity")["last_seq"] is None


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({}, "parameter type"),
        ({"type": ""}, "parameter type"),
        ({"type": "t", "colour": "red"}, "parameter colour"),
        ({"type": "x" * 33}, "parameter type"),
    ],
)
def test_bad_parameters_are_400_naming_them(stack: Endpoints, params: dict, needle: str) -> None:
    assert needle in completeness(stack, "s1", 400, **params)["error"]


def test_an_unknown_sensor_is_404(stack: Endpoints) -> None:
    assert "no sensor" in completeness(stack, "nobody-here", 404, type="temperature")["error"]
