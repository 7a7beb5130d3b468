"""Helpers for the pool's tests: produce readings to the real broker, read rows back from
the real stores, read the group's assignment and the pool's /metrics."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psycopg
import requests
from confluent_kafka import Consumer, ConsumerGroupState, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Process, unique


def reading(i: int, prefix: str = "s", sensors: int = 5, value: float | None = None) -> dict[str, object]:
    """The i-th test reading: `sensors` sensors, one reading per sensor per second."""
    second = i // sensors
    return {
        "sensor_id": f"{prefix}{i % sensors}",
        "timestamp": f"2025-11-17T14:{(second // 60) % 60:02d}:{second % 60:02d}Z",
        "type": "temperature",
        "value": float(i % 50) if value is None else value,
        "unit": "C",
        "location": "lab",
    }


@dataclass(frozen=True)
class Produced:
    key: bytes
    value: bytes
    partition: int
    offset: int


def produce(broker: str, topic: str, values: Iterable[tuple[bytes, bytes]]) -> list[Produced]:
    """Produce (key, value) records as the API does (ingested_at_ns = now); waits for acks."""
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 5, "enable.idempotence": True})
    done: list[Produced] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        done.append(Produced(msg.key(), msg.value(), msg.partition(), msg.offset()))

    count = 0
    for key, value in values:
        headers = [("ingested_at_ns", str(time.time_ns()).encode()), ("content-type", b"application/json")]
        producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
        producer.poll(0)
        count += 1
    assert producer.flush(60) == 0
    assert len(done) == count
    return done


def encoded(readings: Sequence[dict[str, object]]) -> list[tuple[bytes, bytes]]:
    import msgspec

    return [(str(r["sensor_id"]).encode(), msgspec.json.encode(r)) for r in readings]


def sqlite_count(path: str, table: str = "readings") -> int:
    with sqlite3.connect(path, timeout=30) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def sqlite_rows(path: str, sql: str) -> list[tuple]:
    with sqlite3.connect(path, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def pg_rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url, options="-c TimeZone=UTC") as conn:
        return conn.execute(sql).fetchall()


def pg_count(url: str, table: str = "readings") -> int:
    return pg_rows(url, f"SELECT count(*) FROM {table}")[0][0]


_ADMINS: dict[str, AdminClient] = {}


def admin_for(broker: str) -> AdminClient:
    """One AdminClient per broker for the whole session (creating many is slow and noisy)."""
    if broker not in _ADMINS:
        _ADMINS[broker] = AdminClient({"bootstrap.servers": broker})
    return _ADMINS[broker]


def until(predicate: Callable[[], object], timeout: float, what: str, proc: Process | None = None) -> object:
    """Like wait_for, but fail at once (with the log) when `proc` has exited."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise ProcessExited(f"process exited with {proc.popen.returncode}:\n{proc.log()[-4000:]}")
        try:
            result = predicate()
            if result:
                return result
        except Exception as e:  # keep polling, report the last one
            last = e
        time.sleep(0.25)
    tail = proc.log()[-4000:] if proc is not None else ""
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last})\n{tail}")


class ProcessExited(AssertionError):
    """The process under test died while we waited on it."""


def group_assignment(broker: str, group: str) -> dict[str, set[int]]:
    """member id -> partitions, as the broker sees the group (only when it is stable)."""
    admin = admin_for(broker)
    description = admin.describe_consumer_groups([group])[group].result(15)
    if description.state != ConsumerGroupState.STABLE:
        return {}
    return {m.member_id: {tp.partition for tp in m.assignment.topic_partitions} for m in description.members}


def group_state(broker: str, group: str) -> ConsumerGroupState:
    admin = admin_for(broker)
    return admin.describe_consumer_groups([group])[group].result(15).state


def committed(broker: str, group: str, topic: str, partitions: int = 6) -> dict[int, int]:
    """The group's committed offset per partition (-1001 when none)."""
    consumer = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def high_watermarks(broker: str, topic: str, partitions: int = 6) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": broker, "group.id": unique("test-hw")})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1] for p in range(partitions)}
    finally:
        consumer.close()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The pool's /metrics as {(sample name, sorted labels): value}."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def metric(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples named `name` whose labels include `labels` (0 when absent)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def worker_pids(log: str) -> dict[int, int]:
    """slot -> pid of the latest worker booted in that slot, from the supervisor's log."""
    return {int(slot): int(pid) for slot, pid in re.findall(r"booting worker (\d+) \(pid (\d+)\)", log)}
