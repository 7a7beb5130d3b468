"""Alert rules: parsing, matching, ids that a replay reproduces exactly, the in-memory
lifecycle and the ALERTS_TOPIC codec."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.alerts import (
    AlertRow,
    Latest,
    MemoryLifecycle,
    Rule,
    RuleError,
    advance,
    alert_id,
    decode_event,
    encode_event,
    parse_rules,
    silences,
)
from pipeline.reading import Reading, utc_text
from pipeline.record import Record


def make(value: float, type_: str = "temperature", sensor: str = "s1") -> Reading:
    return Reading(sensor, datetime(2025, 11, 17, 14, 20, tzinfo=timezone.utc), type_, value)


def test_rules_parse_from_the_environment_syntax() -> None:
    assert parse_rules(" temperature>40, humidity<10,co2>=1000.5 ,") == (
        Rule("temperature", ">", 40.0),
        Rule("humidity", "<", 10.0),
        Rule("co2", ">=", 1000.5),
    )
    assert parse_rules("") == ()


@pytest.mark.parametrize("bad", ["temperature", "temperature>>40", ">40", "temperature>hot"])
def test_bad_rules_are_rejected_with_the_part_named(bad: str) -> None:
    with pytest.raises(RuleError, match="cannot parse"):
        parse_rules(f"humidity<10,{bad}")


def at(second: int, value: float, type_: str = "temperature", sensor: str = "s1") -> Record:
    moment = datetime(2025, 11, 17, 14, 20, second, tzinfo=timezone.utc)
    return Record.of(Reading(sensor, moment, type_, value), 0)


def run(rules: tuple[Rule, ...], batches: list[list[Record]]) -> tuple[list[AlertRow], dict[str, AlertRow]]:
    """The lifecycle over consecutive batches, carrying its state as a store would."""
    states: dict = {}
    rows: dict[str, AlertRow] = {}
    changed: list[AlertRow] = []
    for batch in batches:
        result = advance(rules, batch, states, {k: v for k, v in rows.items() if v.state == "active"})
        states.update(result.states)
        rows.update(result.rows)
        changed += result.changed
    return changed, rows


def test_an_alert_is_raised_kept_open_and_cleared_by_a_later_reading() -> None:
    rules = parse_rules("temperature>40,humidity<10")
    changed, rows = run(rules, [[at(0, 41.0), at(1, 45.0)], [at(2, 30.0), at(3, 5.0, "humidity")]])

    assert [(r.rule, r.state, r.raised_value) for r in changed] == [
        ("temperature>40", "active", 41.0),
        ("temperature>40", "cleared", 41.0),
        ("humidity<10", "active", 5.0),
    ]
    temperature = rows[changed[0].id]
    assert (temperature.state, temperature.last_value, temperature.cleared_value) == ("cleared", 45.0, 30.0)
    assert temperature.raised_at == "2025-11-17T14:20:00.000000Z"
    assert temperature.cleared_at == "2025-11-17T14:20:02.000000Z"
    assert changed[0].event().state == "active" and temperature.event().value == 30.0
    assert changed[0].id == alert_id(rules[0], at(0, 41.0).reading, "2025-11-17T14:20:00.000000Z")


def test_a_new_episode_gets_a_new_id_and_the_same_history_the_same_ids() -> None:
    rules = parse_rules("temperature>40")
    history = [[at(0, 41.0)], [at(1, 20.0)], [at(2, 42.0)]]
    first, _ = run(rules, history)
    again, _ = run(rules, history)

    assert [r.state for r in first] == ["active", "cleared", "active"]
    assert first[0].id != first[2].id
    assert [r.id for r in first] == [r.id for r in again]


def test_readings_in_any_order_within_a_batch_are_taken_by_timestamp() -> None:
    rules = parse_rules("temperature>40")
    changed, _ = run(rules, [[at(2, 20.0), at(0, 41.0), at(1, 43.0)]])
    assert [(r.state, r.raised_value, r.cleared_value) for r in changed] == [
        ("active", 41.0, None),
        ("cleared", 41.0, 20.0),
    ]


def test_a_late_or_repeated_reading_changes_nothing() -> None:
    rules = parse_rules("temperature>40")
    changed, rows = run(rules, [[at(5, 41.0)], [at(1, 10.0), at(5, 41.0)]])  # older, then the same again
    assert [r.state for r in changed] == ["active"]
    assert next(iter(rows.values())).state == "active"


def test_other_sensors_and_types_have_their_own_alerts() -> None:
    rules = parse_rules("temperature>40")
    changed, _ = run(rules, [[at(0, 41.0), at(0, 41.0, sensor="s2"), at(0, 99.0, "humidity")], [at(1, 1.0)]])
    assert [(r.sensor_id, r.state) for r in changed] == [("s1", "active"), ("s2", "active"), ("s1", "cleared")]


def test_the_memory_lifecycle_keeps_open_alerts_across_batches_as_a_store_does() -> None:
    rules = parse_rules("temperature>40")
    memory = MemoryLifecycle(rules)
    raised = memory.run([at(0, 41.0), at(1, 45.0), at(1, 99.0, "humidity")])
    assert [(e.state, e.value, e.timestamp) for e in raised] == [("active", 41.0, "2025-11-17T14:20:00.000000Z")]
    assert memory.run([at(1, 20.0)]) == []  # not newer than the last reading seen: changes nothing
    cleared = memory.run([at(2, 20.0)])
    assert [(e.id, e.state, e.value) for e in cleared] == [(raised[0].id, "cleared", 20.0)]
    stored, _ = run(rules, [[at(0, 41.0), at(1, 45.0)], [at(1, 20.0)], [at(2, 20.0)]])
    assert [r.event() for r in stored] == [*raised, *cleared]  # the same events a store hands back


def test_the_alert_event_codec_round_trips_and_omits_a_missing_location() -> None:
    (row,) = advance(parse_rules("temperature>40"), [at(0, 41.5)], {}, {}).changed
    event = row.event()
    wire = encode_event(event)
    assert json.loads(wire) == {
        "id": event.id,
        "state": "active",
        "rule": "temperature>40",
        "sensor_id": "s1",
        "type": "temperature",
        "timestamp": "2025-11-17T14:20:00.000000Z",
        "value": 41.5,
        "threshold": 40.0,
    }
    assert decode_event(wire) == event
    located = msgspec.structs.replace(event, location="hall")
    assert decode_event(encode_event(located)).location == "hall"


@pytest.mark.parametrize("bad", [b"{}", b"[1]", b'{"id": 1}', b"not json"])
def test_a_record_that_is_not_an_alert_event_is_refused(bad: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        decode_event(bad)


# --- issue 23: sensor patterns, `for`, `clear` hysteresis, `silent` no-data rules ----------


def t(seconds: float, value: float, sensor: str = "s1", type_: str = "temperature") -> Record:
    moment = datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc) + timedelta(seconds=seconds)
    return Record.of(Reading(sensor, moment, type_, value), 0)


def test_the_full_grammar_parses_and_prints_back_canonically() -> None:
    rules = parse_rules(
        "greenhouse-*:temperature>40 for 120s clear<38, humidity<10 clear>=15,co2>=1000 for 1.5h,"
        "site:a:*:temperature silent 300s, temperature silent 5m"
    )
    assert rules == (
        Rule("temperature", ">", 40.0, pattern="greenhouse-*", for_s=120.0, clear_op="<", clear=38.0),
        Rule("humidity", "<", 10.0, clear_op=">=", clear=15.0),
        Rule("co2", ">=", 1000.0, for_s=5400.0),
        Rule("temperature", pattern="site:a:*", silent_s=300.0),
        Rule("temperature", silent_s=300.0),
    )
    assert [str(r) for r in rules] == [
        "greenhouse-*:temperature>40 for 2m clear<38",
        "humidity<10 clear>=15",
        "co2>=1000 for 90m",
        "site:a:*:temperature silent 5m",
        "temperature silent 5m",
    ]
    assert parse_rules(",".join(str(r) for r in rules)) == rules  # the canonical text parses back


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("temperature>40 for 2x", "bad duration '2x' after 'for'"),
        ("temperature>40 for", "cannot parse 'for'"),
        ("temperature>40 for 0s", "bad duration '0s'"),
        ("temperature>40 clear>38", "bad hysteresis 'clear>38'"),
        ("temperature>40 clear<41", "bad hysteresis 'clear<41'"),
        ("humidity<10 clear<5", "bad hysteresis 'clear<5'"),
        ("temperature>40 clear", "cannot parse 'clear'"),
        ("temperature>40 when 2m", "cannot parse 'when 2m'"),
        ("temperature silent", "cannot parse 'silent'"),
        ("temperature silent 5 m", "cannot parse 'silent 5 m'"),
        ("temperature silent 5d", "bad duration '5d' after 'silent'"),
        ("green house:temperature>40", "expected a comparison after 'green'"),
        ("temperature>40,temperature>40", "'temperature>40' is given twice"),
    ],
)
def test_a_bad_rule_is_rejected_with_the_bad_part_named(bad: str, named: str) -> None:
    with pytest.raises(RuleError) as error:
        parse_rules(bad)
    assert named in str(error.value)


def test_a_sensor_pattern_limits_a_rule_to_the_sensors_it_matches() -> None:
    rules = parse_rules("greenhouse-*:temperature>40")
    changed, _ = run(rules, [[t(0, 50, "greenhouse-1"), t(0, 50, "barn-1"), t(0, 50, "greenhouse-x2")]])
    assert [r.sensor_id for r in changed] == ["greenhouse-1", "greenhouse-x2"]
    assert changed[0].rule == "greenhouse-*:temperature>40"


def test_hovering_around_the_threshold_with_hysteresis_raises_once_and_clears_once() -> None:
    rules = parse_rules("temperature>40 clear<38")
    hovering = [40.5, 39.5, 40.2, 39.0, 41.0, 38.5, 40.1, 39.9, 37.9, 39.5, 38.1]
    changed, rows = run(rules, [[t(i * 10, v)] for i, v in enumerate(hovering)])
    assert [(r.state, r.raised_value) for r in changed] == [("active", 40.5), ("cleared", 40.5)]
    (row,) = rows.values()
    assert (row.cleared_value, row.cleared_at, row.last_value) == (37.9, "2025-11-17T14:01:20.000000Z", 39.9)
    # Without hysteresis the same readings flap: a raise and a clear per crossing.
    flapping, _ = run(parse_rules("temperature>40"), [[t(i * 10, v)] for i, v in enumerate(hovering)])
    assert len(flapping) == 8


def test_for_two_minutes_ignores_a_one_minute_spike_and_raises_after_two_minutes() -> None:
    rules = parse_rules("temperature>40 for 2m")
    spike = [t(s, 45.0) for s in range(0, 61, 10)] + [t(70, 30.0)]  # 60 s above, then below
    changed, _ = run(rules, [spike])
    assert changed == []
    sustained = [t(s, 45.0) for s in range(100, 221, 10)]  # 100 s .. 220 s: 120 s above
    changed, _ = run(rules, [spike, sustained[:6], sustained[6:]])
    assert [(r.state, r.raised_at) for r in changed] == [("active", "2025-11-17T14:03:40.000000Z")]
    changed, _ = run(rules, [spike, sustained, [t(230, 10.0)]])
    assert [r.state for r in changed] == ["active", "cleared"]


def test_silences_raise_no_data_alerts_by_wall_clock_once_per_silence() -> None:
    rules = parse_rules("greenhouse-*:temperature silent 5m,temperature>40")
    last = datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc)
    latest = [
        Latest("greenhouse-1", "temperature", utc_text(last), 21.0, "lab"),
        Latest("greenhouse-2", "temperature", utc_text(last + timedelta(minutes=2)), 22.0),
        Latest("barn-1", "temperature", utc_text(last), 23.0),
        Latest("greenhouse-3", "humidity", utc_text(last), 50.0),
    ]
    assert silences(rules, latest, last + timedelta(minutes=4, seconds=59), set()) == []
    now = last + timedelta(minutes=6)
    (row,) = silences(rules, latest, now, set())
    assert (row.rule, row.sensor_id, row.state, row.last_at, row.raised_at, row.threshold, row.location) == (
        "greenhouse-*:temperature silent 5m",
        "greenhouse-1",
        "active",
        "2025-11-17T14:00:00.000000Z",
        "2025-11-17T14:06:00.000000Z",
        300.0,
        "lab",
    )
    later = silences(rules, latest, now + timedelta(minutes=10), set())
    assert [r.id for r in later] == [row.id, later[1].id]  # the same silence, the same id, whenever swept
    assert silences(rules, latest, now, {(row.rule, row.sensor_id, row.type)}) == []  # already open


def test_a_no_data_alert_is_cleared_by_the_next_new_reading_only() -> None:
    rules = parse_rules("temperature silent 5m")
    last = datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc)
    (row,) = silences(rules, [Latest("s1", "temperature", utc_text(last), 21.0)], last + timedelta(minutes=6), set())
    older = advance(rules, [t(-10, 20.0)], {}, {row.id: row})  # a late reading from before the silence
    assert older.changed == []
    result = advance(rules, [t(400, 19.0), t(410, 18.0)], {}, {row.id: row})
    assert [(r.id, r.state, r.cleared_value, r.cleared_at) for r in result.changed] == [
        (row.id, "cleared", 19.0, "2025-11-17T14:06:40.000000Z")
    ]
    assert result.states == {}  # no-data rules keep no per-key state


# --- properties: late and replayed readings change nothing; batching changes nothing ----------

_RULE_SETS = [
    "temperature>40",
    "temperature>40 clear<38",
    "temperature>40 for 30s",
    "temperature>40 for 30s clear<38",
    "s1:temperature<10 for 15s clear>=12,temperature>=45",
]
_values = st.sampled_from([5.0, 9.0, 10.0, 11.0, 12.0, 37.0, 38.0, 39.0, 40.0, 41.0, 45.0, 50.0])
_history = st.lists(st.tuples(st.integers(0, 1), st.floats(1, 20), _values), min_size=1, max_size=40)


def _timeline(steps: list[tuple[int, float, float]]) -> list[Record]:
    """Readings of two sensors at strictly increasing times (so each is new)."""
    out, now = [], 0.0
    for sensor, gap, value in steps:
        now += gap
        out.append(t(now, value, f"s{sensor}"))
    return out


def _summary(changed: list[AlertRow]) -> list[tuple[str, str, str, str]]:
    return [(r.id, r.state, r.raised_at, r.cleared_at or "") for r in changed]


@settings(max_examples=200, deadline=None)
@given(rules=st.sampled_from(_RULE_SETS), steps=_history, size=st.integers(1, 6), data=st.data())
def test_batching_late_and_replayed_readings_change_nothing(
    rules: str, steps: list[tuple[int, float, float]], size: int, data: st.DataObject
) -> None:
    parsed = parse_rules(rules)
    timeline = _timeline(steps)
    reference, reference_rows = run(parsed, [timeline])
    # The same readings cut into batches of `size`, each batch shuffled and carrying readings
    # of earlier batches again: replays (as a redelivery does) and late readings older than
    # what their keys have seen.
    batches = []
    for lo in range(0, len(timeline), size):
        earlier = timeline[:lo]
        extra = data.draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=5)) if earlier else []
        batches.append(data.draw(st.permutations(timeline[lo : lo + size] + extra)))
    changed, rows = run(parsed, batches)
    assert _summary(changed) == _summary(reference)
    assert rows == reference_rows
    # At most one open alert per rule, sensor and type, whatever the history.
    open_keys = [(r.rule, r.sensor_id, r.type) for r in rows.values() if r.state == "active"]
    assert len(open_keys) == len(set(open_keys))
