"""Property tests of the decoder (hypothesis): whatever a client sends, the decoder answers
with a Reading that every store can keep, or with DecodeError (400) / ReadingError (422)
naming the field; never anything else (a 500). Timestamps cover the calendar's edges and
every time-zone offset; the hostile cases of harness/hostile.py get the answer they list.

About 2 s in all (HYPOTHESIS_PROFILE=thorough for 20x the examples).
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.hostile import HOSTILE, Hostile
from pipeline.reading import (
    MAX_LISTED,
    SEQ_MAX,
    VALUE_LIMIT,
    BatchError,
    Reading,
    ReadingError,
    decode_batch,
    decode_reading,
    encode,
    utc_text,
)

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

FIELDS = ("sensor_id", "timestamp", "type", "value", "unit", "location", "seq")
SENSOR_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# Offsets as RFC 3339 allows them (within a day, minute resolution), and the calendar's ends.
offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
edges = st.sampled_from([datetime(1, 1, 1), datetime(1, 1, 1, 23, 59, 59), datetime(9999, 12, 31, 23, 59, 59, 999999)])
moments = st.one_of(edges, st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))


def rfc3339(moment: datetime, tz: timezone) -> str:
    offset = tz.utcoffset(None)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{moment.isoformat()}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


texts = st.one_of(
    st.text(max_size=70),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["", "\x00", "a\x00b", "\\N", "\t\n\r", "\u2028", "x" * 64, "x" * 65]),
)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([VALUE_LIMIT, -VALUE_LIMIT, 1.0000000000000001e297, 1e300, 5e-324, -0.0, 1.7976931348623157e308]),
    st.booleans(),
    texts,
    st.none(),
)
seqs = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, SEQ_MAX, SEQ_MAX + 1, -1, 1.0, 1.5, "1", True]),
    st.none(),
)
sensor_ids = st.one_of(st.from_regex(SENSOR_ID, fullmatch=True), texts, st.just("s1\n"))
timestamps = st.one_of(st.builds(rfc3339, moments, offsets), moments.map(lambda m: m.isoformat() + "Z"), texts)


@st.composite
def objects(draw: st.DrawFn) -> dict[str, object]:
    """A JSON object shaped like a reading: each field drawn from valid and hostile values,
    sometimes missing, sometimes joined by an unknown one."""
    strategies = {
        "sensor_id": sensor_ids,
        "timestamp": timestamps,
        "type": texts,
        "value": values,
        "unit": st.one_of(texts, st.none()),
        "location": st.one_of(texts, st.none()),
        "seq": seqs,
    }
    obj = {name: draw(s) for name, s in strategies.items() if draw(st.integers(0, 9)) > 0}
    if draw(st.integers(0, 9)) == 0:
        obj[draw(st.text(min_size=1, max_size=8))] = draw(st.integers())
    return obj


def store_can_keep(r: Reading) -> None:
    """What every store relies on (store/): checked on every accepted reading."""
    assert SENSOR_ID.fullmatch(r.sensor_id)
    assert r.timestamp.tzinfo is timezone.utc and 1 <= r.timestamp.year <= 9999
    assert 1 <= len(r.type) <= 32 and "\x00" not in r.type
    assert r.unit is None or (len(r.unit) <= 16 and "\x00" not in r.unit)
    assert r.location is None or (len(r.location) <= 64 and "\x00" not in r.location)
    assert math.isfinite(r.value) and abs(r.value) <= VALUE_LIMIT
    assert r.seq is None or (type(r.seq) is int and 0 <= r.seq <= SEQ_MAX)  # a BIGINT
    assert decode_reading(encode(r)) == r  # the pool decodes the record the API wrote


# NOTE: deep nesting found a 500 (RecursionError) in the batch's error listing.
nested = st.builds(lambda depth, c: c[0] * depth + c[1] * depth, st.integers(900, 5000), st.sampled_from(["[]", "{}"]))
hostile_json = st.one_of(
    nested.map(str.encode),
    nested.map(lambda n: f"[{n}]".encode()),
    nested.map(lambda n: ('[{"sensor_id":' + n + "}]").encode()),
    st.binary(max_size=300),
)


@given(hostile_json)
def test_any_bytes_get_a_reading_or_a_4xx_error(body: bytes) -> None:
    for decode in (decode_reading, decode_batch, lambda b: decode_batch(b, ndjson=True)):
        try:
            decode(body)
        except (msgspec.DecodeError, ReadingError):
            pass


@given(objects())
def test_every_field_is_accepted_only_when_a_store_can_keep_it(obj: dict[str, object]) -> None:
    try:
        reading = decode_reading(json.dumps(obj).encode())
    except ReadingError as e:
        assert e.path is not None and e.path.startswith("$")
        named = e.path[2:]
        assert named == "" or named in obj or named in FIELDS, (e.path, e.message)
        return
    store_can_keep(reading)
    # NOTE: an integer value is kept as the nearest double (2**53 + 1 becomes 2**53)
    sent = obj["value"]
    assert isinstance(sent, int | float)
    assert reading.sensor_id == obj["sensor_id"] and reading.value == float(sent)
    assert reading.seq == obj.get("seq")


@given(moments, offsets)
def test_every_offset_at_every_instant_is_stored_in_utc_or_refused_by_name(moment: datetime, tz: timezone) -> None:
    aware = moment.replace(tzinfo=tz)
    body = json.dumps({"sensor_id": "s1", "timestamp": rfc3339(moment, tz), "type": "t", "value": 1.0}).encode()
    try:
        utc = aware.astimezone(timezone.utc)
    except OverflowError:
        with pytest.raises(ReadingError) as refused:
            decode_reading(body)
        assert refused.value.path == "$.timestamp"
        return
    reading = decode_reading(body)
    assert reading.timestamp == utc
    assert utc_text(reading.timestamp).endswith("Z")
    store_can_keep(reading)


@given(
    st.lists(
        st.one_of(
            objects(),
            st.sampled_from([{"sensor_id": "ok", "timestamp": "2025-01-01T00:00:00Z", "type": "t", "value": 1}]),
        ),
        max_size=150,
    )
)
def test_a_batch_lists_every_invalid_reading_in_order(items: list[dict[str, object]]) -> None:
    invalid = []
    for index, item in enumerate(items):
        try:
            decode_reading(json.dumps(item).encode())
        except ReadingError as e:
            invalid.append(f"$[{index}]{e.path[1:]}")  # type: ignore[index]
    array = json.dumps(items).encode()
    ndjson = b"\n".join(json.dumps(item).encode() for item in items)
    for body, is_ndjson in ((array, False), (ndjson, True)):
        if not invalid:
            assert len(decode_batch(body, ndjson=is_ndjson)) == len(items)
            continue
        with pytest.raises(BatchError) as refused:
            decode_batch(body, ndjson=is_ndjson)
        assert [e.path for e in refused.value.errors] == invalid[:MAX_LISTED]
        assert refused.value.invalid == len(invalid)
        assert (refused.value.path, refused.value.message) == (invalid[0], refused.value.errors[0].message)


@pytest.mark.parametrize("case", HOSTILE, ids=[h.name for h in HOSTILE])
def test_each_hostile_reading_gets_its_answer(case: Hostile) -> None:
    body = json.dumps(case.reading).encode()
    now = datetime.now(timezone.utc)
    if case.ahead:  # the model keeps it (a record of it is stored); the API's guard refuses it
        store_can_keep(decode_reading(body))
        with pytest.raises(ReadingError) as ahead:
            decode_reading(body, not_after=now)
        assert ahead.value.path == case.path == "$.timestamp"
        return
    if case.status == 202:
        assert decode_reading(body, not_after=now) == decode_reading(body)
        store_can_keep(decode_reading(body))
        return
    with pytest.raises(ReadingError) as refused:
        decode_reading(body)
    assert refused.value.path == case.path


# The clock-skew guard (docs/contract.md, "Clock skew"): `not_after` is the API's clock plus
# MAX_FUTURE_SKEW_S. Whatever the instant and the offset, a reading after it is refused at
# `$.timestamp`, one at or before it (however old: backfill) is accepted; in a batch each
# reading after it is listed with its path, among the other faults, in order.
bounds = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda m: m.replace(tzinfo=timezone.utc)
)


@given(moments, offsets, bounds)
def test_a_reading_after_the_bound_is_refused_and_any_before_it_accepted(
    moment: datetime, tz: timezone, not_after: datetime
) -> None:
    body = json.dumps({"sensor_id": "s1", "timestamp": rfc3339(moment, tz), "type": "t", "value": 1.0}).encode()
    try:
        utc = moment.replace(tzinfo=tz).astimezone(timezone.utc)
    except OverflowError:
        return  # refused by the model whatever the bound (the test above)
    if utc > not_after:
        with pytest.raises(ReadingError) as ahead:
            decode_reading(body, not_after=not_after)
        assert ahead.value.path == "$.timestamp"
    else:
        assert decode_reading(body, not_after=not_after).timestamp == utc


@given(
    st.lists(
        st.one_of(
            objects(),
            st.builds(
                lambda m: {"sensor_id": "ok", "timestamp": m.isoformat() + "Z", "type": "t", "value": 1},
                moments,
            ),
        ),
        max_size=150,
    ),
    bounds,
)
def test_a_batch_lists_readings_ahead_of_the_clock_with_the_other_faults(
    items: list[dict[str, object]], not_after: datetime
) -> None:
    invalid = []
    for index, item in enumerate(items):
        try:
            decode_reading(json.dumps(item).encode(), not_after=not_after)
        except ReadingError as e:
            invalid.append(f"$[{index}]{e.path[1:]}")  # type: ignore[index]
    array = json.dumps(items).encode()
    ndjson = b"\n".join(json.dumps(item).encode() for item in items)
    for body, is_ndjson in ((array, False), (ndjson, True)):
        if not invalid:
            assert len(decode_batch(body, ndjson=is_ndjson, not_after=not_after)) == len(items)
            continue
        with pytest.raises(BatchError) as refused:
            decode_batch(body, ndjson=is_ndjson, not_after=not_after)
        assert [e.path for e in refused.value.errors] == invalid[:MAX_LISTED]
        assert refused.value.invalid == len(invalid)
