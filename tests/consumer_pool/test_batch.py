"""The worker's batch logic in process: decode -> store -> dead letters/alerts -> commit,
with a real SQLite store, plain records and the commit and publisher passed in."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import KafkaException

from consumer_pool.sinks.base import Sink, Written
from consumer_pool.worker import BatchHandler, decode
from pipeline.alerts import AlertEvent, parse_rules
from pipeline.record import DLQ_ERROR, DLQ_ORIGINAL_OFFSET, INGESTED_AT_NS, Record
from pipeline.settings import Settings
from store import StoreUnavailable
from store.sqlite import SqliteWriter


@dataclass
class Plain:
    """A fetched record as plain data, with confluent_kafka.Message's accessors."""

    _value: bytes | None
    _partition: int
    _offset: int
    _headers: list[tuple[str, bytes]] = field(default_factory=list)

    def topic(self) -> str:
        return "readings"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def error(self) -> None:
        return None


@dataclass
class Published:
    """Collects what the handler produces (dead letters, alerts) instead of a Kafka producer."""

    records: list[tuple[str, bytes | None, dict]] = field(default_factory=list)

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: object) -> None:
        self.records.append((topic, value, kw))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


def reading(second: int, value: float = 20.0) -> bytes:
    body = {"sensor_id": "s1", "timestamp": f"2025-11-17T14:20:{second:02d}Z", "type": "temperature", "value": value}
    return msgspec.json.encode(body)


def records(n: int, partition: int = 0) -> list[Plain]:
    return [Plain(reading(i), partition, 100 + i, [(INGESTED_AT_NS, b"1700000000000000000")]) for i in range(n)]


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SqliteWriter]:
    s = SqliteWriter(str(tmp_path / "r.db"))
    s.setup()
    yield s
    s.close()


def handler(sink: Sink, commits: list[dict[int, int]], rules: str = "") -> tuple[BatchHandler, Published]:
    published = Published()
    settings = Settings.from_env({"ALERT_RULES": rules, "DLQ_TOPIC": "dlq", "ALERTS_TOPIC": "alerts"})

    def commit(offsets: dict[int, int]) -> bool:
        commits.append(dict(offsets))
        return True

    return BatchHandler(settings, sink, published, commit, sleep=lambda s: True), published


def count(sink: SqliteWriter) -> int:
    with sqlite3.connect(sink.path) as conn:
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0]


def test_undecodable_records_are_rejected_but_their_offsets_advance() -> None:
    batch = [*records(2), Plain(b"{not json", 0, 102), Plain(None, 1, 7), Plain(reading(3, float("nan")), 1, 8)]
    decoded = decode(batch, on_error=lambda e: pytest.fail(str(e)))
    assert [r.ts for r in decoded.records] == ["2025-11-17T14:20:00.000000Z", "2025-11-17T14:20:01.000000Z"]
    assert decoded.records[0].ingested_at_ns == 1_700_000_000_000_000_000
    assert decoded.offsets == {0: 103, 1: 9}
    assert [m.offset() for m, _ in decoded.rejected] == [102, 7, 8]


def test_the_receipt_time_falls_back_to_the_record_timestamp() -> None:
    (record,) = decode([Plain(reading(0), 0, 0)], on_error=print).records
    assert record.ingested_at_ns == 1_700_000_000_000 * 1_000_000


def test_a_batch_is_stored_then_committed_and_a_replay_stores_nothing(sink: SqliteWriter) -> None:
    commits: list[dict[int, int]] = []
    h, published = handler(sink, commits)
    batch = records(5)
    assert h.handle(decode(batch, print), len(batch))
    assert count(sink) == 5 and commits == [{0: 105}]
    assert h.handle(decode(batch, print), len(batch))  # a replay after a crash before the commit
    assert count(sink) == 5 and commits == [{0: 105}, {0: 105}]
    assert published.records == []


def test_dead_letters_carry_the_reason_and_origin_and_are_committed_with_the_batch(sink: SqliteWriter) -> None:
    commits: list[dict[int, int]] = []
    h, published = handler(sink, commits)
    batch = [*records(1), Plain(b"[]", 0, 101, [("x", b"y")])]
    assert h.handle(decode(batch, print), len(batch))
    ((topic, value, kw),) = published.records
    headers = dict(kw["headers"])
    assert (topic, value, headers["x"], headers[DLQ_ORIGINAL_OFFSET]) == ("dlq", b"[]", b"y", b"101")
    assert b"Expected `object`" in headers[DLQ_ERROR]
    assert commits == [{0: 102}] and count(sink) == 1


def test_alert_changes_are_produced_once_kafka_has_them_and_a_replay_produces_nothing(tmp_path: Path) -> None:
    sink = SqliteWriter(str(tmp_path / "a.db"), rules=parse_rules("temperature>30"))
    sink.setup()
    commits: list[dict[int, int]] = []
    h, published = handler(sink, commits)
    batch = [Plain(reading(0, 31.0), 0, 0), Plain(reading(1, 35.0), 0, 1), Plain(reading(2, 29.0), 0, 2)]
    h.handle(decode(batch, print), len(batch))
    events = [(t, msgspec.json.decode(v or b"")) for t, v, _ in published.records]
    assert [(t, e["state"], e["value"]) for t, e in events] == [("alerts", "active", 31.0), ("alerts", "cleared", 29.0)]
    assert events[0][1]["id"] == events[1][1]["id"]  # one alert, raised then cleared

    h.handle(decode(batch, print), len(batch))  # the same records again (a replay)
    assert len(published.records) == 2
    with sqlite3.connect(sink.path) as conn:
        assert conn.execute(
            "SELECT state, raised_value, last_value, cleared_value, pending FROM alerts"
        ).fetchall() == [("cleared", 31.0, 35.0, 29.0, 0)]
    sink.close()


