"""One worker process: a consumer of CONSUMER_GROUP (cooperative-sticky) feeding a sink.

Loop: consume a batch (bounded by CONSUMER_BATCH_SIZE and CONSUMER_BATCH_WAIT_MS) ->
decode -> sink.write() (retried with backoff while the store is down, nothing committed)
-> alert changes produced -> commit the batch's offsets -> a retention step, a no-data
alert sweep and the sensor_readings_missing gauge (worker 0).
Undecodable records go to the DLQ and are committed with the batch, so they never block their partition.
Worker 0 also runs the webhook deliverer, a thread (consumer_pool/notifier.py).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from confluent_kafka import (
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from consumer_pool import logs, metrics
from consumer_pool.completeness import MissingGauge
from consumer_pool.errors import WORKER_BOOT_ERROR, BootError
from consumer_pool.notifier import Notifier
from consumer_pool.retention import Retention
from consumer_pool.sinks import Sink, Written, make_sink
from pipeline.alerts import AlertEvent, encode_event, parse_rules
from pipeline.backoff import backoff
from pipeline.kafka_config import consumer_config, dlq_producer_config
from pipeline.record import (
    DecodeFailure,
    Fetched,
    Headers,
    Record,
    describe_failure,
    dlq_headers,
    from_record,
    position,
)
from pipeline.settings import Settings
from store import StoreSetupError, StoreUnavailable

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 1.0
IDLE_POLL_S = 0.25


def silence_interval(alert_rules: str) -> float | None:
    """How often worker 0 sweeps for silent sensors: a quarter of the shortest `silent`
    duration, within 0.25-15 s (None: no no-data rule)."""
    silent = [rule.silent_s for rule in parse_rules(alert_rules) if rule.silent]
    return min(max(min(silent) / 4, 0.25), 15.0) if silent else None


class Publisher(Protocol):
    """Where dead letters and alerts are produced: confluent_kafka.Producer fits."""

    def produce(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, *, headers: Headers | None = None
    ) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...
    def flush(self, timeout: float = ...) -> int: ...


@dataclass
class Decoded:
    """A fetched batch, split: the records to store, the offsets to commit, the dead letters."""

    records: list[Record] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset
    rejected: list[tuple[Fetched, Exception]] = field(default_factory=list)
    appended_ms: list[int] = field(default_factory=list)  # the broker's LogAppendTime of each record


class Polled(Fetched, Protocol):
    """A record as the consumer's poll returns it: confluent_kafka.Message fits."""

    def error(self) -> KafkaError | None: ...


def decode(batch: Iterable[Polled], on_error: Callable[[KafkaError], None]) -> Decoded:
    """Decode every record; an undecodable one is rejected but its offset still advances,
    so it never blocks its partition. Consumer errors carried in the batch go to `on_error`."""
    decoded = Decoded()
    for msg in batch:
        error = msg.error()
        if error is not None:
            on_error(error)
            continue
        partition, offset = position(msg)
        decoded.offsets[partition] = offset + 1
        kind, stamp = msg.timestamp()
        if kind == TIMESTAMP_LOG_APPEND_TIME:
            decoded.appended_ms.append(stamp)
        try:
            decoded.records.append(from_record(msg))
        except DecodeFailure as e:
            decoded.rejected.append((msg, e))
    return decoded


def _plain_sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True


