"""The reading contract: what is accepted, how it is normalised, how errors are reported."""

from __future__ import annotations

import msgspec
import pytest

from harness.readings import SEED_READING
from pipeline.reading import ReadingError, decode_batch, decode_reading, encode, is_sensor_id


def body(**changes: object) -> bytes:
    reading = {**SEED_READING, **changes}
    return msgspec.json.encode({k: v for k, v in reading.items() if v is not ...})


def test_seed_reading_round_trips_unchanged() -> None:
    assert msgspec.json.decode(encode(decode_reading(body()))) == SEED_READING


@pytest.mark.parametrize(
    ("timestamp", "stored"),
    [
        ("2025-11-17T16:20:00+02:00", "2025-11-17T14:20:00Z"),
        ("2025-11-17T09:20:00.250-05:00", "2025-11-17T14:20:00.250000Z"),
        ("2025-11-17T14:20:00+00:00", "2025-11-17T14:20:00Z"),
    ],
)
def test_timestamps_with_an_offset_are_stored_in_utc(timestamp: str, stored: str) -> None:
    assert msgspec.json.decode(encode(decode_reading(body(timestamp=timestamp))))["timestamp"] == stored


def test_optional_fields_may_be_absent_and_stay_absent() -> None:
    reading = decode_reading(body(unit=..., location=...))
    assert reading.unit is None and reading.location is None
    assert b"unit" not in encode(reading)


@pytest.mark.parametrize(
    ("changes", "path", "words"),
    [
        ({"timestamp": "2025-11-17T14:20:00"}, "$.timestamp", "timezone"),
        ({"timestamp": "yesterday"}, "$.timestamp", "datetime"),
        ({"sensor_id": ""}, "$.sensor_id", "length"),
        ({"sensor_id": "a" * 65}, "$.sensor_id", "length"),
        ({"sensor_id": "bad id"}, "$.sensor_id", "regex"),
        ({"type": ""}, "$.type", "length"),
        ({"value": "25.3"}, "$.value", "Expected `float`"),
        ({"value": True}, "$.value", "Expected `float`"),
        ({"unit": "x" * 17}, "$.unit", "length"),
        ({"location": "x" * 65}, "$.location", "length"),
        ({"value": ...}, "$.value", "missing required field `value`"),
        ({"extra": 1}, "$.extra", "unknown field `extra`"),
    ],
)
def test_violations_name_the_field_and_its_path(changes: dict, path: str, words: str) -> None:
    with pytest.raises(ReadingError) as info:
        decode_reading(body(**changes))
    assert info.value.path == path
    assert words in info.value.message


def test_a_value_too_large_for_a_double_is_refused() -> None:
    with pytest.raises(ReadingError) as info:
        decode_reading(body().replace(b"25.3", b"1e400"))
    assert (info.value.path, info.value.message) == ("$.value", "Number out of range")


def test_malformed_json_is_a_decode_error_not_a_validation_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_reading(b'{"sensor_id": ')


def test_a_json_array_batch_reports_the_index_of_the_bad_reading() -> None:
    batch = [SEED_READING, {**SEED_READING, "value": None}]
    with pytest.raises(ReadingError) as info:
        decode_batch(msgspec.json.encode(batch))
    assert info.value.path == "$[1].value"


def test_an_ndjson_batch_skips_blank_lines_and_reports_the_line_index() -> None:
    good = msgspec.json.encode(SEED_READING)
    assert len(decode_batch(good + b"\n\n" + good + b"\n", ndjson=True)) == 2
    with pytest.raises(ReadingError) as info:
        decode_batch(good + b"\n" + body(sensor_id="x y"), ndjson=True)
    assert info.value.path == "$[1].sensor_id"
    with pytest.raises(msgspec.DecodeError, match="line 2"):
        decode_batch(good + b"\n{not json", ndjson=True)


@pytest.mark.parametrize("sensor_id", ["s1", "lab-1.a:b_c", "x" * 64, "", "x" * 65, "a b", "s1\n", "é", "a/b"])
def test_is_sensor_id_is_the_models_rule(sensor_id: str) -> None:
    """The read API checks path parameters with it: it must accept what a reading may carry."""
    try:
        decode_reading(msgspec.json.encode({**SEED_READING, "sensor_id": sensor_id}))
        valid = True
    except ReadingError:
        valid = False
    assert is_sensor_id(sensor_id) is valid
