"""One confluent-kafka Producer per process, with a thread that serves delivery reports.

Requests hand their readings to `send()`. In delivered mode the request thread waits for
its own delivery reports (bounded by ACK_TIMEOUT_MS); concurrent requests share producer
batches because the producer lingers a few milliseconds.
"""

from __future__ import annotations

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
    partition: int
    offset: int


class _Waiter:
    """Collects the delivery reports of one request.

    PERF: one bound method serves as the callback of every reading of the request, and the
    delivery histogram is observed once per request (produce of the first reading -> last
    report), so a 1,000-reading batch costs no closures and one metric update.
    """

    __slots__ = ("done", "error", "first", "lock", "pending", "started")

    def __init__(self, count: int) -> None:
        self.pending = count
        self.first: Delivery | None = None
        self.error: KafkaError | None = None
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.started = time.perf_counter()

    def report(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            metrics.DELIVERY_ERRORS.labels(err.name().lower()).inc()
            log.warning("delivery failed for key=%s: %s", msg.key(), err.str())
        with self.lock:
            if err is not None:
                self.error = self.error or err
            elif self.first is None:
                self.first = Delivery(msg.partition(), msg.offset())
            self.pending -= 1
            finished = self.pending == 0
        if finished:
            metrics.DELIVERY_DURATION.observe(time.perf_counter() - self.started)
            self.done.set()


class ReadingProducer:
    """Produces readings and reports deliveries to the requests waiting for them."""

    def __init__(self, kafka: KafkaSettings, api: ApiSettings) -> None:
        self.kafka = kafka
        self.api = api
        self._producer = Producer(producer_config(kafka))
        self._running = True
        self._thread = threading.Thread(target=self._serve_deliveries, name="kafka-delivery", daemon=True)
        self._thread.start()

    def _serve_deliveries(self) -> None:
        while self._running:
            self._producer.poll(0.05)
            metrics.QUEUE_DEPTH.set(len(self._producer))

    def send(self, readings: Sequence[Reading], received_ns: int) -> Delivery | None:
        """Produce `readings`; in delivered mode wait for every acknowledgement.

        Returns where the first reading landed (delivered mode) or None (enqueued mode);
        raises ProduceError.
        """
        wait = self.api.ack_mode == "delivered"
        waiter = _Waiter(len(readings))
        produce, topic, callback = self._producer.produce, self.kafka.topic_name, waiter.report
        for key, value, timestamp, headers in to_records(readings, received_ns):
            try:
                produce(topic, value=value, key=key, timestamp=timestamp, headers=headers, on_delivery=callback)
            except BufferError as e:
                metrics.DELIVERY_ERRORS.labels("queue_full").inc()
                raise QueueFull("the local Kafka queue is full, retry shortly") from e
        if not wait:
            return None
        if not waiter.done.wait(self.api.ack_timeout_ms / 1000):
            metrics.DELIVERY_ERRORS.labels("timeout").inc()
            raise DeliveryTimeout(f"Kafka did not acknowledge within {self.api.ack_timeout_ms} ms")
        if waiter.error is not None:
            raise DeliveryFailed(f"Kafka delivery failed: {waiter.error.str()}")
        return waiter.first

    def ready(self, timeout: float = 2.0) -> str | None:
        """None when Kafka answers and the topic exists, else the reason."""
        try:
            meta = self._producer.list_topics(self.kafka.topic_name, timeout=timeout)
        except Exception as e:
            return f"Kafka unreachable: {e}"
        topic = meta.topics.get(self.kafka.topic_name)
        if topic is None or topic.error is not None:
            return f"topic {self.kafka.topic_name} not present"
        return None

    def close(self, timeout: float = 30.0) -> int:
        """Flush what is queued, stop the delivery thread; returns messages left unflushed."""
        left = self._producer.flush(timeout)
        self._running = False
        self._thread.join(timeout=1)
        if left:
            log.error("%d messages were not delivered before shutdown", left)
        return left
