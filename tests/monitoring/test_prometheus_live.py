"""A real Prometheus scrapes the running API and consumer pool; every PromQL expression of
the Grafana dashboard and of the alert rules must return data, so no panel or alert rests
on a metric that does not exist. The dashboard's SQL panel runs against the pool's store.

What runs: Kafka (shared broker), two APIs (`python -m service`: one on the test topic, one
on a topic that rejects every record, for real delivery errors and 503s), the pool
(`python -m consumer_pool`, SINK=postgres), Debian's prometheus with our config and rules.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from confluent_kafka import Producer

from harness.poll import wait_until
from harness.process import free_port
from tests.monitoring.conftest import PrometheusFactory
from tests.monitoring.files import (
    alert_rules,
    dashboard,
    metric_parts,
    prometheus_targets,
    sql_targets,
    substitute_variables,
)

pytestmark = pytest.mark.integration  # real processes (see tests/conftest.py)

JSON = {"Content-Type": "application/json"}


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """Instant query through Prometheus's HTTP API; the result vector."""
    body = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def reading(sensor: str, second: int, value: float, type_: str = "temperature") -> dict[str, Any]:
    ts = datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc) + timedelta(seconds=second)
    return {
        "sensor_id": sensor,
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
        "type": type_,
        "value": value,
        "unit": "C",
        "location": "lab",
    }


