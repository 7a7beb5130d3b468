"""Threshold alerts: ALERT_RULES like `temperature>40,humidity<10`.

An alert's id is derived from the rule and the reading's key (sensor_id, type, timestamp),
so a replayed record raises the very same alert again (same id, same body), never a new one;
consumers of the alerts topic dedupe on the id (it is also the record key).
"""

from __future__ import annotations

import operator
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgspec

from consumer_pool.errors import RuleError
from pipeline.reading import Reading
from pipeline.record import Record

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_RULE = re.compile(r"^\s*([A-Za-z0-9_.:-]{1,32})\s*(>=|<=|>|<)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$")
_NAMESPACE = uuid.UUID("6f1c0a1e-5d0b-4c83-9a57-2f1f0b7b9a10")


@dataclass(frozen=True, slots=True)
class Rule:
    type: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.type}{self.op}{self.threshold:g}"

    def matches(self, reading: Reading) -> bool:
        return reading.type == self.type and _OPS[self.op](reading.value, self.threshold)


class Alert(msgspec.Struct, omit_defaults=True):
    """The record produced to ALERTS_TOPIC (key = id)."""

    id: str
    rule: str
    sensor_id: str
    type: str
    timestamp: str
    value: float
    threshold: float
    location: str | None = None


def parse_rules(text: str) -> tuple[Rule, ...]:
    """`temperature>40,humidity<10` -> rules; raises RuleError naming the bad part."""
    rules = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _RULE.match(part)
        if not match:
            raise RuleError(f"ALERT_RULES: cannot parse {part!r} (expected e.g. temperature>40)")
        rules.append(Rule(match.group(1), match.group(2), float(match.group(3))))
    return tuple(rules)


def alert_id(rule: Rule, reading: Reading, timestamp: str) -> str:
    """Deterministic: the same rule and reading key always give the same id."""
    return str(uuid.uuid5(_NAMESPACE, f"{rule}|{reading.sensor_id}|{reading.type}|{timestamp}"))


def evaluate(rules: tuple[Rule, ...], records: Iterable[Record]) -> list[Alert]:
    """Alerts raised by the decoded records of a batch."""
    alerts = []
    for record in records:
        reading, timestamp = record.reading, record.ts
        for rule in rules:
            if rule.matches(reading):
                alerts.append(
                    Alert(
                        id=alert_id(rule, reading, timestamp),
                        rule=str(rule),
                        sensor_id=reading.sensor_id,
                        type=reading.type,
                        timestamp=timestamp,
                        value=reading.value,
                        threshold=rule.threshold,
                        location=reading.location,
                    )
                )
    return alerts
