"""One worker process: a consumer of CONSUMER_GROUP (cooperative-sticky) feeding a sink.

Loop: consume a batch (bounded by CONSUMER_BATCH_SIZE and CONSUMER_BATCH_WAIT_MS) ->
decode -> sink.flush() (retried with backoff while the store is down, nothing committed)
-> alerts -> commit the batch's offsets. Undecodable records go to the DLQ and are
committed with the batch, so they never block their partition.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from consumer_pool import alerts, logs, metrics, records
from consumer_pool.errors import WORKER_BOOT_ERROR, BootError, SinkError
from consumer_pool.sinks import Sink, make_sink
from consumer_pool.sinks.console import write_lines
from service.models import ENCODER, Reading
from service.settings import Settings

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 1.0
IDLE_POLL_S = 0.25


def consumer_config(settings: Settings) -> dict[str, object]:
    """librdkafka settings for a pool worker; RDKAFKA_* overrides win."""
    return {
        "group.id": settings.consumer_group,
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.auto.commit": False,  # NOTE: we commit after the sink write, never before
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        "fetch.wait.max.ms": 10,  # PERF: the broker answers fetches quickly when idle
        "queued.max.messages.kbytes": 65_536,
        **settings.kafka_common(),
    }


def producer_config(settings: Settings) -> dict[str, object]:
    """DLQ and alerts: idempotent, acknowledged by all replicas before we commit."""
    return {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "compression.type": "lz4",
        **settings.kafka_common(),
    }


def retry_delay(attempt: int, base: float = 0.1, cap: float = 5.0) -> float:
    """Exponential backoff with full jitter in [delay/2, delay]."""
    delay = min(cap, base * 2 ** max(attempt - 1, 0))
    return delay / 2 + random.random() * delay / 2


class Worker:
    """Consumes, stores and commits until asked to stop."""

    def __init__(
        self,
        settings: Settings,
        slot: int,
        sink: Sink,
        beat: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.slot = slot
        self.sink = sink
        self.beat = beat
        self.stopping = False
        self.parent = os.getppid()
        self.rules = alerts.parse_rules(settings.alert_rules)
        self.echo = settings.consumer_echo and settings.sink != "console"
        self.consumer = Consumer(consumer_config(settings), logger=log)
        self.producer = Producer(producer_config(settings), logger=log)
        self._lag_due = 0.0
        self._uncommitted: dict[int, int] = {}  # partition -> offset whose commit failed
        self._sink_write = metrics.SINK_WRITE.labels(sink.name)

    # --- lifecycle -------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        """SIGTERM: finish the batch in hand, commit, leave the group (idempotent)."""
        self.stopping = True

    def run(self) -> None:
        self.consumer.subscribe(
            [self.settings.topic_name],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not self.stopping:
                self.beat()
                batch = self.poll_batch()
                if batch:
                    self.process(batch)
                elif self._uncommitted:
                    self.commit({})
                self.update_lag()
                if os.getppid() != self.parent:
                    log.error("supervisor is gone; stopping")
                    self.stopping = True
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Leave the group (offsets of handled batches are already committed), close the sink."""
        left = self.producer.flush(10)
        if left:
            log.error("%d DLQ/alert records undelivered at shutdown", left)
        elif self._uncommitted:
            self.commit({})
        self.consumer.close()
        self.sink.close()
        log.info("worker %d left the group and closed its sink", self.slot)

    # --- the loop --------------------------------------------------------------------

    def poll_batch(self) -> list[Message]:
        """Block for the first record (briefly, to notice SIGTERM), then take what arrives
        within CONSUMER_BATCH_WAIT_MS, up to CONSUMER_BATCH_SIZE records."""
        first = self.consumer.poll(IDLE_POLL_S)
        if first is None:
            return []
        size = self.settings.consumer_batch_size - 1
        if size <= 0:
            return [first]
        return [
            first,
            *self.consumer.consume(size, self.settings.consumer_batch_wait_ms / 1000),
        ]

    def process(self, batch: list[Message]) -> None:
        """Decode, store, alert, commit; DLQ what cannot be decoded."""
        offsets: dict[int, int] = {}
        good: list[tuple[Reading, int]] = []
        dlq = 0
        for msg in batch:
            error = msg.error()
            if error is not None:
                self._consumer_error(error)
                continue
            offsets[msg.partition()] = msg.offset() + 1
            try:
                reading = records.decode(msg)
            except records.DecodeFailure as e:
                self.to_dlq(msg, e)
                dlq += 1
                continue
            good.append((reading, records.ingested_at_ns(msg)))
        if not offsets:
            return
        metrics.BATCH_SIZE.observe(len(batch))
        stored = self.store(good)
        if stored is None:  # stopping during a store outage: commit nothing, it will be replayed
            return
        if self.echo:
            write_lines([records.received_line(r) for r, _ in good])
        self.raise_alerts(good)
        if dlq or self.rules:
            left = self.producer.flush(30)
            if left:
                raise KafkaException(f"{left} DLQ/alert records were not acknowledged; not committing")
        self.commit(offsets)
        now = time.time_ns()
        metrics.observe_many(metrics.E2E_LATENCY, [max(now - ingested, 0) / 1e9 for _, ingested in good])
        metrics.READINGS.labels("stored").inc(stored)
        metrics.READINGS.labels("duplicate").inc(len(good) - stored)
        if dlq:
            metrics.READINGS.labels("dlq").inc(dlq)

    def store(self, good: list[tuple[Reading, int]]) -> int | None:
        """Write the batch; on SinkError retry with backoff (the consumer does not commit).
        Returns the number of new rows, or None when asked to stop before it succeeded."""
        attempt = 0
        while True:
            for reading, ingested in good:
                self.sink.add(reading, ingested)
            started = time.perf_counter()
            try:
                stored = self.sink.flush()
            except SinkError as e:
                attempt += 1
                metrics.SINK_ERRORS.labels(self.sink.name).inc()
                delay = retry_delay(attempt)
                log.warning(
                    "sink %s failed (attempt %d), retrying in %.2fs: %s",
                    self.sink.name,
                    attempt,
                    delay,
                    e,
                )
                if not self._sleep(delay):
                    log.warning(
                        "stopping with an unstored batch of %d; it will be replayed",
                        len(good),
                    )
                    return None
                continue
            self._sink_write.observe(time.perf_counter() - started)
            return stored

    def _sleep(self, seconds: float) -> bool:
        """Sleep in small steps, beating; False when asked to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            self.beat()
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
        return not self.stopping

    def to_dlq(self, msg: Message, error: Exception) -> None:
        """Send an undecodable record to DLQ_TOPIC with the reason and its origin in headers."""
        reason = str(error) or type(error).__name__
        log.warning("DLQ %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), reason)
        headers = [
            *(msg.headers() or ()),
            ("error", reason.encode()),
            ("error_type", type(error).__name__.encode()),
            ("original_topic", msg.topic().encode()),
            ("original_partition", str(msg.partition()).encode()),
            ("original_offset", str(msg.offset()).encode()),
        ]
        self.producer.produce(self.settings.dlq_topic, value=msg.value(), key=msg.key(), headers=headers)
        self.producer.poll(0)

    def raise_alerts(self, good: list[tuple[Reading, int]]) -> None:
        if not self.rules:
            return
        raised = alerts.evaluate(self.rules, ((r, records.utc_text(r.timestamp)) for r, _ in good))
        for alert in raised:
            self.producer.produce(
                self.settings.alerts_topic,
                value=ENCODER.encode(alert),
                key=alert.id.encode(),
            )
            metrics.ALERTS.labels(alert.rule).inc()
        self.producer.poll(0)

    def commit(self, offsets: dict[int, int]) -> bool:
        """Synchronous commit of the batch plus any earlier commit that failed.

        A failed commit (e.g. during a rebalance) is kept and retried on the next loop or
        on revoke; if the partition moves first, its new owner replays (the store dedupes).
        """
        for partition, offset in offsets.items():
            self._uncommitted[partition] = max(offset, self._uncommitted.get(partition, 0))
        if not self._uncommitted:
            return True
        tps = [TopicPartition(self.settings.topic_name, p, o) for p, o in self._uncommitted.items()]
        try:
            self.consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as e:
            owned = {tp.partition for tp in self.consumer.assignment()}
            self._uncommitted = {p: o for p, o in self._uncommitted.items() if p in owned}
            log.warning("commit failed (retrying %s; moved partitions are replayed): %s", self._uncommitted, e)
            return False
        self._uncommitted.clear()
        return True

    def _consumer_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer error: %s", error.str())

    # --- rebalance and lag -----------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            log.info(
                "worker %d assigned partitions %s",
                self.slot,
                sorted(tp.partition for tp in partitions),
            )
        self._lag_due = 0.0

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {tp.partition for tp in partitions}
        if revoked:
            log.info("worker %d revoked partitions %s", self.slot, sorted(revoked))
        if revoked & self._uncommitted.keys():
            self.commit({})  # NOTE: the last chance while we still own them
        for partition in revoked:
            self._uncommitted.pop(partition, None)
            metrics.LAG.labels(str(partition)).set(0)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {tp.partition for tp in partitions}
        log.warning("worker %d lost partitions %s (their new owner replays)", self.slot, sorted(lost))
        for partition in lost:
            self._uncommitted.pop(partition, None)
            metrics.LAG.labels(str(partition)).set(0)

    def update_lag(self) -> None:
        """sensor_consumer_lag{partition} for this worker's partitions, about once a second."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + LAG_INTERVAL_S
        try:
            for tp in self.consumer.position(self.consumer.assignment()):
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0 and tp.offset >= 0:  # NOTE: no position before the first fetch
                    metrics.LAG.labels(str(tp.partition)).set(max(high - tp.offset, 0))
        except KafkaException as e:
            log.debug("lag not updated: %s", e)


