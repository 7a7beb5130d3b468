"""One confluent-kafka Producer per API worker, its delivery reports resolving asyncio futures.

A request hands its readings to `send()` on the event loop: produce() only enqueues (it never
blocks; a full queue raises at once). A thread of the producer's own serves the delivery
reports (`poll()`), and the last report of a request resolves that request's future on the
event loop with `loop.call_soon_threadsafe`, so the loop never waits on Kafka and a request
in flight costs a coroutine, not a thread. Concurrent requests share producer batches because
the producer lingers a few milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message, Producer

from pipeline.kafka_config import producer_config
from pipeline.reading import Reading
from pipeline.record import to_records
from pipeline.settings import ApiSettings, KafkaSettings
from service import metrics

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.05


class ProduceError(Exception):
    """A reading could not be handed to Kafka or was not acknowledged."""

    retry_after: int = 1


class QueueFull(ProduceError):
    """The producer's local queue is full: back-pressure, retry shortly."""


class DeliveryFailed(ProduceError):
    """Kafka reported a delivery error."""


class DeliveryTimeout(ProduceError):
    """No delivery report arrived within ACK_TIMEOUT_MS."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where Kafka put a request's first reading. `offset` is None when the broker acknowledged
    a retried send as a duplicate of one it had already written (librdkafka's idempotent
    producer reports success without an offset then; docs/contract.md, POST /sensor).
    Both are typed optional as confluent-kafka types them; a delivered record has a partition."""

    partition: int | None
    offset: int | None


class _Waiter:
    """Collects the delivery reports of one request and resolves its future once.

    PERF: one bound method serves as the callback of every reading of the request, the
    delivery histogram is observed once per request (produce of the first reading -> last
    report) and the event loop is woken once per request, not once per reading.
    NOTE: reports arrive on the producer's poll thread only (close() stops that thread
    before it flushes), so `pending` needs no lock.
    """

    __slots__ = ("error", "expired", "first", "future", "loop", "pending", "started")

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self.pending = count
        self.first: Delivery | None = None
        self.error: KafkaError | None = None
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.started = time.perf_counter()
        self.expired = False

    def report(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            metrics.DELIVERY_ERRORS.labels(err.name().lower()).inc()
            log.warning("delivery failed for key=%s: %s", msg.key(), err.str())
            self.error = self.error or err
        elif self.first is None:
            # NOTE: not pipeline.record.position(), which refuses a record without an offset: a
            # success report can lack one (a retry the broker had already written), and raising
            # here would end the delivery thread, so no request would be answered again.
            self.first = Delivery(msg.partition(), msg.offset())
        self.pending -= 1
        if self.pending == 0:
            took = time.perf_counter() - self.started
            metrics.DELIVERY_DURATION.observe(took)
            metrics.PRODUCE_TO_ACK.observe(took)
            try:
                self.loop.call_soon_threadsafe(self._resolve)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _resolve(self) -> None:
        if not self.future.done():  # NOTE: done when the request timed out or was cancelled
            self.future.set_result(None)

    def expire(self) -> None:
        """ACK_TIMEOUT_MS passed (on the event loop): wake the request, which answers 503."""
        if not self.future.done():
            self.expired = True
            self.future.set_result(None)


class ReadingProducer:
    """Produces readings and tells the requests waiting for them how their delivery went."""

    def __init__(self, kafka: KafkaSettings, api: ApiSettings) -> None:
        self.kafka = kafka
        self.api = api
        metrics.register()  # its delivery thread reports from the start
        self._producer = Producer(producer_config(kafka))
        self._running = True
        self._thread = threading.Thread(target=self._serve_deliveries, name="kafka-delivery", daemon=True)
        self._thread.start()

    def _serve_deliveries(self) -> None:
        while self._running:
            try:
                self._producer.poll(POLL_INTERVAL_S)
            except Exception:  # NOTE: a process boundary: this thread must outlive any callback bug
                log.exception("a delivery callback failed; the delivery thread goes on")
            metrics.QUEUE_DEPTH.set(len(self._producer))

    async def send(self, readings: Sequence[Reading], received_ns: int) -> Delivery | None:
        """Produce `readings`; in delivered mode wait for every acknowledgement.

        Returns where the first reading landed (delivered mode) or None (enqueued mode);
        raises ProduceError.
        """
        waiter = _Waiter(len(readings), asyncio.get_running_loop())
        metrics.RECEIPT_TO_PRODUCE.observe((time.time_ns() - received_ns) / 1e9)
        produce, topic, callback = self._producer.produce, self.kafka.topic_name, waiter.report
        for key, value, timestamp, headers in to_records(readings, received_ns):
            try:
                produce(topic, value=value, key=key, timestamp=timestamp, headers=headers, on_delivery=callback)
            except BufferError as e:
                metrics.DELIVERY_ERRORS.labels("queue_full").inc()
                raise QueueFull("the local Kafka queue is full, retry shortly") from e
        if self.api.ack_mode != "delivered":
            return None
        # PERF: a timer on the future itself, not asyncio.wait_for (which wraps it in a task).
        timer = waiter.loop.call_later(self.api.ack_timeout_ms / 1000, waiter.expire)
        try:
            await waiter.future
        finally:
            timer.cancel()
        if waiter.expired:
            metrics.DELIVERY_ERRORS.labels("timeout").inc()
            raise DeliveryTimeout(f"Kafka did not acknowledge within {self.api.ack_timeout_ms} ms")
        if waiter.error is not None:
            raise DeliveryFailed(f"Kafka delivery failed: {waiter.error.str()}")
        return waiter.first

    async def ready(self, timeout: float = 2.0) -> str | None:
        """None when Kafka answers and the topic exists, else the reason.

        NOTE: list_topics() blocks until the broker answers, so it runs in a thread: a broker
        outage must not stall the event loop (and with it /healthz and every other request).
        """
        try:
            meta = await asyncio.to_thread(self._producer.list_topics, self.kafka.topic_name, timeout=timeout)
        except Exception as e:
            return f"Kafka unreachable: {e}"
        topic = meta.topics.get(self.kafka.topic_name)
        if topic is None or topic.error is not None:
            return f"topic {self.kafka.topic_name} not present"
        return None

    def close(self, timeout: float = 30.0) -> int:
        """Stop the delivery thread, flush what is queued; returns messages left unflushed."""
        self._running = False
        self._thread.join(timeout=1)
        left = self._producer.flush(timeout)
        if left:
            log.error("%d messages were not delivered before shutdown", left)
        return left
