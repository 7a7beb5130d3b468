"""Turning Kafka records into readings: decode with the shared model, read the headers."""

from __future__ import annotations

from datetime import datetime

import msgspec
from confluent_kafka import Message

from service.models import READING_DECODER, Reading, encode

_TEXT = msgspec.json.Encoder()

DecodeFailure = (msgspec.DecodeError, msgspec.ValidationError, TypeError, ValueError)


def decode(msg: Message) -> Reading:
    """The record's reading; raises one of DecodeFailure (the record goes to the DLQ)."""
    value = msg.value()
    if value is None:
        raise TypeError("record has no value (tombstone)")
    reading = READING_DECODER.decode(value)
    # NOTE: valid JSON, but no store keeps NUL in text: it would fail the sink forever.
    if "\x00" in f"{reading.type}{reading.unit}{reading.location}":
        raise ValueError("NUL character in a text field")
    return reading


def ingested_at_ns(msg: Message) -> int:
    """API receipt time: header `ingested_at_ns`, else the record timestamp (ms)."""
    for key, value in msg.headers() or ():
        if key == "ingested_at_ns" and value:
            try:
                return int(value)
            except ValueError:
                break
    return msg.timestamp()[1] * 1_000_000


def utc_text(moment: datetime) -> str:
    """The timestamp as msgspec encodes it (RFC 3339, UTC `Z`): SQLite's `ts`, alert keys."""
    return _TEXT.encode(moment)[1:-1].decode()


def received_line(reading: Reading) -> bytes:
    """The seed's console output for one reading."""
    return b"Message received: " + encode(reading) + b"\n"
