"""The Kafka record of a reading, written by the API and read back by the pool: one place.

Format (docs/contract.md, "Kafka record"): key = sensor_id (UTF-8); value = the reading as
compact JSON, timestamp in UTC `Z`; record timestamp = API receipt (ms); headers
`ingested_at_ns` (API receipt, decimal ns) and `content-type: application/json`.
A record the pool cannot decode goes to the DLQ with the DLQ_* headers added.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple, Protocol

import msgspec

from pipeline.reading import READING_DECODER, Reading, encode, utc_text

INGESTED_AT_NS = "ingested_at_ns"
CONTENT_TYPE = "content-type"
JSON = b"application/json"

# Headers added to a dead-lettered record (its own headers are kept before them).
DLQ_ERROR = "error"
DLQ_ERROR_TYPE = "error_type"
DLQ_ORIGINAL_TOPIC = "original_topic"
DLQ_ORIGINAL_PARTITION = "original_partition"
DLQ_ORIGINAL_OFFSET = "original_offset"

# NOTE: spelt as confluent_kafka types them: Producer.produce takes Headers, and a fetched
# record's headers() returns a list (or the dict form) of them.
Headers = list[tuple[str, str | bytes | None]]
FetchedHeaders = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None]

# What decoding a record can raise; such a record is dead-lettered, never retried.
DecodeFailure = (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError)


class KafkaRecord(NamedTuple):
    """The arguments of Producer.produce() for one reading (topic aside)."""

    key: bytes
    value: bytes
    timestamp: int
    headers: Headers


class Fetched(Protocol):
    """What the pool reads off a fetched record: confluent_kafka.Message has exactly these."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> FetchedHeaders | None: ...
    def timestamp(self) -> tuple[int, int]: ...


class Record(msgspec.Struct, frozen=True):
    """A decoded record: the one shape that goes through decode -> store -> alerts -> echo.

    `ts` is the reading's timestamp as UTC text, converted once here and used by every sink
    and by the alert keys.
    """

    reading: Reading
    ts: str
    ingested_at_ns: int

    @classmethod
    def of(cls, reading: Reading, ingested_at_ns: int) -> Record:
        return cls(reading, utc_text(reading.timestamp), ingested_at_ns)


def to_records(readings: Iterable[Reading], received_ns: int) -> Iterator[KafkaRecord]:
    """The records of one request; they share the receipt time and one headers list."""
    headers: Headers = [(INGESTED_AT_NS, str(received_ns).encode()), (CONTENT_TYPE, JSON)]
    timestamp_ms = received_ns // 1_000_000
    for reading in readings:
        yield KafkaRecord(reading.sensor_id.encode(), encode(reading), timestamp_ms, headers)


def to_record(reading: Reading, received_ns: int) -> KafkaRecord:
    return next(to_records((reading,), received_ns))


def position(msg: Fetched) -> tuple[int, int]:
    """Partition and offset of a record fetched from the broker (which always has both)."""
    partition, offset = msg.partition(), msg.offset()
    if partition is None or offset is None:
        raise ValueError(f"record without a position (partition {partition}, offset {offset})")
    return partition, offset


def header_list(msg: Fetched) -> Headers:
    """The record's headers as (key, value) pairs, in order."""
    headers = msg.headers() or []
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


def ingested_at_ns(msg: Fetched) -> int:
    """API receipt time: header `ingested_at_ns`, else the record timestamp (ms)."""
    for key, value in header_list(msg):
        if key == INGESTED_AT_NS and value:
            try:
                return int(value)
            except ValueError:
                break
    return msg.timestamp()[1] * 1_000_000


def from_record(msg: Fetched) -> Record:
    """The record's reading; raises one of DecodeFailure (the record goes to the DLQ)."""
    value = msg.value()
    if value is None:
        raise TypeError("record has no value (tombstone)")
    # NOTE: the same model the API validated with (NUL in text, the value's bounds, ...), so
    # only a record written by something else than the API can fail here.
    return Record.of(READING_DECODER.decode(value), ingested_at_ns(msg))


def dlq_headers(msg: Fetched, error: Exception) -> Headers:
    """The record's own headers plus why and where it failed."""
    return [
        *header_list(msg),
        (DLQ_ERROR, describe_failure(error).encode()),
        (DLQ_ERROR_TYPE, type(error).__name__.encode()),
        (DLQ_ORIGINAL_TOPIC, (msg.topic() or "").encode()),
        (DLQ_ORIGINAL_PARTITION, str(msg.partition()).encode()),
        (DLQ_ORIGINAL_OFFSET, str(msg.offset()).encode()),
    ]


def describe_failure(error: Exception) -> str:
    return str(error) or type(error).__name__
