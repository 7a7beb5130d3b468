"""The wire contract: one sensor reading (fields and rules in docs/contract.md), its JSON codecs.

NOTE: this is the one notion of valid. The API decodes with it (what breaks it is answered
422), the pool decodes with it (what breaks it goes to the DLQ), and every rule here exists
because a store could not keep such a reading: a reading this model accepts is stored by the
console, SQLite and PostgreSQL sinks alike (tests/consumer_pool/sinks/test_hostile.py).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated

import msgspec

# The sensor-id rule, stated once: the model, the read API's path parameter and the OpenAPI
# document all take it from here.
SENSOR_ID_CHARS = "A-Za-z0-9._:-"  # a regex character class's body
SENSOR_ID_MAX = 64
SensorId = Annotated[str, msgspec.Meta(min_length=1, max_length=SENSOR_ID_MAX, pattern=f"^[{SENSOR_ID_CHARS}]+$")]
_SENSOR_ID = re.compile(f"[{SENSOR_ID_CHARS}]{{1,{SENSOR_ID_MAX}}}")
# NOTE: PostgreSQL's text cannot hold NUL. The schema says so (the pattern is for the
# OpenAPI document and its fuzzers); `__post_init__` enforces it, cheaper than three regexes.
_NO_NUL = {"pattern": "^[^\\x00]*$"}
ReadingType = Annotated[str, msgspec.Meta(min_length=1, max_length=32, extra_json_schema=_NO_NUL)]
Unit = Annotated[str, msgspec.Meta(max_length=16, extra_json_schema=_NO_NUL)]
Location = Annotated[str, msgspec.Meta(max_length=64, extra_json_schema=_NO_NUL)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
# NOTE: finite is not enough: PostgreSQL raises `value out of range: overflow` when
# readings_1m.sum overflows (two readings of 1e308 in one minute), and the sink would retry
# that batch for ever. The largest sum kept is a day's (readings_1d), and a day holds at most
# 8.64e10 distinct timestamps of one sensor and type (microseconds), so |value| <= 1e297 keeps
# every sum below 8.7e307 < DBL_MAX (1.8e308).
VALUE_LIMIT = 1e297
Value = Annotated[float, msgspec.Meta(ge=-VALUE_LIMIT, le=VALUE_LIMIT)]
# The device's own counter (docs/contract.md, "Completeness"): +1 per reading it made, per
# sensor and type; a BIGINT in both stores.
# NOTE: JSON Schema's `integer` includes 5.0 (the OpenAPI document says `integer` and
# schemathesis holds us to it), so a whole float is accepted and kept as an int; 5.5 is not.
SEQ_MAX = 2**63 - 1
_SEQ_RANGE = msgspec.Meta(ge=0, le=SEQ_MAX)
Seq = Annotated[
    Annotated[int, _SEQ_RANGE] | Annotated[float, _SEQ_RANGE], msgspec.Meta(extra_json_schema={"type": "integer"})
]
_UTC = timezone.utc


class Reading(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One measurement. Unknown fields are rejected; the timestamp is kept in UTC."""

    sensor_id: SensorId
    timestamp: AwareDatetime
    type: ReadingType
    value: Value  # bounds exclude NaN and the infinities too
    unit: Unit | None = None
    location: Location | None = None
    seq: Seq | None = None  # an int once decoded (`__post_init__`)

    def __post_init__(self) -> None:
        # NOTE: msgspec turns a ValueError raised here into a ValidationError; a message that
        # starts with a `field` name gets that field as its path (`describe`).
        # NOTE: the pattern's `$` also matches before a final newline (Python's re), and
        # sensor_id goes unescaped into PostgreSQL's COPY: "s1\n" must not pass.
        if self.sensor_id[-1] == "\n":
            raise ValueError("`sensor_id` must not end with a newline")
        if "\x00" in f"{self.type}{self.unit}{self.location}":
            field = "type" if "\x00" in self.type else "unit" if "\x00" in (self.unit or "") else "location"
            raise ValueError(f"`{field}` must not contain a NUL character")
        if type(self.seq) is float:
            if not self.seq.is_integer() or self.seq > SEQ_MAX:  # NOTE: float(SEQ_MAX) is 2**63
                raise ValueError("`seq` must be a whole number from 0 to 2^63-1")
            self.seq = int(self.seq)
        # PERF: msgspec decodes `Z` and `+00:00` to the timezone.utc singleton, so an identity
        # test skips the conversion for nearly every reading (a batch runs this 1,000 times).
        if self.timestamp.tzinfo is not _UTC:
            try:
                self.timestamp = self.timestamp.astimezone(_UTC)
            except OverflowError:
                # 0001-01-01T00:00:00+01:00 is year 0 in UTC, 9999-12-31T23:00:00-01:00 year 10000
                raise ValueError("`timestamp` is outside years 1-9999 once converted to UTC") from None


READING_DECODER = msgspec.json.Decoder(Reading)
BATCH_DECODER = msgspec.json.Decoder(list[Reading])
ENCODER = msgspec.json.Encoder()

_AT_PATH = re.compile(r" - at `(\$[^`]*)`$")
_NAMED_FIELD = re.compile(r"(?:unknown|required) field `([^`]+)`|^`([a-z_]+)` ")
# A batch's 422 lists this many invalid readings at most (it counts them all).
MAX_LISTED = 100


