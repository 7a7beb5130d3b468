"""The read side against a real stack (API + pool + Kafka + SQLite): queries, pagination,
the alert lifecycle with acknowledgement, the SSE stream and its gap-free resume, /pipeline."""

from __future__ import annotations

import itertools
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

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
    """One stack per store: the same queries must answer the same from SQLite and PostgreSQL."""
    run_id = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("read")
    env = {"ALERT_RULES": "temperature>40", "CONSUMER_ECHO": "false"}
    with ExitStack() as started:
        if request.param == "postgres":
            url = started.enter_context(throwaway_database(request.getfixturevalue("database_url")))
            env.update(SINK="postgres", DATABASE_URL=url)
        yield started.enter_context(own_stack(run_id, workdir, kafka_broker, env))


def post(stack: Endpoints, body: object) -> None:
    path = "/sensor/batch" if isinstance(body, list) else "/sensor"
    resp = requests.post(stack.api_url + path, json=body, timeout=10)
    assert resp.status_code == 202, resp.text


def reading(sensor: str, second: int, value: float, type_: str = "temperature", minute: int = 0) -> dict:
    return {
        "sensor_id": sensor,
        "timestamp": f"2025-11-17T14:{minute:02d}:{second:02d}Z",
        "type": type_,
        "value": value,
        "unit": "C",
    }


def get(stack: Endpoints, path: str, status: int = 200, /, **params: str | int) -> dict:
    resp = requests.get(stack.api_url + path, params=params, timeout=10)
    assert resp.status_code == status, resp.text
    return resp.json()


def test_readings_aggregates_and_sensors_with_pagination(stack: Endpoints) -> None:
    sensor = f"q-{uuid.uuid4().hex[:6]}"
    batch = [reading(sensor, s, float(s), minute=m) for m in range(3) for s in range(0, 60, 10)]
    batch.append(reading(sensor, 5, 50.0, "humidity"))
    post(stack, batch)
    wait_until("stored", lambda: len(get(stack, f"/sensors/{sensor}/readings", limit=100)["items"]) == 19, 30)

    pages, cursor = [], None
    while True:
        body = get(stack, f"/sensors/{sensor}/readings", limit=7, **({"cursor": cursor} if cursor else {}))
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    items = [i for page in pages for i in page]
    assert [len(p) for p in pages] == [7, 7, 5]
    assert len({(i["type"], i["timestamp"]) for i in items}) == 19  # no repeats, no gaps
    assert [i["timestamp"] for i in items] == sorted((i["timestamp"] for i in items), reverse=True)
    assert items[0]["timestamp"] == "2025-11-17T14:02:50.000000Z"

    window = get(
        stack,
        f"/sensors/{sensor}/readings",
        type="temperature",
        **{"from": "2025-11-17T14:01:00Z", "to": "2025-11-17T15:01:30+01:00"},
    )
    assert {i["timestamp"][:16] for i in window["items"]} == {"2025-11-17T14:01"}
    assert [i["value"] for i in window["items"]] == [20.0, 10.0, 0.0]

    agg = get(
        stack,
        f"/sensors/{sensor}/aggregates",
        type="temperature",
        bucket="1m",
        **{"from": "2025-11-17T14:00:00Z", "to": "2025-11-17T15:00:00Z"},
    )
    assert [(a["start"], a["count"], a["min"], a["max"], a["avg"]) for a in agg["items"]] == [
        (f"2025-11-17T14:0{m}:00Z", 6, 0.0, 50.0, 25.0) for m in range(3)
    ]
    hourly = get(
        stack,
        f"/sensors/{sensor}/aggregates",
        bucket="1h",
        **{"from": "2025-11-17T00:00:00Z", "to": "2025-11-18T00:00:00Z"},
    )
    assert [(a["type"], a["start"], a["count"]) for a in hourly["items"]] == [
        ("humidity", "2025-11-17T14:00:00Z", 1),
        ("temperature", "2025-11-17T14:00:00Z", 18),
    ]
    first = get(
        stack,
        f"/sensors/{sensor}/aggregates",
        bucket="1m",
        limit=2,
        **{"from": "2025-11-17T14:00:00Z", "to": "2025-11-17T15:00:00Z"},
    )
    rest = get(
        stack,
        f"/sensors/{sensor}/aggregates",
        bucket="1m",
        cursor=first["next_cursor"],
        **{"from": "2025-11-17T14:00:00Z", "to": "2025-11-17T15:00:00Z"},
    )
    assert len(first["items"]) + len(rest["items"]) == 4 and rest["next_cursor"] is None

    sensors = get(stack, "/sensors", limit=1000)["items"]
    mine = next(s for s in sensors if s["sensor_id"] == sensor)
    assert mine["types"] == ["humidity", "temperature"]
    assert mine["latest"]["temperature"] == {
        "timestamp": "2025-11-17T14:02:50.000000Z",
        "value": 50.0,
        "unit": "C",
        "location": None,
    }


