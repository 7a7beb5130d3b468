"""Hostile readings: the inputs at the edges of every field, each with the answer it must get.

One list for the tests that send them through the API and every sink
(tests/consumer_pool/sinks/test_hostile.py) and the decoder tests
(tests/pipeline/test_reading.py), so "2xx <=> stored" is checked on the same inputs the
decoder is. Each case has its own (sensor_id, type, timestamp), so what is stored can be
matched to what was sent.
"""

from __future__ import annotations

from typing import NamedTuple


class Hostile(NamedTuple):
    name: str
    reading: dict[str, object]
    status: int  # what POST /sensor must answer: 202 (then every sink stores it) or 422
    path: str | None = None  # the field a 422 names
    # refused by the API's clock-skew guard only (MAX_FUTURE_SKEW_S): the model itself accepts
    # it, so a record of it on the topic is still stored by every sink
    ahead: bool = False


def _r(i: int, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sensor_id": f"hostile-{i:02d}",
        "timestamp": "2025-11-17T14:20:00Z",
        "type": "temperature",
        "value": 1.0,
    }
    return {**base, **fields}


HOSTILE: tuple[Hostile, ...] = (
    # timestamps: the calendar's edges and the time-zone offsets' edges
    Hostile("first instant in UTC", _r(0, timestamp="0001-01-01T00:00:00Z"), 202),
    Hostile("last microsecond in UTC", _r(1, timestamp="9999-12-31T23:59:59.999999Z"), 422, "$.timestamp", True),
    Hostile("year 1 with a negative offset", _r(2, timestamp="0001-01-01T00:00:00-23:59"), 202),
    Hostile("year 9999 with a positive offset", _r(3, timestamp="9999-12-31T23:59:59+23:59"), 422, "$.timestamp", True),
    Hostile("year 0 once in UTC", _r(4, timestamp="0001-01-01T00:00:00+00:01"), 422, "$.timestamp"),
    Hostile("year 10000 once in UTC", _r(5, timestamp="9999-12-31T23:59:59-00:01"), 422, "$.timestamp"),
    Hostile("offset +24:00", _r(6, timestamp="2025-11-17T14:20:00+24:00"), 422, "$.timestamp"),
    Hostile("leap second", _r(7, timestamp="2016-12-31T23:59:60Z"), 422, "$.timestamp"),
    Hostile("nanoseconds (rounded to microseconds)", _r(8, timestamp="2025-11-17T14:20:00.123456789Z"), 202),
    Hostile("lower-case t and z", _r(9, timestamp="2025-11-17t14:20:00z"), 202),
    Hostile("no offset", _r(10, timestamp="2025-11-17T14:20:00"), 422, "$.timestamp"),
    Hostile("29 February of a non-leap year", _r(11, timestamp="2025-02-29T00:00:00Z"), 422, "$.timestamp"),
    # values
    Hostile("value at the upper bound", _r(12, value=1e297), 202),
    Hostile("the same minute: sum stays finite", _r(12, value=1e297, timestamp="2025-11-17T14:20:01Z"), 202),
    Hostile("value at the lower bound", _r(13, value=-1e297), 202),
    Hostile("value just past the bound (a day's sum could overflow)", _r(14, value=1e300), 422, "$.value"),
    Hostile("value past the bound (PostgreSQL sum overflow)", _r(14, value=1e308), 422, "$.value"),
    Hostile("value past the bound, negative", _r(15, value=-1.7e308), 422, "$.value"),
    Hostile("smallest subnormal", _r(16, value=5e-324), 202),
    Hostile("negative zero", _r(17, value=-0.0), 202),
    Hostile("an integer value", _r(18, value=12345678901234567890), 202),
    Hostile("a boolean value", _r(19, value=True), 422, "$.value"),
    Hostile("a numeric string", _r(20, value="1.5"), 422, "$.value"),
    # text: what COPY and SQLite must escape or refuse
    Hostile("NUL in type", _r(21, type="temp\x00"), 422, "$.type"),
    Hostile("NUL in unit", _r(22, unit="\x00"), 422, "$.unit"),
    Hostile("NUL in location", _r(23, location="lab\x00"), 422, "$.location"),
    Hostile("tab, newline, CR, backslash in text", _r(24, type="a\tb\nc\rd\\e", location="\\N"), 202),
    Hostile("COPY's null marker as text", _r(25, unit="\\N", location="\\."), 202),
    Hostile("4-byte characters at the length limit", _r(26, type="\U0001f321" * 32, unit="\u00b0" * 16), 202),
    Hostile("one character too long", _r(27, type="x" * 33), 422, "$.type"),
    Hostile("line and paragraph separators, RTL mark", _r(28, location="\u2028\u2029\u200f\ufeff"), 202),
    Hostile("empty unit and location", _r(29, unit="", location=""), 202),
    Hostile("null unit and location", _r(30, unit=None, location=None), 202),
    Hostile("empty type", _r(31, type=""), 422, "$.type"),
    # sensor ids: the Kafka key, written unescaped into PostgreSQL's COPY
    Hostile("sensor_id ending in a newline", _r(32, sensor_id="hostile-32\n"), 422, "$.sensor_id"),
    Hostile("sensor_id with a space", _r(33, sensor_id="hostile 33"), 422, "$.sensor_id"),
    Hostile("sensor_id of 64 characters", _r(34, sensor_id="h" * 54 + "-34:._-.:_"), 202),
    Hostile("sensor_id of 65 characters", _r(35, sensor_id="h" * 65), 422, "$.sensor_id"),
    Hostile("non-ASCII digit in sensor_id", _r(36, sensor_id="hostile-\u0663\u0666"), 422, "$.sensor_id"),
    # shape
    Hostile("unknown field", _r(37, colour="red"), 422, "$.colour"),
    # seq (docs/contract.md, "Completeness"): a BIGINT in both stores
    Hostile("seq 0", _r(38, seq=0), 202),
    Hostile("seq at the BIGINT limit", _r(39, seq=2**63 - 1), 202),
    Hostile("seq past the BIGINT limit", _r(40, seq=2**63), 422, "$.seq"),
    Hostile("negative seq", _r(41, seq=-1), 422, "$.seq"),
    Hostile("fractional seq", _r(42, seq=1.5), 422, "$.seq"),
    Hostile("seq as a whole float (JSON Schema's integer)", _r(46, seq=7.0), 202),
    Hostile("seq as a string", _r(43, seq="7"), 422, "$.seq"),
    Hostile("seq as a boolean", _r(44, seq=True), 422, "$.seq"),
    Hostile("null seq", _r(45, seq=None), 202),
    # clocks: the future is refused by the API (MAX_FUTURE_SKEW_S), the past is backfill
    Hostile("a clock reset to 2999", _r(47, timestamp="2999-01-01T00:00:00Z"), 422, "$.timestamp", True),
    Hostile("a reading from 1970 (backfill)", _r(48, timestamp="1970-01-01T00:00:00Z"), 202),
)

ACCEPTED = tuple(h for h in HOSTILE if h.status == 202)