class ReadingError(ValueError):
    """A reading (or batch) failed validation; carries the JSON path of the fault."""

    def __init__(self, message: str, path: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class BatchError(ReadingError):
    """Readings of a batch failed validation: the first one's message and path, plus up to
    MAX_LISTED of them (`errors`, in order) and how many there are (`invalid`)."""

    def __init__(self, errors: list[ReadingError], invalid: int) -> None:
        super().__init__(errors[0].message, errors[0].path)
        self.errors = errors
        self.invalid = invalid


def describe(error: msgspec.ValidationError, prefix: str = "$") -> ReadingError:
    """Split msgspec's message into (message, JSON path), naming the field when known."""
    text = str(error)
    match = _AT_PATH.search(text)
    message = text[: match.start()] if match else text
    path = match.group(1) if match else "$"
    named = _NAMED_FIELD.search(message)
    if named:
        path = f"{path}.{named.group(1) or named.group(2)}"
    return ReadingError(message, prefix + path[1:])


def _ahead(not_after: datetime) -> ReadingError:
    message = f"`timestamp` is after {utc_text(not_after)}: ahead of the API's clock by more than MAX_FUTURE_SKEW_S"
    return ReadingError(message, "$.timestamp")


def decode_reading(body: bytes, not_after: datetime | None = None) -> Reading:
    """Decode one reading; raises msgspec.DecodeError (bad JSON) or ReadingError.

    `not_after` is the clock-skew guard (docs/contract.md, "Clock skew"): a reading stamped
    after it is refused at `$.timestamp`. Only the API passes it, at receipt; the pool never
    does, so a record accepted then is never dead-lettered later for the time it carries."""
    try:
        reading = READING_DECODER.decode(body)
    except msgspec.ValidationError as e:
        raise describe(e) from e
    if not_after is not None and reading.timestamp > not_after:
        raise _ahead(not_after)
    return reading


_RAW_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])


def decode_batch(body: bytes, *, ndjson: bool = False, not_after: datetime | None = None) -> list[Reading]:
    """Decode a JSON array or NDJSON body, all or nothing; raises msgspec.DecodeError (bad
    JSON) or BatchError listing every invalid reading (up to MAX_LISTED), readings stamped
    after `not_after` (the clock-skew guard, as in decode_reading) among them."""
    if ndjson:
        lines = [(i, line) for i, line in enumerate(body.splitlines()) if line.strip()]
        return _decode_items(lines, ndjson=True, not_after=not_after)
    try:
        readings = BATCH_DECODER.decode(body)
        if not_after is None or all(r.timestamp <= not_after for r in readings):
            return readings
        _decode_items(list(enumerate(_RAW_ITEMS.decode(body))), not_after=not_after)
        raise AssertionError("not reached: a reading is after not_after")
    except msgspec.ValidationError as e:
        # NOTE: msgspec stops at the first fault; only then is the array decoded again, item
        # by item, to list them all. A valid batch is decoded once.
        try:
            items = _RAW_ITEMS.decode(body)
        except (msgspec.ValidationError, RecursionError):
            # Not an array at all; or nested so deep (`[[[[...`) that skipping an item
            # recurses past msgspec's limit, where only the first fault is known.
            raise BatchError([describe(e)], 1) from e
        _decode_items(list(enumerate(items)), not_after=not_after)
        raise BatchError([describe(e)], 1) from e  # NOTE: not reached: some item fails again


def _decode_items(
    items: list[tuple[int, bytes | msgspec.Raw]], *, ndjson: bool = False, not_after: datetime | None = None
) -> list[Reading]:
    readings: list[Reading] = []
    errors: list[ReadingError] = []
    invalid = 0
    for index, item in items:
        try:
            reading = READING_DECODER.decode(item)
        except msgspec.ValidationError as e:
            invalid += 1
            if len(errors) < MAX_LISTED:
                errors.append(describe(e, prefix=f"$[{index}]"))
            continue
        except msgspec.DecodeError as e:
            raise msgspec.DecodeError(f"line {index + 1}: {e}" if ndjson else str(e)) from e
        if not_after is not None and reading.timestamp > not_after:
            invalid += 1
            if len(errors) < MAX_LISTED:
                ahead = _ahead(not_after)
                errors.append(ReadingError(ahead.message, f"$[{index}].timestamp"))
            continue
        readings.append(reading)
    if errors:
        raise BatchError(errors, invalid)
    return readings


def is_sensor_id(text: str) -> bool:
    """Whether `text` is a sensor id a reading may carry (no final newline either)."""
    return _SENSOR_ID.fullmatch(text) is not None


def encode(reading: Reading) -> bytes:
    """Compact JSON, timestamp as UTC `Z`: the Kafka record value."""
    return ENCODER.encode(reading)


def utc_text(moment: datetime) -> str:
    """RFC 3339 UTC text with six fraction digits always (`2025-11-17T14:20:00.000000Z`): the
    stores' `ts` and the alert keys. Fixed width, so text order is time order (SQLite compares
    the text); msgspec itself drops a zero fraction, which sorts `:00Z` after `:00.5Z`."""
    text = ENCODER.encode(moment)[1:-1].decode()
    return text if len(text) > 20 else f"{text[:-1]}.000000Z"
