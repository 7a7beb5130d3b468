"""Kafka, as the tests, the gate and the benches see it: a real broker, read back and counted.

Readers use throwaway group ids and never commit, so reading a topic never moves the
offsets of the pool's group. One AdminClient per broker serves a whole run: creating many
is slow and floods the broker's log with connections.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupState, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness.process import unique
from pipeline.record import Headers, header_list, position
from pipeline.topics import READINGS_TOPIC_CONFIG, REPLICATION_FACTOR

_ADMINS: dict[str, AdminClient] = {}


def admin(broker: str) -> AdminClient:
    """The AdminClient of `broker`, created once per process."""
    if broker not in _ADMINS:
        _ADMINS[broker] = AdminClient({"bootstrap.servers": broker})
    return _ADMINS[broker]


def forget_admin(broker: str) -> None:
    """Destroy the AdminClient of `broker` (it reconnects for ever to a broker that is gone)."""
    _ADMINS.pop(broker, None)


def broker_answers(broker: str, timeout: float = 5.0) -> bool:
    """The broker returns metadata within `timeout`."""
    try:
        admin(broker).list_topics(timeout=timeout)
    except Exception:
        return False
    return True


def create_topic(
    broker: str,
    name: str,
    partitions: int = 6,
    config: Mapping[str, str] = READINGS_TOPIC_CONFIG,
    timeout: float = 30,
) -> str:
    """Create `name` and wait for the broker to confirm it; by default as the pipeline creates
    its readings topic (pipeline/topics.py: the broker's default replication factor)."""
    topic = NewTopic(name, partitions, REPLICATION_FACTOR, config=dict(config))
    for future in admin(broker).create_topics([topic]).values():
        future.result(timeout)
    return name


def delete_topics(broker: str, *names: str) -> None:
    """Best effort, without waiting: a test's topics go when it ends."""
    admin(broker).delete_topics(list(names))


def delete_group(broker: str, group: str, timeout: float = 15) -> None:
    """Delete an (empty) consumer group; raises when the broker refuses."""
    admin(broker).delete_consumer_groups([group], request_timeout=10)[group].result(timeout)


def _consumer(broker: str, group: str, **config: object) -> Consumer:
    return Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False, **config})


def watermarks(broker: str, topic: str, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """(low, high) watermark of every partition of `topic`."""
    consumer = _consumer(broker, unique("harness-offsets"))
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout) for p in partitions}
    finally:
        consumer.close()


