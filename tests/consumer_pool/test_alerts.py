"""Alert rules: parsing, matching, and ids that a replay reproduces exactly."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from consumer_pool.alerts import Rule, alert_id, evaluate, parse_rules
from consumer_pool.errors import RuleError
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


def test_only_matching_readings_raise_alerts_with_deterministic_ids() -> None:
    rules = parse_rules("temperature>40,humidity<10")
    readings = [make(41.0), make(40.0), make(5.0, "humidity"), make(50.0, "humidity")]
    first = evaluate(rules, [Record.of(r, 0) for r in readings])
    again = evaluate(rules, [Record.of(r, 0) for r in readings])

    assert [(a.rule, a.value) for a in first] == [("temperature>40", 41.0), ("humidity<10", 5.0)]
    assert first == again  # a replay raises the very same alerts
    assert first[0].timestamp == "2025-11-17T14:20:00Z"
    assert len({a.id for a in first}) == 2
    other_sensor = make(41.0, sensor="s2")
    assert alert_id(rules[0], other_sensor, "2025-11-17T14:20:00Z") != first[0].id
