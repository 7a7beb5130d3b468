"""The Kafka record of a reading, written by the API and read back by the pool: one pair."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pipeline.reading import Reading
from pipeline.record import CONTENT_TYPE, INGESTED_AT_NS, JSON, Headers, from_record, to_record, to_records


class Fetched:
    """The produced record as the pool would fetch it (confluent_kafka.Message's accessors)."""

    def __init__(self, key: bytes, value: bytes, timestamp: int, headers: Headers) -> None:
        self._key, self._value, self._timestamp, self._headers = key, value, timestamp, headers

    def topic(self) -> str:
        return "sensor_data"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> Headers:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)


def test_a_reading_survives_the_round_trip_with_its_receipt_time() -> None:
    moment = datetime(2025, 11, 17, 16, 20, 0, 500000, tzinfo=timezone(timedelta(hours=2)))
    reading = Reading("sensor01", moment.astimezone(timezone.utc), "temperature", 25.3, unit="C", location="lab")
    received_ns = 1_763_389_200_123_456_789

    key, value, timestamp, headers = to_record(reading, received_ns)

    assert key == b"sensor01" and timestamp == received_ns // 1_000_000
    assert dict(headers) == {INGESTED_AT_NS: str(received_ns).encode(), CONTENT_TYPE: JSON}
    assert value == (
        b'{"sensor_id":"sensor01","timestamp":"2025-11-17T14:20:00.500000Z","type":"temperature",'
        b'"value":25.3,"unit":"C","location":"lab"}'
    )
    record = from_record(Fetched(key, value, timestamp, headers))
    assert record.reading == reading
    assert record.ts == "2025-11-17T14:20:00.500000Z"
    assert record.ingested_at_ns == received_ns


def test_the_readings_of_one_request_share_one_receipt_time() -> None:
    readings = [Reading(f"s{i}", datetime(2025, 11, 17, tzinfo=timezone.utc), "t", float(i)) for i in range(3)]
    records = list(to_records(readings, 5_000_000))
    assert [r.key for r in records] == [b"s0", b"s1", b"s2"]
    assert len({id(r.headers) for r in records}) == 1 and {r.timestamp for r in records} == {5}


def test_seq_is_carried_when_sent_and_left_out_when_not() -> None:
    moment = datetime(2025, 11, 17, 14, 20, tzinfo=timezone.utc)
    numbered = Reading("sensor01", moment, "temperature", 1.0, seq=2**63 - 1)
    key, value, timestamp, headers = to_record(numbered, 1)
    assert value.endswith(b',"seq":9223372036854775807}')
    assert from_record(Fetched(key, value, timestamp, headers)).reading.seq == 2**63 - 1
    _, plain, _, _ = to_record(Reading("sensor01", moment, "temperature", 1.0), 1)
    assert b"seq" not in plain  # the seed's record, byte for byte as before