@pytest.mark.parametrize(
    ("path", "params", "needle"),
    [
        ("/sensors", {"limit": "0"}, "parameter limit"),
        ("/sensors", {"limit": "x"}, "parameter limit"),
        ("/sensors", {"cursor": "not-ours"}, "parameter cursor"),
        ("/sensors/s1/readings", {"from": "yesterday"}, "parameter from"),
        ("/sensors/s1/readings", {"to": "2025-11-17T14:00:00"}, "needs a zone"),
        ("/sensors/s1/aggregates", {"bucket": "2m"}, "parameter bucket"),
        ("/sensors/s1/aggregates", {"from": "2025-11-18T00:00:00Z", "to": "2025-11-17T00:00:00Z"}, "before to"),
        ("/alerts", {"state": "open"}, "parameter state"),
        ("/sensors/s1/aggregates", {"to": "0001-01-01T00:00:00Z"}, "before to"),  # the default from would underflow
        ("/sensors", {"silent_for": "5"}, "parameter silent_for"),
        ("/sensors", {"silent_for": "1y"}, "parameter silent_for"),
        ("/sensors", {"sort": "value"}, "parameter sort"),
        ("/sensors", {"q": "x" * 65}, "parameter q"),
        # an unknown parameter is named on every read endpoint, never silently ignored
        ("/sensors", {"search": "x"}, "parameter search"),
        ("/sensors/s1/readings", {"limt": "5"}, "parameter limt"),
        ("/sensors/s1/aggregates", {"sort": "x"}, "parameter sort"),
        ("/alerts", {"q": "x"}, "parameter q"),
        ("/pipeline", {"verbose": "1"}, "parameter verbose"),
        ("/stream", {"sensor": "s1"}, "parameter sensor"),
    ],
)
def test_bad_parameters_are_400_naming_them(stack: Endpoints, path: str, params: dict, needle: str) -> None:
    assert needle in get(stack, path, 400, **params)["error"]


def test_unknown_sensor_and_alert_are_404(stack: Endpoints) -> None:
    assert "no sensor" in get(stack, "/sensors/nobody-here/readings", 404)["error"]
    resp = requests.post(f"{stack.api_url}/alerts/nope/ack", timeout=10)
    assert resp.status_code == 404 and "no alert" in resp.json()["error"]


def test_an_alert_is_raised_acknowledged_and_cleared(stack: Endpoints) -> None:
    sensor = f"a-{uuid.uuid4().hex[:6]}"
    post(stack, reading(sensor, 0, 45.0))
    active = wait_until("raised", lambda: get(stack, "/alerts", sensor_id=sensor)["items"], 30)
    (alert,) = active
    assert (alert["state"], alert["rule"], alert["raised_value"], alert["acked_at"]) == (
        "active",
        "temperature>40",
        45.0,
        None,
    )

    acked = requests.post(f"{stack.api_url}/alerts/{alert['id']}/ack", timeout=10).json()
    assert acked["acked_at"] is not None
    again = requests.post(f"{stack.api_url}/alerts/{alert['id']}/ack", timeout=10).json()
    assert again["acked_at"] == acked["acked_at"]  # idempotent

    post(stack, reading(sensor, 1, 20.0))
    wait_until("cleared", lambda: not get(stack, "/alerts", sensor_id=sensor)["items"], 30)
    (cleared,) = get(stack, "/alerts", state="cleared", sensor_id=sensor)["items"]
    assert (cleared["id"], cleared["cleared_value"], cleared["acked_at"]) == (alert["id"], 20.0, acked["acked_at"])


class Listener:
    """An SSE client on a thread: collects (id, event, data) until stopped."""

    def __init__(self, url: str, last_event_id: str | None = None) -> None:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self.resp = requests.get(url, stream=True, timeout=30, headers=headers)
        assert self.resp.status_code == 200 and self.resp.headers["content-type"].startswith("text/event-stream")
        self.events: list[tuple[str, str, str]] = []
        # Set at the stream's first line (`retry:`), which the server sends once this client
        # is registered with the live tail: from then on, nothing produced is missed.
        self.subscribed = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        event: dict[str, str] = {}
        try:
            for line in self.resp.iter_lines(decode_unicode=True):
                self.subscribed.set()
                if line == "":
                    if "data" in event:
                        self.events.append((event.get("id", ""), event.get("event", "message"), event["data"]))
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    event[name] = value
        except (requests.RequestException, AttributeError, ValueError):
            return

    def close(self) -> None:
        """Hang up at once (a blocked read would otherwise wait for the next keep-alive)."""
        conn = self.resp.raw.connection
        if conn is not None and conn.sock is not None:
            conn.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.resp.close()


