"""Webhook notifications through the store's outbox, against a real HTTP receiver on loopback
(harness/webhooks.py) and real stores: signed raise, clear and ack events with their
Idempotency-Key; a receiver that is down queues them (pending, the oldest-pending age grows)
and gets every one after it comes back, even across a deliverer restart; refusals and give-ups
end as failed; the read API shows each alert's delivery state.

The deliverer is driven step by step here; tests/consumer_pool/test_webhooks_pool.py runs it
inside the real pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from consumer_pool import metrics
from consumer_pool.notifier import Notifier
from harness.webhooks import Receiver
from pipeline.alerts import parse_rules
from pipeline.reading import Reading
from pipeline.record import Record
from pipeline.webhooks import event_id
from store import open_reader, open_writer

SECRET = "s3cret"
T0 = datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc)


def at(seconds: int, value: float, sensor: str = "s1") -> Record:
    return Record.of(Reading(sensor, T0 + timedelta(seconds=seconds), "temperature", value), 0)


class Store:
    """A writer with the rules and one webhook URL, a deliverer, and the read side."""

    def __init__(self, kind: str, path: str, url: str, hook: str) -> None:
        self.kind, self.path, self.url, self.hook = kind, path, url, hook
        self.writer = open_writer(kind, path, url, parse_rules("temperature>40"), webhooks=(hook,))
        self.writer.setup()
        self.notifier = self.new_notifier()

    def new_notifier(self, **kwargs: Any) -> Notifier:
        """A deliverer with its own connection (what a restarted worker 0 gets)."""
        store = open_writer(self.kind, self.path, self.url)
        store.setup()
        return Notifier(store, SECRET, timeout_s=2.0, backoff_cap_s=0.3, **kwargs)

    def ask(self, query: Callable[[Any], Any]) -> Any:
        async def once() -> Any:
            reader = open_reader(self.kind, self.path, self.url)
            assert reader is not None
            try:
                return await query(reader)
            finally:
                await reader.close()

        return asyncio.run(once())

    def notifications(self) -> dict[str, Any]:
        return {a["id"]: a["notifications"] for a in self.ask(lambda r: r.alerts("all", None, 100, None)).items}

    def deliver_until(
        self, done: Callable[[], bool], timeout_s: float = 20.0, notifier: Notifier | None = None
    ) -> None:
        notifier = notifier or self.notifier
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, "not delivered in time"
            if not notifier.step():
                time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET).start()
    yield r
    r.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path, receiver: Receiver) -> Iterator[Store]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    s = Store(request.param, str(tmp_path / "r.db"), url, receiver.url)
    yield s
    s.writer.close()
    s.notifier.store.close()


def test_raise_clear_and_ack_are_signed_and_keyed_by_their_event(store: Store, receiver: Receiver) -> None:
    (raised,) = store.writer.write([at(0, 41.0)]).alerts
    store.writer.write([at(1, 20.0)])  # clears it
    store.writer.write([at(0, 41.0), at(1, 20.0)])  # a replay: no new events
    acked = store.ask(lambda r: r.ack(raised.id))
    assert acked["acked_at"] is not None
    store.ask(lambda r: r.ack(raised.id))  # a second ack notifies no one

    expected = {event_id(raised.id, e): e for e in ("raised", "cleared", "acked")}
    store.deliver_until(lambda: set(receiver.events()) == set(expected))
    for key, got in receiver.events().items():
        assert got.signature_ok, got
        assert got.body["event"] == expected[key] and got.body["id"] == key
        assert got.body["alert"]["id"] == raised.id and got.body["alert"]["rule"] == "temperature>40"
    by_event = {got.body["event"]: got.body["alert"] for got in receiver.events().values()}
    assert by_event["raised"]["state"] == "active" and by_event["cleared"]["cleared_value"] == 20.0
    assert by_event["acked"]["acked_at"] == acked["acked_at"]
    assert len(receiver.posts) == 3
    assert store.notifications()[raised.id] == {
        "state": "sent",
        "deliveries": 3,
        "pending": 0,
        "attempts": 3,
        "last_error": None,
    }


def test_events_queue_while_the_receiver_is_down_and_all_arrive_after_a_deliverer_restart(
    store: Store, receiver: Receiver
) -> None:
    receiver.stop()
    raised = [e.id for e in store.writer.write([at(0, 41.0, f"s{i}") for i in range(5)]).alerts]
    store.writer.write([at(1, 10.0, "s0"), at(1, 10.0, "s1")])  # two clears
    assert len(raised) == 5
    for _ in range(3):  # attempts fail, each retried after its backoff
        store.notifier.step()
        time.sleep(0.35)
    state = store.notifications()
    assert {n["state"] for n in state.values()} == {"pending"}
    assert all(n["attempts"] >= 2 and "cannot connect" in n["last_error"] for n in state.values()), state
    first_age = metrics.WEBHOOK_OLDEST_PENDING._value.get()
    assert first_age > 0
    time.sleep(0.3)
    store.notifier.step()
    assert metrics.WEBHOOK_OLDEST_PENDING._value.get() > first_age  # the oldest pending event's age grows

    # The deliverer goes away mid-outage (a restarted worker 0 gets a new one); the receiver comes back.
    store.notifier.stop()
    store.notifier = store.new_notifier()
    receiver.start()
    expected = {event_id(a, "raised") for a in raised} | {event_id(a, "cleared") for a in raised[:2]}
    store.deliver_until(lambda: set(receiver.events()) == expected)
    assert all(got.signature_ok for got in receiver.posts)
    assert {n["state"] for n in store.notifications().values()} == {"sent"}
    assert metrics.WEBHOOK_OLDEST_PENDING._value.get() == 0


def test_gone_is_failed_at_once_and_other_errors_are_retried(store: Store, receiver: Receiver) -> None:
    refused_before = metrics.WEBHOOK_FAILED.labels("http_4xx")._value.get()
    receiver.status = 410
    (first,) = store.writer.write([at(0, 41.0)]).alerts
    store.deliver_until(lambda: store.notifications()[first.id]["state"] == "failed")
    assert store.notifications()[first.id]["last_error"] == "HTTP 410"
    assert metrics.WEBHOOK_FAILED.labels("http_4xx")._value.get() == refused_before + 1
    assert len(receiver.posts) == 1  # not retried

    receiver.posts.clear()
    receiver.status = 400  # a receiver misconfigured for a while: retried, shown pending with the error
    (other,) = [e for e in store.writer.write([at(0, 42.0, "s3")]).alerts if e.sensor_id == "s3"]
    store.deliver_until(lambda: len(receiver.posts) >= 2)
    assert store.notifications()[other.id]["state"] == "pending"
    assert store.notifications()[other.id]["last_error"] == "HTTP 400"

    receiver.status = 503
    (second,) = [e for e in store.writer.write([at(0, 45.0, "s2")]).alerts if e.sensor_id == "s2"]
    store.deliver_until(lambda: store.notifications()[second.id]["attempts"] >= 2)
    assert store.notifications()[second.id]["state"] == "pending"
    assert store.notifications()[second.id]["last_error"] == "HTTP 503"
    receiver.status = 200
    store.deliver_until(lambda: store.notifications()[second.id]["state"] == "sent")
    assert store.notifications()[second.id]["attempts"] >= 3


def test_a_delivery_failing_past_the_give_up_age_is_failed(store: Store, receiver: Receiver) -> None:
    receiver.stop()
    store.notifier = store.new_notifier(give_up_s=0.2)
    (alert,) = store.writer.write([at(0, 41.0)]).alerts
    store.notifier.step()
    assert store.notifications()[alert.id]["state"] == "pending"
    time.sleep(0.4)
    store.deliver_until(lambda: store.notifications()[alert.id]["state"] == "failed")
    assert store.notifications()[alert.id]["last_error"].startswith("gave up after")
    assert metrics.WEBHOOK_OLDEST_PENDING._value.get() == 0


def test_without_webhooks_there_is_no_outbox_and_no_notification_state(tmp_path: Path) -> None:
    writer = open_writer("sqlite", str(tmp_path / "r.db"), "", parse_rules("temperature>40"))
    writer.setup()
    (alert,) = writer.write([at(0, 41.0)]).alerts
    assert writer.claim_deliveries(time.time_ns(), 10**9, 10) == []
    reader = open_reader("sqlite", str(tmp_path / "r.db"), "")
    assert reader is not None
    (item,) = asyncio.run(reader.alerts("all", None, 10, None)).items
    assert item["id"] == alert.id and item["notifications"] is None
    writer.close()


def test_an_existing_database_gets_the_outbox_at_setup(store: Store, receiver: Receiver) -> None:
    """A store from before webhooks (no alert_deliveries table) is upgraded in place."""
    with store.writer._transaction() as cur:
        cur.execute("DROP TABLE alert_deliveries")
    again = open_writer(store.kind, store.path, store.url, parse_rules("temperature>40"), webhooks=(receiver.url,))
    again.setup()
    (alert,) = again.write([at(0, 41.0)]).alerts
    store.deliver_until(lambda: event_id(alert.id, "raised") in receiver.events())
    again.close()


def test_a_no_data_alert_is_notified_like_a_threshold_one(tmp_path: Path, receiver: Receiver) -> None:
    """A `silent` rule's alert is raised by the sweep, not by a write: it goes to the same
    outbox. Fails if Lifecycle.sweep raises without queueing its deliveries (nothing arrives)."""
    path = str(tmp_path / "s.db")
    writer = open_writer("sqlite", path, "", parse_rules("temperature silent 10s"), webhooks=(receiver.url,))
    writer.setup()
    deliverer = open_writer("sqlite", path, "")
    deliverer.setup()
    notifier = Notifier(deliverer, SECRET, timeout_s=2.0, backoff_cap_s=0.3)
    try:
        writer.write([at(0, 20.0)])
        (raised,) = writer.sweep_silent(datetime.now(timezone.utc))  # T0 is long past: silent
        deadline = time.monotonic() + 20
        while event_id(raised.id, "raised") not in receiver.events():
            assert time.monotonic() < deadline, "the no-data alert was not delivered"
            if not notifier.step():
                time.sleep(0.05)
        got = receiver.events()[event_id(raised.id, "raised")]
        assert got.signature_ok and got.body["alert"]["rule"] == "temperature silent 10s"
    finally:
        writer.close()
        deliverer.close()
