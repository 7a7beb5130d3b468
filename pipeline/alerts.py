"""Threshold alerts with a lifecycle: ALERT_RULES like `temperature>40,humidity<10`.

An alert is raised by the first reading of a sensor and type that breaks a rule, stays
active while later readings break it, and clears itself at the first later reading that
does not (docs/contract.md, "Alerts"). `advance()` is that state machine, fed plain data;
the stores (store/alerts.py) run it inside their write transaction, on the readings that
were really new, so a replayed reading changes nothing; the console sink runs it through
`MemoryLifecycle`. An alert's id is derived from the rule, the sensor, the type and the
raising reading's timestamp, so the same history always gives the same ids.

`AlertEvent` is the ALERTS_TOPIC wire format, a sibling of pipeline/record.py's reading
record: `encode_event` and `decode_event` are its one codec (pool and API both use them).
"""

from __future__ import annotations

import operator
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import msgspec

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


class RuleError(ValueError):
    """ALERT_RULES could not be parsed."""


@dataclass(frozen=True, slots=True)
class Rule:
    type: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.type}{self.op}{self.threshold:g}"

    def matches(self, reading: Reading) -> bool:
        return reading.type == self.type and _OPS[self.op](reading.value, self.threshold)


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
    """Deterministic: the same rule and raising reading always give the same id."""
    return str(uuid.uuid5(_NAMESPACE, f"{rule}|{reading.sensor_id}|{reading.type}|{timestamp}"))


State = Literal["active", "cleared"]
Key = tuple[str, str, str]  # (rule, sensor_id, type)


class AlertRow(msgspec.Struct, kw_only=True):
    """An alert as the stores keep it (table `alerts`) and the read API returns it."""

    id: str
    rule: str
    sensor_id: str
    type: str
    state: State
    raised_at: str
    raised_value: float
    threshold: float
    last_at: str
    last_value: float
    cleared_at: str | None = None
    cleared_value: float | None = None
    acked_at: str | None = None
    location: str | None = None

    def event(self) -> AlertEvent:
        """The ALERTS_TOPIC record of this alert's current state."""
        cleared = self.state == "cleared"
        return AlertEvent(
            id=self.id,
            state=self.state,
            rule=self.rule,
            sensor_id=self.sensor_id,
            type=self.type,
            timestamp=(self.cleared_at or self.last_at) if cleared else self.raised_at,
            value=(self.cleared_value if cleared and self.cleared_value is not None else self.raised_value),
            threshold=self.threshold,
            location=self.location,
        )


class AlertEvent(msgspec.Struct, omit_defaults=True):
    """The record produced to ALERTS_TOPIC when an alert is raised or cleared (key = id)."""

    id: str
    state: State
    rule: str
    sensor_id: str
    type: str
    timestamp: str
    value: float
    threshold: float
    location: str | None = None


_EVENT_ENCODER = msgspec.json.Encoder()
_EVENT_DECODER = msgspec.json.Decoder(AlertEvent)


def encode_event(event: AlertEvent) -> bytes:
    """The ALERTS_TOPIC record value of an event."""
    return _EVENT_ENCODER.encode(event)


def decode_event(value: bytes) -> AlertEvent:
    """An ALERTS_TOPIC record value; raises msgspec.DecodeError or ValidationError when it is not one."""
    return _EVENT_DECODER.decode(value)


@dataclass(slots=True)
class KeyState:
    """What the lifecycle remembers per (rule, sensor, type): the newest reading seen and
    the alert it keeps open, if any (table `alert_state`)."""

    last_ts: str
    active_id: str | None = None


@dataclass
class Advance:
    """What one batch changed: key states and alert rows to write, rows raised or cleared."""

    states: dict[Key, KeyState] = field(default_factory=dict)
    rows: dict[str, AlertRow] = field(default_factory=dict)
    changed: list[AlertRow] = field(default_factory=list)


def relevant(rules: tuple[Rule, ...], records: Iterable[Record]) -> list[Record]:
    """The records some rule is about (only those need the lifecycle)."""
    types = {rule.type for rule in rules}
    return [r for r in records if r.reading.type in types]


def keys(rules: tuple[Rule, ...], records: Iterable[Record]) -> set[Key]:
    return {
        (str(rule), r.reading.sensor_id, r.reading.type)
        for r in records
        for rule in rules
        if rule.type == r.reading.type
    }


def advance(
    rules: tuple[Rule, ...],
    records: Iterable[Record],
    states: dict[Key, KeyState],
    active: dict[str, AlertRow],
) -> Advance:
    """Run the lifecycle over new records (any order; taken by timestamp).

    `states` and `active` are what the store holds for the records' keys; they are not
    modified. A reading not newer than the last one seen for its key changes nothing, so
    late arrivals cannot reopen or close an alert out of order.
    """
    out = Advance()
    for record in sorted(records, key=lambda r: r.ts):
        reading, ts = record.reading, record.ts
        for rule in rules:
            if rule.type != reading.type:
                continue
            key = (str(rule), reading.sensor_id, reading.type)
            state = out.states.get(key) or states.get(key)
            if state is not None and ts <= state.last_ts:
                continue
            breaks = rule.matches(reading)
            open_id = state.active_id if state else None
            row = (out.rows.get(open_id) or active.get(open_id)) if open_id else None
            if row is not None and breaks:
                row = msgspec.structs.replace(row, last_at=ts, last_value=reading.value)
                out.rows[row.id] = row
                out.states[key] = KeyState(ts, row.id)
            elif row is not None:
                row = msgspec.structs.replace(row, state="cleared", cleared_at=ts, cleared_value=reading.value)
                out.rows[row.id] = row
                out.changed.append(row)
                out.states[key] = KeyState(ts, None)
            elif breaks:
                row = AlertRow(
                    id=alert_id(rule, reading, ts),
                    rule=key[0],
                    sensor_id=reading.sensor_id,
                    type=reading.type,
                    state="active",
                    raised_at=ts,
                    raised_value=reading.value,
                    threshold=rule.threshold,
                    last_at=ts,
                    last_value=reading.value,
                    location=reading.location,
                )
                out.rows[row.id] = row
                out.changed.append(row)
                out.states[key] = KeyState(ts, row.id)
            else:
                out.states[key] = KeyState(ts, None)
    return out


class MemoryLifecycle:
    """The lifecycle with its state held in this process, for a sink without a store.

    NOTE: a restart or a rebalance forgets which alerts are open (docs/contract.md, "Alerts").
    """

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self._states: dict[Key, KeyState] = {}
        self._active: dict[str, AlertRow] = {}

    def run(self, records: Iterable[Record]) -> list[AlertEvent]:
        """Advance with these records and keep the result; returns the raises and clears."""
        result = advance(self.rules, relevant(self.rules, records), self._states, self._active)
        self._states.update(result.states)
        for row in result.rows.values():
            if row.state == "active":
                self._active[row.id] = row
            else:
                self._active.pop(row.id, None)
        return [row.event() for row in result.changed]
