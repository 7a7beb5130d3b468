"""Webhook notifications from the real pool (`python -m consumer_pool`, real Kafka, both
stores) to a real receiver the test starts, stops and restarts: raises and an ack arrive
signed; while the receiver is down the events queue (pending in the store, the oldest-pending
age grows on /metrics) across a pool restart; once it is back every event arrives, each once
by its Idempotency-Key (the receiver dedupes; at least once allows repeats).

The outage lasts WEBHOOK_OUTAGE_S seconds (default 5, so CI stays quick) with the backoff
capped at WEBHOOK_BACKOFF_CAP_S (default 1); the issue's "down for 10 minutes" with the
shipped cap is `WEBHOOK_OUTAGE_S=600 WEBHOOK_BACKOFF_CAP_S=30`: the deliverer still retries
at least once a cap, so the events arrive within about one cap of the return (printed).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from harness.kafka import produce
from harness.poll import wait_until
from harness.prometheus import metric, scrape
from harness.webhooks import Receiver
from pipeline.webhooks import event_id
from store import open_reader
from tests.consumer_pool.conftest import PoolFactory

pytestmark = pytest.mark.timeout(300 + int(os.environ.get("WEBHOOK_OUTAGE_S", "5")))

SECRET = "pool-secret"
OUTAGE_S = float(os.environ.get("WEBHOOK_OUTAGE_S", "5"))
BACKOFF_CAP_S = float(os.environ.get("WEBHOOK_BACKOFF_CAP_S", "1"))


def reading(sensor: str, second: int, value: float) -> tuple[bytes, bytes]:
    body = {"sensor_id": sensor, "timestamp": f"2025-11-17T14:00:{second:02d}Z", "type": "temperature", "value": value}
    return sensor.encode(), msgspec.json.encode(body)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET).start()
    yield r
    r.stop()


@pytest.mark.parametrize("sink", ["sqlite", "postgres"])
def test_every_event_reaches_a_receiver_that_was_down_across_a_pool_restart(
    sink: str,
    start_pool: PoolFactory,
    pool_env: dict[str, str],
    kafka_broker: str,
    topic: str,
    receiver: Receiver,
    request: pytest.FixtureRequest,
) -> None:
    url = request.getfixturevalue("pg_url") if sink == "postgres" else ""
    env = {
        "SINK": sink,
        "DATABASE_URL": url,
        "ALERT_RULES": "temperature>40",
        "ALERT_WEBHOOK_URLS": receiver.url,
        "ALERT_WEBHOOK_SECRET": SECRET,
        "ALERT_WEBHOOK_BACKOFF_CAP_S": str(BACKOFF_CAP_S),
    }
    port = int(pool_env["CONSUMER_METRICS_PORT"])

    def alerts() -> dict[str, dict[str, Any]]:
        async def once() -> dict[str, dict[str, Any]]:
            reader = open_reader(sink, pool_env["SQLITE_PATH"], url)
            assert reader is not None
            try:
                return {a["sensor_id"]: a for a in (await reader.alerts("all", None, 100, None)).items}
            finally:
                await reader.close()

        return asyncio.run(once())

    def ack(alert_id: str) -> None:
        async def once() -> None:
            reader = open_reader(sink, pool_env["SQLITE_PATH"], url)
            assert reader is not None
            try:
                assert await reader.ack(alert_id) is not None
            finally:
                await reader.close()

        asyncio.run(once())

    pool = start_pool("--workers", "2", **env)
    produce(kafka_broker, topic, [reading(f"a{i}", 0, 41.0) for i in range(3)])
    wait_until("three raises delivered", lambda: len(receiver.events()) == 3, 60, pool)
    first = alerts()
    ack(first["a0"]["id"])  # what POST /alerts/{id}/ack does
    wait_until("the ack delivered", lambda: len(receiver.events()) == 4, 30, pool)

    receiver.stop()
    produce(kafka_broker, topic, [reading(f"a{i}", 1, 20.0) for i in range(3)])  # three clears
    produce(kafka_broker, topic, [reading(f"b{i}", 0, 50.0) for i in range(2)])  # two raises
    wait_until("five alerts stored", lambda: len(alerts()) == 5, 60, pool)
    wait_until(
        "the queued events retried",
        lambda: all((a["notifications"] or {}).get("last_error") for a in alerts().values() if a["sensor_id"] != "a0"),
        30,
        pool,
    )
    age = metric(scrape(port), "sensor_alert_webhook_oldest_pending_seconds")
    assert age is not None and age > 0
    assert pool.stop() == 0  # a pool restart in the middle of the outage

    pool = start_pool("--workers", "2", **env)
    time.sleep(OUTAGE_S)
    wait_until(
        "the age to grow",
        lambda: (metric(scrape(port), "sensor_alert_webhook_oldest_pending_seconds") or 0) > age,
        30,
        pool,
    )
    assert {a["notifications"]["state"] for s, a in alerts().items() if s != "a0"} == {"pending"}
    receiver.start()
    back = time.monotonic()

    now = alerts()
    expected = (
        {event_id(a["id"], "raised") for a in now.values()}
        | {event_id(now[f"a{i}"]["id"], "cleared") for i in range(3)}
        | {event_id(now["a0"]["id"], "acked")}
    )
    wait_until("every event delivered", lambda: set(receiver.events()) == expected, 10 + 3 * BACKOFF_CAP_S, pool)
    print(
        f"{sink}: receiver down {OUTAGE_S:g}+ s, every event delivered {time.monotonic() - back:.1f} s after its return"
    )
    assert all(p.signature_ok for p in receiver.posts)
    assert {p.key for p in receiver.posts} == expected  # repeats allowed, nothing else
    wait_until("all sent", lambda: {a["notifications"]["state"] for a in alerts().values()} == {"sent"}, 10, pool)
    wait_until(
        "no pending age", lambda: metric(scrape(port), "sensor_alert_webhook_oldest_pending_seconds") == 0, 10, pool
    )
    assert metric(scrape(port), "sensor_alert_webhook_failed_total", reason="connect") > 0
    assert pool.stop() == 0