@contextmanager
def traffic(api: str, failing_api: str) -> Iterator[dict[str, int]]:
    """Background load until the block ends: valid readings and batches, invalid readings
    (422), and now and then one to the API whose topic rejects everything (503)."""
    stop = threading.Event()
    counts = {"202": 0, "422": 0, "503": 0, "other": 0}
    session = requests.Session()

    def post(url: str, body: Any) -> None:
        try:
            status = session.post(url, json=body, headers=JSON, timeout=30).status_code
        except requests.RequestException:
            status = -1
        key = str(status) if str(status) in counts else "other"
        counts[key] += 1

    def run() -> None:
        for i in itertools.count():
            if stop.wait(0.03):
                return
            post(f"{api}/sensor", reading(f"mon-bg-{i % 4}", i, float(i % 40)))
            if i % 10 == 0:
                post(f"{api}/sensor", {**reading("mon-bg-bad", i, 1.0), "unexpected": True})
            if i % 15 == 0:
                post(f"{api}/sensor/batch", [reading(f"mon-batch-{k}", i, float(k)) for k in range(5)])
            if i % 40 == 0:
                post(f"{failing_api}/sensor", reading("mon-rejected", i, 1.0))

    thread = threading.Thread(target=run, name="traffic", daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        stop.set()
        thread.join(60)


def returns_data(prometheus: str, expr: str) -> list[dict[str, Any]] | None:
    """The result when it is non-empty (and, for a quantile, has a finite value), else None."""
    result = query(prometheus, expr)
    if not result:
        return None
    if expr.startswith("histogram_quantile") and not any(math.isfinite(float(r["value"][1])) for r in result):
        return None
    return result


def test_dashboard_and_alert_expressions_return_data(
    start_api: Callable[..., tuple[str, Any]],
    start_pool: Callable[[], str],
    start_prometheus: PrometheusFactory,
    rejecting_topic: str,
    pipeline_env: dict[str, str],
    pg_url: str,
    tmp_path: Path,
) -> None:
    api, _ = start_api()
    failing_port = free_port()
    failing_api, _ = start_api(
        TOPIC_NAME=rejecting_topic,
        API_PORT=str(failing_port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "failing-api-metrics"),
    )
    pool_metrics = start_pool()
    prometheus = start_prometheus(
        {
            "sensor-api": [api.removeprefix("http://"), failing_api.removeprefix("http://")],
            "sensor-consumer-pool": [pool_metrics.removeprefix("http://").removesuffix("/metrics")],
        }
    )

    # The readings whose latest values the SQL panel must show.
    latest = {("mon-latest-1", "temperature"): 21.5, ("mon-latest-2", "humidity"): 40.25}
    for (sensor, type_), value in latest.items():
        for second, v in enumerate([value - 2, value - 1, value]):
            response = requests.post(f"{api}/sensor", json=reading(sensor, second, v, type_), headers=JSON, timeout=30)
            assert response.status_code == 202, response.text
    # An undecodable record straight into the topic: the pool moves it to the DLQ.
    producer = Producer({"bootstrap.servers": pipeline_env["KAFKA_BROKER"]})

    def produce_garbage() -> None:
        producer.produce(pipeline_env["TOPIC_NAME"], key=b"mon-garbage", value=b"{not json")
        assert producer.flush(30) == 0

    produce_garbage()

    with traffic(api, failing_api) as counts:
        wait_until(
            "Prometheus scraping both APIs and the pool",
            lambda: len(query(prometheus, 'up{job=~"sensor-.*"} == 1')) == 3,
            60,
        )
        for expr in (
            'sum(sensor_consumer_readings_total{result="stored"}) > 0',
            'sum(sensor_consumer_readings_total{result="dlq"}) > 0',
            "sum(sensor_kafka_delivery_errors_total) > 0",
            'sum(sensor_api_requests_total{status="503"}) > 0',
        ):
            wait_until(f"{expr} in Prometheus", functools.partial(query, prometheus, expr), 90)
        # NOTE: a labelled counter appears at its first event, already at 1, and increase()
        # sees no increase in a series' first sample; a second dead letter after the first
        # was scraped is what makes the DLQ alert's increase() positive.
        produce_garbage()
        wait_until(
            "the second dead letter in Prometheus",
            lambda: query(prometheus, 'sum(sensor_consumer_readings_total{result="dlq"}) >= 2'),
            60,
        )

        expressions = [
            (f"panel {title!r}", substitute_variables(expr)) for title, expr in prometheus_targets(dashboard())
        ]
        expressions += [
            (f"alert {rule['alert']}", part) for rule in alert_rules() for part in metric_parts(rule["expr"])
        ]
        empty: list[str] = []
        deadline = time.monotonic() + 90  # range functions need a few scrapes; subqueries up to 30 s
        for where, expr in expressions:
            while not returns_data(prometheus, expr) and time.monotonic() < deadline:
                time.sleep(1)
            if not returns_data(prometheus, expr):
                empty.append(f"{where}: {expr}")
    assert counts["202"] > 20 and counts["422"] > 0 and counts["503"] > 0, counts
    assert not empty, "expressions without data:\n" + "\n".join(empty)

    # Prometheus evaluated every rule without error; the ones the traffic triggers are active.
    groups = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {rule["alert"] for rule in alert_rules()}
    for name, rule in rules.items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
    assert rules["ScrapeTargetDown"]["state"] == "inactive"
    assert rules["KafkaDeliveryErrors"]["state"] in {"pending", "firing"}  # `for: 1m`
    alerts = requests.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
    assert "ReadingsDeadLettered" in firing, alerts

    # The SQL panel on the pool's own database: the latest value of each (sensor, type).
    ((title, sql),) = sql_targets(dashboard())

    def rows() -> dict[tuple[str, str], dict[str, Any]]:
        with psycopg.connect(pg_url) as conn:
            cursor = conn.execute(sql)
            assert cursor.description is not None
            names = [c.name for c in cursor.description]
            found = {(r[0], r[1]): dict(zip(names, r, strict=True)) for r in cursor.fetchall()}
        return found if all(k in found and found[k]["value"] == v for k, v in latest.items()) else {}

    found = wait_until(f"{title}: the latest values", rows, 60)
    for key in latest:
        row = found[key]
        assert row["reading time"] == datetime(2025, 11, 17, 14, 0, 2, tzinfo=timezone.utc)
        assert row["unit"] == "C" and row["location"] == "lab"
        assert 0 <= float(row["e2e ms"]) < 60_000
