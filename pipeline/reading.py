"""The wire contract: one sensor reading (fields and rules in docs/contract.md), its JSON codecs."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated

import msgspec

SensorId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
ReadingType = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
_UTC = timezone.utc


class Reading(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One measurement. Unknown fields are rejected; the timestamp is kept in UTC."""

    sensor_id: SensorId
    timestamp: AwareDatetime
    type: ReadingType
    value: float
    unit: Annotated[str, msgspec.Meta(max_length=16)] | None = None
    location: Annotated[str, msgspec.Meta(max_length=64)] | None = None

    def __post_init__(self) -> None:
        # NOTE: msgspec turns a ValueError raised here into a ValidationError.
        # PERF: `x - x` is 0.0 for finite x and NaN for NaN/inf: cheaper than math.isfinite, and
        # msgspec decodes `Z` and `+00:00` to the timezone.utc singleton, so an identity test
        # skips the conversion for nearly every reading (a batch runs this 1,000 times).
        if self.value - self.value != 0.0:
            raise ValueError("`value` must be a finite number")
        if self.timestamp.tzinfo is not _UTC:
            self.timestamp = self.timestamp.astimezone(_UTC)


READING_DECODER = msgspec.json.Decoder(Reading)
BATCH_DECODER = msgspec.json.Decoder(list[Reading])
ENCODER = msgspec.json.Encoder()

_AT_PATH = re.compile(r" - at `(\$[^`]*)`$")
_NAMED_FIELD = re.compile(r"(?:unknown|required) field `([^`]+)`")


class ReadingError(ValueError):
    """A reading (or batch) failed validation; carries the JSON path of the fault."""

    def __init__(self, message: str, path: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def describe(error: msgspec.ValidationError, prefix: str = "$") -> ReadingError:
    """Split msgspec's message into (message, JSON path), naming the field when known."""
    text = str(error)
    match = _AT_PATH.search(text)
    message = text[: match.start()] if match else text
    path = match.group(1) if match else "$"
    named = _NAMED_FIELD.search(message)
    if named:
        path = f"{path}.{named.group(1)}"
    return ReadingError(message, prefix + path[1:])


def decode_reading(body: bytes) -> Reading:
    """Decode one reading; raises msgspec.DecodeError (bad JSON) or ReadingError."""
    try:
        return READING_DECODER.decode(body)
    except msgspec.ValidationError as e:
        raise describe(e) from e


def decode_batch(body: bytes, *, ndjson: bool = False) -> list[Reading]:
    """Decode a JSON array or NDJSON body, all or nothing."""
    if not ndjson:
        try:
            return BATCH_DECODER.decode(body)
        except msgspec.ValidationError as e:
            raise describe(e) from e
    readings: list[Reading] = []
    for index, line in enumerate(body.splitlines()):
        if not line.strip():
            continue
        try:
            readings.append(READING_DECODER.decode(line))
        except msgspec.ValidationError as e:
            raise describe(e, prefix=f"$[{index}]") from e
        except msgspec.DecodeError as e:
            raise msgspec.DecodeError(f"line {index + 1}: {e}") from e
    return readings


def encode(reading: Reading) -> bytes:
    """Compact JSON, timestamp as UTC `Z`: the Kafka record value."""
    return ENCODER.encode(reading)


def utc_text(moment: datetime) -> str:
    """RFC 3339 UTC text with six fraction digits always (`2025-11-17T14:20:00.000000Z`): the
    stores' `ts` and the alert keys. Fixed width, so text order is time order (SQLite compares
    the text); msgspec itself drops a zero fraction, which sorts `:00Z` after `:00.5Z`."""
    text = ENCODER.encode(moment)[1:-1].decode()
    return text if len(text) > 20 else f"{text[:-1]}.000000Z"