def test_the_stream_delivers_readings_and_alerts_live_and_resumes_without_gaps(stack: Endpoints) -> None:
    import msgspec

    sensor = f"st-{uuid.uuid4().hex[:6]}"
    first = Listener(f"{stack.api_url}/stream?sensor_id={sensor}")
    assert first.subscribed.wait(10), "the stream sent nothing"
    sent_at = time.monotonic()
    post(stack, [reading(sensor, s, 20.0 + s) for s in range(3)])
    wait_until("3 readings", lambda: len([e for e in first.events if e[1] == "reading"]) == 3, 10)
    assert time.monotonic() - sent_at < 2.0
    body = msgspec.json.decode(first.events[0][2])
    assert body["topic"] == stack.topic and body["reading"]["sensor_id"] == sensor and body["key"] == sensor
    assert msgspec.json.decode(body["record"])["value"] == body["reading"]["value"]
    assert metric(scrape(f"{stack.api_url}/metrics"), "sensor_api_stream_clients") == 1
    first.close()
    # the server notices the hang-up (its writes would be silent no-ops) and drops the client
    wait_until("dropped", lambda: metric(scrape(f"{stack.api_url}/metrics"), "sensor_api_stream_clients") == 0, 10)

    last_id = first.events[-1][0]
    post(stack, [reading(sensor, s, 50.0 + s) for s in range(3, 8)])  # while nobody listens: 5 readings, 1 alert
    post(stack, [reading(sensor, 9, 10.0)])  # clears it
    wait_until("stored", lambda: get(stack, "/alerts", state="cleared", sensor_id=sensor)["items"], 30)
    resumed = Listener(f"{stack.api_url}/stream?sensor_id={sensor}", last_event_id=last_id)
    wait_until("the gap", lambda: len([e for e in resumed.events if e[1] == "reading"]) >= 6, 15)
    wait_until("both alert changes", lambda: len([e for e in resumed.events if e[1] == "alert"]) >= 2, 30)
    resumed.close()
    values = [msgspec.json.decode(d)["reading"]["value"] for _, kind, d in resumed.events if kind == "reading"]
    assert values == [53.0, 54.0, 55.0, 56.0, 57.0, 10.0]  # exactly the gap, in order, nothing repeated
    states = [msgspec.json.decode(d)["state"] for _, kind, d in resumed.events if kind == "alert"]
    assert states == ["active", "cleared"]


def test_pipeline_health_reports_rates_latency_and_the_pool(stack: Endpoints) -> None:
    sent = iter(range(10_000))

    def both_rates() -> dict[str, Any] | None:
        # NOTE: the rates are taken between two /pipeline calls of the same API worker (each
        # keeps its own history): readings go on arriving until one call sees both rates.
        post(stack, [reading(f"h-{i}", i % 60, 1.0) for i in itertools.islice(sent, 5)])
        h = get(stack, "/pipeline")
        return h if h["stored_rate"] and h["ingest_rate"] else None

    health = wait_until("an ingest and a stored rate", both_rates, 30)
    assert health["pool_reachable"] is True and health["workers_alive"] == 2
    assert health["ingest_rate"] > 0 and health["dlq_total"] == 0
    # Everything posted is stored and committed: the lag reported drops to exactly 0.
    # NOTE: the last answer goes into the failure: `lag` None means the pool's /metrics did not
    # answer /pipeline within its 1 s, a number that a worker's gauge stayed above 0.
    seen: list[dict[str, object]] = []

    def lag_zero() -> bool:
        seen.append(get(stack, "/pipeline"))
        return seen[-1]["lag"] == 0

    try:
        wait_until("lag 0", lag_zero, 20)
    except TimeoutError as e:
        raise AssertionError(f"lag not 0 after 20 s; last /pipeline: {seen[-1] if seen else None}") from e


def test_no_store_is_a_clear_503(tmp_path: Path, kafka_broker: str) -> None:
    with own_stack(uuid.uuid4().hex[:8], tmp_path, kafka_broker, {"SINK": "console"}, with_pool=False) as s:
        resp = requests.get(f"{s.api_url}/sensors", timeout=10)
    assert resp.status_code == 503 and "SINK=console" in resp.json()["error"]


def test_fleet_queries_over_http(stack: Endpoints) -> None:
    """q, sort=last_seen and silent_for through the API (the store's tests cover each filter)."""
    tag = uuid.uuid4().hex[:8]
    quiet, loud = f"fleet-{tag}-quiet", f"fleet-{tag}-loud"
    post(stack, reading(quiet, 1, 1.0))
    wait_until("stored", lambda: get(stack, "/sensors", q=f"{tag}-quiet")["items"], 30)
    time.sleep(2.2)
    post(stack, reading(loud, 1, 1.0))
    wait_until("stored", lambda: len(get(stack, "/sensors", q=tag)["items"]) == 2, 30)
    newest = get(stack, "/sensors", q=tag.upper(), sort="last_seen", limit=1)
    assert [s["sensor_id"] for s in newest["items"]] == [loud] and newest["next_cursor"]
    rest = get(stack, "/sensors", q=tag, sort="last_seen", limit=1, cursor=newest["next_cursor"])
    assert [s["sensor_id"] for s in rest["items"]] == [quiet] and rest["next_cursor"] is None
    assert [s["sensor_id"] for s in get(stack, "/sensors", q=tag, silent_for="2s")["items"]] == [quiet]
    assert get(stack, "/sensors", q=tag, silent_for="1h")["items"] == []
    assert get(stack, "/sensors", q=tag, silent_for="999999999d")["items"] == []  # before the epoch
    assert rest["items"][0]["last_seen"] < newest["items"][0]["last_seen"]