def end_offsets(broker: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """High watermark of every partition: where the next records will start."""
    return {p: high for p, (_, high) in watermarks(broker, topic, timeout).items()}


def payload(msg: Message) -> bytes:
    """A fetched record's value; the pipeline never writes a tombstone, so None fails the caller."""
    value = msg.value()
    assert value is not None, f"a tombstone at {msg.topic()}[{msg.partition()}]@{msg.offset()}"
    return value


def headers_of(msg: Message) -> dict[str, bytes]:
    """A fetched record's headers by name (the pipeline writes bytes; a missing value is b"")."""
    return {k: v.encode() if isinstance(v, str) else v or b"" for k, v in header_list(msg)}


def read_topic(broker: str, topic: str, expected: int, timeout: float = 30) -> list[Message]:
    """Every record of `topic` from the beginning, until `expected` arrived (or timeout)."""
    consumer = _consumer(broker, unique("test-reader"), **{"auto.offset.reset": "earliest"})
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
    consumer = _consumer(broker, unique("test-at"))
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


def count_by_prefix(broker: str, topic: str, since: Mapping[int, int], prefix: str, timeout: float = 60.0) -> int:
    """Records keyed `prefix*` between the offsets `since` and the current end of every partition."""
    return len(values_by_prefix(broker, topic, since, prefix, timeout))


def values_by_prefix(
    broker: str, topic: str, since: Mapping[int, int], prefix: str, timeout: float = 60.0
) -> list[bytes]:
    """The values of the records keyed `prefix*` between the offsets `since` and the current
    end of every partition (offset order within a partition)."""
    ends = end_offsets(broker, topic)
    todo = {p for p, end in ends.items() if end > since.get(p, 0)}
    if not todo:
        return []
    consumer = _consumer(broker, unique("harness-count"), **{"enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, p, since.get(p, 0)) for p in todo])
        wanted = prefix.encode()
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(2000, 0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        todo.discard(msg.partition())
                    continue
                partition, offset = position(msg)
                if offset >= ends[partition]:
                    todo.discard(partition)
                    continue
                if (msg.key() or b"").startswith(wanted):
                    values.append(msg.value() or b"")
                if offset + 1 >= ends[partition]:
                    todo.discard(partition)
        if todo:
            raise TimeoutError(f"could not read partitions {sorted(todo)} of {topic} to their end in {timeout:.0f} s")
        return values
    finally:
        consumer.close()


@dataclass(frozen=True)
class Produced:
    """Where one produced record landed."""

    key: bytes
    value: bytes
    partition: int
    offset: int


def produce(broker: str, topic: str, values: Iterable[tuple[bytes, bytes]]) -> list[Produced]:
    """Produce (key, value) records as the API does (ingested_at_ns = now); waits for every ack."""
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 5, "enable.idempotence": True})
    done: list[Produced] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        done.append(Produced(msg.key() or b"", msg.value() or b"", *position(msg)))

    count = 0
    for key, value in values:
        headers: Headers = [("ingested_at_ns", str(time.time_ns()).encode()), ("content-type", b"application/json")]
        producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
        producer.poll(0)
        count += 1
    assert producer.flush(60) == 0
    assert len(done) == count
    return done


def group_state(broker: str, group: str) -> ConsumerGroupState:
    return admin(broker).describe_consumer_groups([group])[group].result(15).state


def group_described(broker: str, group: str) -> str:
    """The group's state and members as the broker sees them, for a failure message."""
    d = admin(broker).describe_consumer_groups([group])[group].result(15)
    members = [(m.member_id, m.client_id, m.host) for m in d.members]
    return f"state {d.state}, members {members}"


def group_assignment(broker: str, group: str) -> dict[str, set[int]]:
    """member id -> partitions, as the broker sees the group (only when it is stable)."""
    description = admin(broker).describe_consumer_groups([group])[group].result(15)
    if description.state != ConsumerGroupState.STABLE:
        return {}
    return {m.member_id: {tp.partition for tp in m.assignment.topic_partitions} for m in description.members}


def group_settled(broker: str, group: str, topic: str, workers: int | None) -> bool:
    """The group is STABLE, has all its workers, and every partition of `topic` is owned.

    NOTE: a worker that joins late triggers a rebalance that stalls consumption for a second
    or more; a measured run that starts before that would charge it to the e2e latency.
    """
    client = admin(broker)
    described = client.describe_consumer_groups([group], request_timeout=5)[group].result()
    if described.state != ConsumerGroupState.STABLE:
        return False
    if workers is not None and len(described.members) != workers:
        return False
    owned = {
        tp.partition
        for member in described.members
        for tp in (member.assignment.topic_partitions if member.assignment else [])
        if tp.topic == topic
    }
    partitions = client.list_topics(topic, timeout=5).topics[topic].partitions
    return owned == set(partitions)


def committed(broker: str, group: str, topic: str, partitions: int = 6) -> dict[int, int]:
    """The group's committed offset per partition (-1001 when none)."""
    consumer = _consumer(broker, group)
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def topic_values(broker: str, topic: str, timeout: float = 60.0) -> list[bytes]:
    """The value of every record of `topic`, read from offset 0 to the end of every partition."""
    ends = end_offsets(broker, topic)
    todo = {p for p, end in ends.items() if end > 0}
    consumer = _consumer(broker, unique("harness-values"))
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in todo])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(2000, 0.5):
                if msg.error() is not None:
                    continue
                partition, offset = position(msg)
                if offset >= ends[partition]:
                    continue
                values.append(msg.value() or b"")
                if offset + 1 >= ends[partition]:
                    todo.discard(partition)
        if todo:
            raise TimeoutError(f"could not read partitions {sorted(todo)} of {topic} to their end in {timeout:.0f} s")
        return values
    finally:
        consumer.close()
