"""librdkafka configurations of every client of the pipeline, built in one place.

RDKAFKA_* variables (KafkaSettings.rdkafka) are applied last, so they win over these.
"""

from __future__ import annotations

from pipeline.settings import KafkaSettings


def producer_config(kafka: KafkaSettings) -> dict[str, object]:
    """The API's producer: idempotent (acks=all, safe retries), batches shared by requests."""
    return {
        "enable.idempotence": True,  # implies acks=all and safe retries
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,  # PERF: a few ms so concurrent requests share batches
        "queue.buffering.max.messages": 200_000,
        "message.timeout.ms": 120_000,
        **kafka.common(),
    }


def consumer_config(kafka: KafkaSettings, group: str) -> dict[str, object]:
    """A pool worker: one member of `group`; offsets are committed by hand after the write."""
    return {
        "group.id": group,
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.auto.commit": False,  # NOTE: we commit after the sink write, never before
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
        "fetch.wait.max.ms": 10,  # PERF: the broker answers fetches quickly when idle
        "queued.max.messages.kbytes": 65_536,
        **kafka.common(),
    }


def dlq_producer_config(kafka: KafkaSettings) -> dict[str, object]:
    """DLQ and alerts: idempotent, acknowledged by all replicas before the batch is committed."""
    return {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "compression.type": "lz4",
        **kafka.common(),
    }
