"""Helpers the tests share: child processes that always get cleaned up (the same Process
the gate uses), HTTP waits, and reading a topic back from the real broker."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests
from confluent_kafka import Consumer, Message, TopicPartition

from loadtests.stack import Process, free_port

__all__ = [
    "PYTHON",
    "ROOT",
    "SEED_READING",
    "Process",
    "free_port",
    "read_at",
    "read_topic",
    "spawn",
    "unique",
    "wait_for",
    "wait_http",
]

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

SEED_READING = {
    "sensor_id": "sensor01",
    "timestamp": "2025-11-17T14:20:00Z",
    "type": "temperature",
    "value": 25.3,
    "unit": "C",
    "location": "lab",
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as e:
            last_error = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


@contextmanager
def spawn(args: list[str], env: Mapping[str, str], log_path: Path) -> Iterator[Process]:
    """Start `args` with `env` on top of os.environ; always stopped on exit."""
    proc = Process(log_path.stem, args, {**os.environ, **env}, log_path)
    try:
        yield proc
    finally:
        proc.stop()


def wait_http(url: str, timeout: float = 60, status: int = 200, proc: Process | None = None) -> None:
    def ok() -> bool:
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(f"process exited with {proc.popen.returncode}:\n{proc.log()[-3000:]}")
        return requests.get(url, timeout=2).status_code == status

    try:
        wait_for(ok, timeout, what=url)
    except TimeoutError:
        tail = proc.log()[-3000:] if proc else ""
        raise TimeoutError(f"{url} did not answer {status} in {timeout}s\n{tail}") from None


def read_topic(broker: str, topic: str, expected: int, timeout: float = 30) -> list[Message]:
    """Every record of `topic` from the beginning, until `expected` arrived (or timeout)."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": unique("test-reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(messages) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is None:
                    messages.append(msg)
        return messages
    finally:
        consumer.close()


def read_at(broker: str, topic: str, partition: int, offset: int, timeout: float = 15) -> Message:
    """The one record at (partition, offset)."""
    consumer = Consumer({"bootstrap.servers": broker, "group.id": unique("test-at"), "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                return msg
        raise TimeoutError(f"no record at {topic}[{partition}]@{offset}")
    finally:
        consumer.close()