def main(settings: Settings, slot: int, heartbeat: object) -> None:
    """Entry point of a spawned worker process (multiprocessing 'spawn')."""
    logs.configure(f"worker-{slot}", settings.log_level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # NOTE: Ctrl-C reaches the group; the supervisor decides
    worker: Worker | None = None

    def beat() -> None:
        heartbeat.value = time.monotonic()  # type: ignore[attr-defined]

    try:
        sink = make_sink(settings)
        sink.setup()
        worker = Worker(settings, slot, sink, beat)
    except (BootError, KafkaException, ValueError) as e:
        log.error("worker %d failed to boot: %s", slot, e)
        sys.exit(WORKER_BOOT_ERROR)
    except Exception:  # process boundary: any failure before the loop is a boot failure
        log.exception("worker %d failed to boot", slot)
        sys.exit(WORKER_BOOT_ERROR)
    finally:
        # Signals were blocked by the supervisor while spawning; handle them from here on.
        signal.signal(signal.SIGTERM, worker.stop if worker else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})
    log.info("worker %d booted (sink %s)", slot, sink.name)
    try:
        worker.run()
    except Exception:  # process boundary: log it as one record, the supervisor restarts us
        log.exception("worker %d crashed; its uncommitted batch will be replayed", slot)
        sys.exit(1)
