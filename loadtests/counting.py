"""Count one run's readings where they end up: in the Kafka topic and in the store.

A run is recognised by its sensor_id prefix (`<run_id>-`), so counts stay exact on a topic or
a database that other traffic shares.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition


def end_offsets(broker: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """High watermark of every partition: where this run's records will start."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": "loadtests-offsets",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1] for p in partitions}
    finally:
        consumer.close()


def count_in_kafka(broker: str, topic: str, since: dict[int, int], prefix: str, timeout: float = 60.0) -> int:
    """Records keyed `prefix*` between `since` and the current end of every partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": "loadtests-count",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        ends = end_offsets(broker, topic)
        todo = {p for p, end in ends.items() if end > since.get(p, 0)}
        if not todo:
            return 0
        consumer.assign([TopicPartition(topic, p, since.get(p, 0)) for p in todo])
        wanted = prefix.encode()
        count = 0
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(2000, 0.5):
                if msg.error() is not None:
                    if msg.error().code() == -191:  # KafkaError._PARTITION_EOF
                        todo.discard(msg.partition())
                    continue
                if msg.offset() >= ends[msg.partition()]:
                    todo.discard(msg.partition())
                    continue
                if (msg.key() or b"").startswith(wanted):
                    count += 1
                if msg.offset() + 1 >= ends[msg.partition()]:
                    todo.discard(msg.partition())
        if todo:
            raise TimeoutError(f"could not read partitions {sorted(todo)} of {topic} to their end in {timeout:.0f} s")
        return count
    finally:
        consumer.close()


@dataclass(frozen=True)
class StoreCount:
    rows: int
    last_stored_ns: int | None


class Store:
    """Read-only view of the pool's `readings` table (SQLite file or PostgreSQL)."""

    def __init__(self, sqlite_path: str | None = None, database_url: str | None = None) -> None:
        if not sqlite_path and not database_url:
            raise ValueError("a SQLite path or a database URL is needed")
        self.sqlite_path = sqlite_path
        self.database_url = database_url

    def count(self, prefix: str) -> StoreCount:
        """Rows whose sensor_id starts with `prefix`, and when the last of them was stored."""
        sql = "SELECT count(*), max(stored_at_ns) FROM readings WHERE sensor_id LIKE {p} || '%'"
        if self.database_url:
            import psycopg

            with psycopg.connect(self.database_url, autocommit=True) as conn:
                try:
                    row = conn.execute(sql.format(p="%s"), (prefix,)).fetchone()
                except psycopg.errors.UndefinedTable:
                    return StoreCount(0, None)
        else:
            path = Path(self.sqlite_path or "")
            if not path.exists():
                return StoreCount(0, None)
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                row = conn.execute(sql.format(p="?"), (prefix,)).fetchone()
            except sqlite3.OperationalError as e:
                if "no such table" in str(e):
                    return StoreCount(0, None)
                raise
            finally:
                conn.close()
        rows, last = row if row else (0, None)
        return StoreCount(int(rows or 0), int(last) if last is not None else None)
