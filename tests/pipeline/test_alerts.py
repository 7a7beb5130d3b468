"""Alert rules: parsing, matching, ids that a replay reproduces exactly, the in-memory
lifecycle and the ALERTS_TOPIC codec."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import msgspec
import pytest

from pipeline.alerts import (
    AlertRow,
    MemoryLifecycle,
    Rule,
    RuleError,
    advance,
    alert_id,
    decode_event,
    encode_event,
    parse_rules,
)
from pipeline.reading import Reading
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
