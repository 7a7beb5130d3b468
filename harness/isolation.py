"""One run's own slice of a shared broker and of this machine: topics, consumer group, ports.

The tests, the gate, the fault suite and the benches all run the API and the pool on a Kafka
that other runs use at the same time (`make up`, another test, another helper's bench). Each
builds its processes' environment from an `Isolation`, so a run never reads another's
readings, joins another's group or binds another's port, and cleans up exactly its own topics.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from harness.kafka import create_topic, delete_group, delete_topics
from harness.process import free_port, unique

# The multiprocess folders of whoever started us: a child given them would mix its metrics
# files with ours (the API's and the pool's folders are set per process by the caller).
METRICS_FOLDERS = ("PROMETHEUS_MULTIPROC_DIR", "CONSUMER_METRICS_DIR")


@dataclass(frozen=True)
class Isolation:
    """The names and ports a pipeline under test uses; `.env()` hands them to its processes."""

    broker: str
    topic: str
    group: str
    partitions: int = 6
    api_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    sqlite_path: str | None = None  # SINK=sqlite's file; None: the caller chooses the store

    @classmethod
    def fresh(
        cls,
        broker: str,
        prefix: str,
        run_id: str | None = None,
        *,
        group: str | None = None,
        partitions: int = 6,
        sqlite_path: str | None = None,
    ) -> Isolation:
        """`<prefix>-<run_id>` (a random id when none) as topic and, unless given, group; free ports."""
        name = f"{prefix}-{run_id}" if run_id else unique(prefix)
        return cls(broker, name, group or name, partitions, sqlite_path=sqlite_path)

    def with_group(self, group: str) -> Isolation:
        """The same topics and ports for another consumer group (a new run over the same backlog)."""
        return replace(self, group=group)

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def alerts_topic(self) -> str:
        return f"{self.topic}.alerts"

    @property
    def topics(self) -> tuple[str, str, str]:
        return self.topic, self.dlq_topic, self.alerts_topic

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def env(self) -> dict[str, str]:
        """The variables (docs/contract.md) that bind the API and the pool to this slice."""
        env = {
            "KAFKA_BROKER": self.broker,
            "TOPIC_NAME": self.topic,
            "TOPIC_PARTITIONS": str(self.partitions),
            "DLQ_TOPIC": self.dlq_topic,
            "ALERTS_TOPIC": self.alerts_topic,
            "CONSUMER_GROUP": self.group,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(self.api_port),
            "CONSUMER_METRICS_PORT": str(self.metrics_port),
        }
        if self.sqlite_path is not None:
            env["SQLITE_PATH"] = self.sqlite_path
        return env

    def create(self) -> Isolation:
        """Create the readings topic (the pool creates the DLQ and alerts topics itself)."""
        create_topic(self.broker, self.topic, self.partitions)
        return self

    def delete(self, with_group: bool = False) -> None:
        """Delete the three topics without waiting; the group too, best effort."""
        delete_topics(self.broker, *self.topics)
        if with_group:
            try:
                delete_group(self.broker, self.group)
            except Exception as e:  # a leftover empty group only costs the broker a little memory
                print(f"[isolation] could not delete consumer group {self.group}: {e}", file=sys.stderr)


def inherited(base: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """`base` (default os.environ) without the caller's metrics folders, None as empty."""
    source = os.environ if base is None else base
    return {k: v or "" for k, v in source.items() if k not in METRICS_FOLDERS}
