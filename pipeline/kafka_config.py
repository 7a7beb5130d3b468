"""librdkafka configurations of every client of the pipeline, built in one place.

RDKAFKA_* variables (KafkaSettings.rdkafka) are applied last, so they win over these, except
the settings that decide what a 2xx means (pipeline.settings.PINNED_RDKAFKA: acks, idempotence,
retries, in-flight requests, the consumer's commits), which settings refuse to take.
"""

from __future__ import annotations

from pipeline.settings import KafkaSettings

# A librdkafka configuration, as confluent_kafka's clients type it.
Config = dict[str, str | int | float | bool]


def producer_config(kafka: KafkaSettings) -> Config:
    """The API's producer: idempotent (acks=all, safe retries), batches shared by requests."""
    return {
        "enable.idempotence": True,  # implies acks=all and safe retries
        "acks": "all",
        "compression.type": "lz4",
        # PERF: concurrent requests share batches within this; 2 ms, not librdkafka's 5: closed loop
        # (32 connections, bench.service) 4,214-4,841 req/s at 2 ms against 2,915-3,946 at 5 ms,
        # and 10 ms was slower still (2,181-2,252); see BENCHMARKS.md.
        "linger.ms": 2,
        "queue.buffering.max.messages": 200_000,
        "message.timeout.ms": 120_000,
        **kafka.common(),
    }


def consumer_config(kafka: KafkaSettings, group: str) -> Config:
    """A pool worker: one member of `group`; offsets are committed by hand after the write."""
    return {
        "group.id": group,
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.auto.commit": False,  # NOTE: we commit after the sink write, never before
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        # PERF: how long the broker may hold a fetch when there is nothing new; with
        # fetch.min.bytes=1 it answers as soon as a record arrives, so a longer wait costs no
        # latency and spares the broker an empty fetch per consumer every 10 ms. Measured with
        # bench.pipeline (make up stack, vegeta): 10 -> 500 ms took the broker from 1.31 to 0.70
        # CPU s per 1,000 readings at 500 req/s, and e2e p99 at 1,000 req/s from 110 to 31 ms.
        "fetch.wait.max.ms": 500,
        "fetch.min.bytes": 1,
        "queued.max.messages.kbytes": 65_536,
        **kafka.common(),
    }


def dlq_producer_config(kafka: KafkaSettings) -> Config:
    """DLQ and alerts: idempotent, acknowledged by all replicas before the batch is committed."""
    return {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "compression.type": "lz4",
        **kafka.common(),
    }


def tail_config(kafka: KafkaSettings, name: str) -> Config:
    """The API's live tail (/stream): assigned partitions, no group membership, no commits."""
    return {
        "group.id": name,  # NOTE: required by librdkafka; never joined (assign(), not subscribe())
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.wait.max.ms": 100,
        "fetch.min.bytes": 1,
        "queued.max.messages.kbytes": 16_384,
        **kafka.common(),
    }
