"""The API's producer: what a delivery report may look like, and a delivery thread that never
dies (if it did, no request would be answered again: every one would wait for its 503)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import msgspec
import pytest
from confluent_kafka import KafkaError, Message

from harness.isolation import Isolation
from harness.readings import SEED_READING
from pipeline.reading import READING_DECODER
from pipeline.settings import Settings
from service import metrics
from service.ingest.producer import Delivery, ReadingProducer, _Waiter


@pytest.fixture(autouse=True)
def registered() -> None:
    metrics.register()  # the API's metrics, as a worker registers them at its start


def test_a_success_report_without_an_offset_answers_the_request() -> None:
    """librdkafka reports a retried send the broker had already written as a success with
    offset -1001 (None in Python): seen after two of three brokers came back. This raised in
    the delivery thread and ended it. Fails if the report raises or the request is not answered."""
    loop = asyncio.new_event_loop()
    try:
        waiter = _Waiter(1, loop)
        waiter.report(None, Message(topic="t", partition=3, offset=-1001, value=b"{}"))
        loop.run_until_complete(asyncio.wait_for(waiter.future, 1))
    finally:
        loop.close()
    assert waiter.first == Delivery(3, None) and waiter.error is None


def test_a_failure_report_is_the_request_error() -> None:
    loop = asyncio.new_event_loop()
    try:
        waiter = _Waiter(2, loop)
        waiter.report(KafkaError(KafkaError._MSG_TIMED_OUT), Message(topic="t", partition=1, value=b"{}"))
        waiter.report(None, Message(topic="t", partition=1, offset=7, value=b"{}"))
        loop.run_until_complete(asyncio.wait_for(waiter.future, 1))
    finally:
        loop.close()
    assert waiter.error is not None and waiter.error.code() == KafkaError._MSG_TIMED_OUT
    assert waiter.first == Delivery(1, 7)


@pytest.fixture
def producer(isolation: Isolation) -> Iterator[ReadingProducer]:
    settings = Settings.from_env(isolation.env(), dotenv=False)
    p = ReadingProducer(settings.kafka, settings.api)
    yield p
    p.close(5)


@pytest.mark.integration
def test_the_delivery_thread_outlives_a_callback_that_raises(producer: ReadingProducer, isolation: Isolation) -> None:
    """A delivery callback that raises (a bug of ours) must not end the thread that serves every
    other request's reports. Fails without the guard in _serve_deliveries: the send below then
    waits for a report that never comes and gets DeliveryTimeout."""
    raised: list[float] = []

    def boom(err: KafkaError | None, msg: Message) -> None:
        raised.append(time.monotonic())
        raise ValueError("a bug in a delivery callback")

    producer._producer.produce(isolation.topic, value=b"{}", on_delivery=boom)
    deadline = time.monotonic() + 15
    while not raised and time.monotonic() < deadline:
        time.sleep(0.05)
    assert raised, "the raising callback was never called"
    reading = READING_DECODER.decode(msgspec.json.encode(SEED_READING))
    delivery = asyncio.run(producer.send([reading], time.time_ns()))
    assert delivery is not None and delivery.offset is not None and delivery.offset >= 0