class BatchHandler:
    """Store -> dead letters and alerts -> commit, for one decoded batch.

    The sink, the publisher and the commit are passed in, so this logic runs in a test with
    a real SQLite sink and plain records; `Worker` gives it the Kafka clients.
    """

    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        publisher: Publisher,
        commit: Callable[[dict[int, int]], bool],
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.kafka = settings.kafka
        self.sink = sink
        self.publisher = publisher
        self.commit = commit
        self.sleep = sleep or _plain_sleep
        self._sink_write = metrics.SINK_WRITE.labels(sink.name)

    def handle(self, decoded: Decoded, fetched: int, fetched_at_ns: int | None = None) -> bool:
        """True when the batch was stored and committed (False: stopping mid-outage).
        `fetched_at_ns`: when the poll returned the batch's first record (default: now)."""
        if not decoded.offsets:
            return True
        fetched_at_ns = fetched_at_ns or time.time_ns()
        metrics.BATCH_SIZE.observe(fetched)
        fetched_ms = fetched_at_ns / 1e6
        metrics.observe_many(metrics.APPEND_TO_FETCH, [max(fetched_ms - a, 0) / 1000 for a in decoded.appended_ms])
        written = self.store(decoded.records)
        if written is None:  # stopping during a store outage: commit nothing, it will be replayed
            return False
        stored = written.stored
        stored_at_ns = time.time_ns()
        metrics.FETCH_TO_STORE.observe((stored_at_ns - fetched_at_ns) / 1e9)
        for msg, error in decoded.rejected:
            self.dead_letter(msg, error)
        self.publish_alerts(written.alerts)
        if decoded.rejected or written.alerts:
            left = self.publisher.flush(30)
            if left:
                raise KafkaException(f"{left} DLQ/alert records were not acknowledged; not committing")
            self.sink.published(written.alerts)
        self.commit(decoded.offsets)
        now = time.time_ns()
        e2e = [(now - r.ingested_at_ns) / 1e9 for r in decoded.records]
        metrics.observe_many(metrics.E2E_LATENCY, [v for v in e2e if v >= 0])
        if negative := sum(1 for v in e2e if v < 0):  # clock skew: reported, never clamped to 0
            metrics.E2E_NEGATIVE.inc(negative)
        metrics.STORED.inc(stored)
        metrics.DUPLICATE.inc(len(decoded.records) - stored)
        if decoded.rejected:
            metrics.DLQ.inc(len(decoded.rejected))
        return True

    def store(self, records: list[Record]) -> Written | None:
        """Write the batch; on StoreUnavailable retry it with backoff (nothing is committed meanwhile).
        Returns the number of new rows, or None when asked to stop before it succeeded."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                stored = self.sink.write(records)
            except StoreUnavailable as e:
                attempt += 1
                metrics.SINK_ERRORS.labels(self.sink.name).inc()
                delay = backoff(attempt)
                log.warning("sink %s failed (attempt %d), retrying in %.2fs: %s", self.sink.name, attempt, delay, e)
                if not self.sleep(delay):
                    log.warning("stopping with an unstored batch of %d; it will be replayed", len(records))
                    return None
                continue
            self._sink_write.observe(time.perf_counter() - started)
            return stored

    def sweep_silent(self, now: datetime | None = None) -> int:
        """No-data rules: raise the alerts due now in the store, produce them to ALERTS_TOPIC,
        then mark them published. Returns how many were raised; on a store or Kafka failure
        they stay pending in the store and go out with a later batch or sweep."""
        try:
            events = self.sink.sweep_silent(now or datetime.now(timezone.utc))
        except StoreUnavailable as e:
            log.warning("no-data sweep failed, retrying later: %s", e)
            return 0
        if not events:
            return 0
        self.publish_alerts(events)
        left = self.publisher.flush(30)
        if left:
            log.warning("%d no-data alert records were not acknowledged; they stay pending", left)
            return len(events)
        try:
            self.sink.published(events)
        except StoreUnavailable as e:
            log.warning("no-data alerts published but not marked (they will be published again): %s", e)
        return len(events)

    def dead_letter(self, msg: Fetched, error: Exception) -> None:
        """Send an undecodable record to DLQ_TOPIC with the reason and its origin in headers."""
        log.warning("DLQ %s[%d]@%d: %s", msg.topic(), msg.partition(), msg.offset(), describe_failure(error))
        self.publisher.produce(self.kafka.dlq_topic, value=msg.value(), key=msg.key(), headers=dlq_headers(msg, error))
        self.publisher.poll(0)

    def publish_alerts(self, events: list[AlertEvent]) -> None:
        """Alerts raised or cleared (and any left unpublished by a crash) to ALERTS_TOPIC."""
        if not events:
            return
        for event in events:
            self.publisher.produce(self.kafka.alerts_topic, value=encode_event(event), key=event.id.encode())
            if event.state == "active":
                metrics.ALERTS.labels(event.rule).inc()
        self.publisher.poll(0)


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
        self.topic = settings.kafka.topic_name
        self.slot = slot
        self.sink = sink
        self.beat = beat
        self.stopping = False
        self.parent = os.getppid()
        self.consumer = Consumer(
            {**consumer_config(settings.kafka, settings.pool.consumer_group), "on_commit": self._on_commit}, logger=log
        )
        self.producer = Producer(dlq_producer_config(settings.kafka), logger=log)
        self.handler = BatchHandler(settings, sink, self.producer, self.commit, self._sleep)
        # NOTE: one worker enforces retention; the slot survives restarts, so one always does.
        self.retention = Retention.of(settings.pool, sink) if slot == 0 else None
        # NOTE: worker 0 sweeps for silent sensors too; the store makes a sweep idempotent, so a
        # restart or an overlap with a replaced worker 0 raises nothing twice (docs/contract.md).
        self.silence_interval_s = silence_interval(settings.pool.alert_rules) if slot == 0 else None
        self._silence_due = 0.0
        # NOTE: one worker publishes sensor_readings_missing, as for retention (consumer_pool/completeness.py).
        self.missing = MissingGauge(sink) if slot == 0 else None
        # NOTE: one webhook deliverer for the pool, a thread of the same slot (docs/contract.md).
        self.notifier = Notifier.of(settings.pool) if slot == 0 else None
        self._lag_due = 0.0
        self._uncommitted: dict[int, int] = {}  # partition -> next offset, stored but not committed
        self._stored_at_ns: int | None = None  # when the oldest of those was stored
        self._commits_in_flight: deque[int] = deque()  # their store times, per async commit
        self._commit_due = 0.0
        self.commit_interval_s = settings.pool.consumer_commit_interval_ms / 1000

    # --- lifecycle -------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        """SIGTERM: finish the batch in hand, commit, leave the group (idempotent)."""
        self.stopping = True

    def run(self) -> None:
        self.consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        if self.notifier is not None:
            self.notifier.start()
        try:
            while not self.stopping:
                self.beat()
                batch, fetched_at_ns = self.poll_batch()
                if batch:
                    self.handler.handle(decode(batch, self._consumer_error), len(batch), fetched_at_ns)
                elif self._uncommitted:
                    self.commit({})
                if self.retention is not None:
                    self.retention.step()
                if self.silence_interval_s is not None and time.monotonic() >= self._silence_due:
                    self.handler.sweep_silent()
                    self._silence_due = time.monotonic() + self.silence_interval_s
                if self.missing is not None:
                    self.missing.step()
                self.update_lag()
                if os.getppid() != self.parent:
                    log.error("supervisor is gone; stopping")
                    self.stopping = True
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Leave the group (offsets of handled batches are already committed), close the sink."""
        if self.notifier is not None:
            self.notifier.stop()
        left = self.producer.flush(10)
        if left:
            log.error("%d DLQ/alert records undelivered at shutdown", left)
        elif self._uncommitted:
            self.commit({}, wait=True)
        self.consumer.close()
        self.sink.close()
        log.info("worker %d left the group and closed its sink", self.slot)

    # --- the loop --------------------------------------------------------------------

    def poll_batch(self) -> tuple[list[Message], int]:
        """Block for the first record (briefly, to notice SIGTERM), then take what arrives
        within CONSUMER_BATCH_WAIT_MS, up to CONSUMER_BATCH_SIZE records. Returns the batch
        and when its first record was fetched (ns)."""
        first = self.consumer.poll(IDLE_POLL_S)
        fetched_at_ns = time.time_ns()
        if first is None:
            return [], fetched_at_ns
        size = self.settings.pool.consumer_batch_size - 1
        if size <= 0:
            return [first], fetched_at_ns
        return [first, *self.consumer.consume(size, self.settings.pool.consumer_batch_wait_ms / 1000)], fetched_at_ns

    def _sleep(self, seconds: float) -> bool:
        """Sleep in small steps, beating; False when asked to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            self.beat()
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
        return not self.stopping

    def commit(self, offsets: dict[int, int], *, wait: bool = False) -> bool:
        """Commit the batch's offsets (plus any earlier ones still pending), after its write.

        PERF: asynchronous, and at most once per CONSUMER_COMMIT_INTERVAL_MS: a synchronous
        commit per batch was a third of a worker's cycle (about 6 ms of 14 at 1,000 req/s)
        and one OffsetCommit request per batch for the broker. What is not committed yet is
        replayed after a crash, and the store dedupes it. `wait=True` (revoke, shutdown)
        commits now and waits. A failed commit comes back through `_on_commit` and is retried;
        if its partition moved meanwhile, the new owner replays it.
        """
        for partition, offset in offsets.items():
            self._uncommitted[partition] = max(offset, self._uncommitted.get(partition, 0))
        if not self._uncommitted:
            return True
        now = time.monotonic()
        if self._stored_at_ns is None:
            self._stored_at_ns = time.time_ns()
        if not wait and now < self._commit_due:
            return True
        tps = [TopicPartition(self.topic, p, o) for p, o in self._uncommitted.items()]
        # NOTE: librdkafka reports every commit, synchronous ones too, through _on_commit, in order.
        self._commits_in_flight.append(self._stored_at_ns)
        try:
            if wait:
                self.consumer.commit(offsets=tps, asynchronous=False)
            else:
                self.consumer.commit(offsets=tps, asynchronous=True)
        except KafkaException as e:
            owned = {tp.partition for tp in self.consumer.assignment()}
            self._uncommitted = {p: o for p, o in self._uncommitted.items() if p in owned}
            log.warning("commit failed (retrying %s; moved partitions are replayed): %s", self._uncommitted, e)
            return False
        self._uncommitted.clear()
        self._stored_at_ns = None
        self._commit_due = now + self.commit_interval_s
        return True

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's report of an asynchronous commit (served by poll/consume, in order)."""
        stored_at_ns = self._commits_in_flight.popleft() if self._commits_in_flight else None
        if error is None and not any(tp.error for tp in partitions):
            if stored_at_ns is not None:
                metrics.STORE_TO_COMMIT.observe((time.time_ns() - stored_at_ns) / 1e9)
            return
        owned = {tp.partition for tp in self.consumer.assignment()}
        for tp in partitions:
            if tp.partition in owned and tp.offset >= 0:
                self._uncommitted[tp.partition] = max(tp.offset, self._uncommitted.get(tp.partition, 0))
        if self._uncommitted and self._stored_at_ns is None:
            self._stored_at_ns = stored_at_ns
        self._commit_due = 0.0  # retry on the next loop
        log.warning("commit failed (retrying %s; moved partitions are replayed): %s", self._uncommitted, error)

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
            self.commit({}, wait=True)  # NOTE: the last chance while we still own them
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


def boot(settings: Settings, slot: int, beat: Callable[[], None]) -> Worker:
    """The sink set up and the Kafka clients created (shared by a worker process and a Ray
    actor); raises BootError, KafkaException or ValueError when the worker cannot start."""
    sink = make_sink(settings.pool)
    try:
        sink.setup()
    except StoreSetupError as e:
        raise BootError(str(e)) from e
    return Worker(settings, slot, sink, beat)


def main(settings: Settings, slot: int, heartbeat: object) -> None:
    """Entry point of a spawned worker process (multiprocessing 'spawn')."""
    logs.configure(f"worker-{slot}", settings.log_level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # NOTE: Ctrl-C reaches the group; the supervisor decides
    worker: Worker | None = None

    def beat() -> None:
        heartbeat.value = time.monotonic()  # type: ignore[attr-defined]

    try:
        worker = boot(settings, slot, beat)
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
    log.info("worker %d booted (sink %s)", slot, worker.sink.name)
    try:
        worker.run()
    except Exception:  # process boundary: log it as one record, the supervisor restarts us
        log.exception("worker %d crashed; its uncommitted batch will be replayed", slot)
        sys.exit(1)
