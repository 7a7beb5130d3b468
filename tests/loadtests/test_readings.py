"""The generated readings are valid for the API's model and unique on the sink's key."""

from __future__ import annotations

import json

import msgspec
import pytest

from loadtests.readings import (
    SENSOR_TYPES,
    Fleet,
    bad_payloads,
    identity,
    new_run_id,
    to_json,
    to_ndjson,
)
from pipeline.reading import decode_batch, decode_reading


def test_readings_decode_with_the_api_model_and_stay_realistic() -> None:
    fleet = Fleet(new_run_id(), size=8, seed=1)

    for raw in fleet.batch(500):
        reading = decode_reading(to_json(raw))
        unit, low, high, _ = SENSOR_TYPES[reading.type]
        assert reading.unit == unit
        assert low <= reading.value <= high
        assert reading.sensor_id.startswith(fleet.run_id + "-")


def test_keys_are_unique_across_fleets_of_one_run_even_in_a_tight_loop() -> None:
    run = new_run_id()
    fleets = [Fleet(run, size=3) for _ in range(20)]

    readings = [r for _ in range(50) for f in fleets for r in f.batch(2)]
    keys = {(r["sensor_id"], r["type"], r["timestamp"]) for r in readings}

    assert len(keys) == len(readings) == 2000
    assert len({r["sensor_id"] for r in readings}) == 60


def test_batches_decode_as_json_array_and_ndjson() -> None:
    batch = Fleet(new_run_id()).batch(20)

    assert len(decode_batch(to_json(batch))) == 20
    assert len(decode_batch(to_ndjson(batch), ndjson=True)) == 20


@pytest.mark.parametrize("bad", bad_payloads(Fleet("lt0", seed=2).reading()), ids=lambda b: b.name)
def test_bad_payloads_are_refused_by_the_model(bad) -> None:
    if bad.content_type != "application/json":
        json.loads(bad.body)  # the body is fine; only the content type is wrong
        return
    with pytest.raises((ValueError, msgspec.DecodeError)):
        decode_reading(bad.body)


def test_identity_ignores_how_the_timestamp_is_spelled() -> None:
    """The client's `.000000Z`, the API's normalised `Z` and an offset name the same reading."""
    same = {
        identity("s-1", "temperature", "2025-11-17T14:20:00.000000Z"),
        identity("s-1", "temperature", "2025-11-17T14:20:00Z"),
        identity("s-1", "temperature", "2025-11-17T15:20:00+01:00"),
    }
    assert len(same) == 1
    assert identity("s-1", "temperature", "2025-11-17T14:20:00.000001Z") not in same
    assert identity("s-1", "humidity", "2025-11-17T14:20:00Z") not in same