class Unreachable(Published):
    """A publisher whose records are never acknowledged (Kafka gone)."""

    def flush(self, timeout: float = 0) -> int:
        return len(self.records)


def test_an_alert_change_not_acknowledged_is_produced_again_with_the_next_batch(tmp_path: Path) -> None:
    sink = SqliteWriter(str(tmp_path / "a.db"), rules=parse_rules("temperature>30"))
    sink.setup()
    settings = Settings.from_env({"ALERTS_TOPIC": "alerts"})
    lost, commits = Unreachable(), list[dict[int, int]]()

    def commit(offsets: dict[int, int]) -> bool:
        commits.append(offsets)
        return True

    with pytest.raises(KafkaException, match="not acknowledged"):
        BatchHandler(settings, sink, lost, commit, sleep=lambda s: True).handle(
            decode([Plain(reading(0, 31.0), 0, 0)], print), 1
        )
    assert commits == []  # nothing committed: the record is replayed, but it is stored already

    h, published = handler(sink, commits)
    h.handle(decode([Plain(reading(0, 31.0), 0, 0)], print), 1)  # the replay: not new, yet the change is pending
    assert [msgspec.json.decode(v or b"")["state"] for _, v, _ in published.records] == ["active"]
    h.handle(decode([Plain(reading(1, 32.0), 0, 1)], print), 1)
    assert len(published.records) == 1  # published once Kafka had it, then not again
    sink.close()


class FailingTwice(Sink):
    """A real SQLite sink whose first two writes fail as a lost database would."""

    name = "sqlite"

    def __init__(self, inner: SqliteWriter) -> None:
        self.inner, self.failures = inner, 0

    def setup(self) -> None: ...

    def write(self, batch: Sequence[Record]) -> Written:
        if self.failures < 2:
            self.failures += 1
            raise StoreUnavailable("database is locked")
        return self.inner.write(batch)

    def published(self, events: Sequence[AlertEvent]) -> None:
        self.inner.published(events)

    def close(self) -> None: ...


def test_a_failed_write_is_retried_with_the_same_batch_and_committed_once(sink: SqliteWriter) -> None:
    commits: list[dict[int, int]] = []
    h, _ = handler(FailingTwice(sink), commits)
    batch = records(3)
    assert h.handle(decode(batch, print), len(batch))
    assert count(sink) == 3 and commits == [{0: 103}]


def test_stopping_during_an_outage_commits_nothing(sink: SqliteWriter) -> None:
    commits: list[dict[int, int]] = []
    h, _ = handler(FailingTwice(sink), commits)
    h.sleep = lambda s: False  # asked to stop while waiting to retry
    assert not h.handle(decode(records(3), print), 3)
    assert commits == [] and count(sink) == 0


def test_a_receipt_later_than_the_store_time_is_counted_not_clamped(sink: SqliteWriter) -> None:
    """Clock skew between the API and the pool shows as a count, not as a 0 ms reading."""
    from consumer_pool import metrics

    future = str(time.time_ns() + 60 * 10**9).encode()
    batch = [Plain(reading(i), 0, i, [(INGESTED_AT_NS, future)]) for i in range(3)]
    batch.append(Plain(reading(3), 0, 3, [(INGESTED_AT_NS, b"1700000000000000000")]))
    negative, observed = metrics.E2E_NEGATIVE._value.get(), metrics.E2E_LATENCY._sum.get()
    h, _ = handler(sink, [])
    assert h.handle(decode(batch, print), len(batch))
    assert metrics.E2E_NEGATIVE._value.get() - negative == 3
    # Only the one reading with a past receipt was observed (its latency is years, not 0).
    assert metrics.E2E_LATENCY._sum.get() - observed > 3600


class Unacknowledged(Published):
    """A producer whose records Kafka never acknowledges."""

    def flush(self, timeout: float = 0) -> int:
        return len(self.records)


def test_a_no_data_sweep_publishes_what_it_raised_and_keeps_it_pending_until_kafka_has_it(tmp_path: Path) -> None:
    sink = SqliteWriter(str(tmp_path / "s.db"), rules=parse_rules("temperature silent 5s"))
    sink.setup()
    h, published = handler(sink, [])
    h.handle(decode([Plain(reading(0), 0, 0)], print), 1)  # s1's newest reading: 14:20:00
    after = datetime(2025, 11, 17, 14, 20, 6, tzinfo=timezone.utc)
    h.publisher = Unacknowledged()
    assert h.sweep_silent(after) == 1  # produced, but Kafka did not acknowledge it
    pending = lambda: sqlite3.connect(sink.path).execute("SELECT state, pending FROM alerts").fetchall()  # noqa: E731
    assert pending() == [("active", 1)]
    h.publisher = published
    assert h.sweep_silent(after) == 0  # open already: not raised again
    # The next batch clears it, and publishes its current state (the topic keeps the last per id).
    h.handle(decode([Plain(reading(1), 0, 1)], print), 1)
    events = [msgspec.json.decode(v or b"") for _, v, _ in published.records]
    assert [(e["rule"], e["state"], e["timestamp"]) for e in events] == [
        ("temperature silent 5s", "cleared", "2025-11-17T14:20:01.000000Z")
    ]
    assert pending() == [("cleared", 0)]
    assert h.sweep_silent(after - timedelta(seconds=0.5)) == 0  # it talked at 14:20:01: not 5 s ago yet
    assert h.sweep_silent(after) == 1  # 5 s of silence again: a new alert
