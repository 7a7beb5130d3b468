"""Alert rules with a lifecycle: ALERT_RULES like `greenhouse-*:temperature>40 for 2m clear<38`.

A threshold rule's alert is raised once the readings of a sensor and type have broken it
continuously for the rule's duration of event time (at once without `for`), stays active,
and clears at the first later reading that meets the clear condition (`clear<38`; without
it, the first that does not break the rule). A no-data rule (`temperature silent 5m`) is
raised by a sweep over the latest reading per sensor and type (`silences`) and cleared by the
next reading (docs/contract.md, "Alert rules"). `advance()` is the state machine, fed plain data;
the stores (store/alerts.py) run it inside their write transaction, on the readings that
were really new, so a replayed reading changes nothing; the console sink runs it through
`MemoryLifecycle`. An alert's id is derived from the rule, the sensor, the type and the
raising reading's timestamp, so the same history always gives the same ids.

`AlertEvent` is the ALERTS_TOPIC wire format, a sibling of pipeline/record.py's reading
record: `encode_event` and `decode_event` are its one codec (pool and API both use them).
"""

from __future__ import annotations

import fnmatch
import operator
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from pipeline.reading import Reading, utc_text
from pipeline.record import Record

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"
# [pattern:]type, the pattern a glob over sensor ids (up to the last `:`), the type without `:`.
_HEAD = re.compile(r"(?:([A-Za-z0-9._:*?\[\]!-]{1,64}):)?([A-Za-z0-9_.-]{1,32})(?=[\s<>]|$)")
_COMPARISON = re.compile(rf"(>=|<=|>|<)\s*({_NUMBER})(?=\s|$)")
_CLEAR = re.compile(rf"clear\s*(>=|<=|>|<)\s*({_NUMBER})$")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(s|m|h)")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_NAMESPACE = uuid.UUID("6f1c0a1e-5d0b-4c83-9a57-2f1f0b7b9a10")


class RuleError(ValueError):
    """ALERT_RULES could not be parsed."""


def duration_text(seconds: float) -> str:
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: a threshold (`op`, `threshold`, optional `for_s` and clear condition) or,
    with `silent_s` set, a no-data rule. `pattern` (a glob over sensor ids) None: every sensor."""

    type: str
    op: str = ""
    threshold: float = 0.0
    pattern: str | None = None
    for_s: float = 0.0
    clear_op: str | None = None
    clear: float | None = None
    silent_s: float = 0.0

    def __str__(self) -> str:
        head = f"{self.pattern}:{self.type}" if self.pattern is not None else self.type
        if self.silent_s:
            return f"{head} silent {duration_text(self.silent_s)}"
        text = f"{head}{self.op}{self.threshold:g}"
        if self.for_s:
            text += f" for {duration_text(self.for_s)}"
        if self.clear_op is not None and self.clear is not None:
            text += f" clear{self.clear_op}{self.clear:g}"
        return text

    @property
    def silent(self) -> bool:
        return self.silent_s > 0

    def about(self, sensor_id: str, type_: str) -> bool:
        """Whether this rule watches that sensor and type."""
        return type_ == self.type and (self.pattern is None or fnmatch.fnmatchcase(sensor_id, self.pattern))

    def breaks(self, value: float) -> bool:
        return not self.silent and _OPS[self.op](value, self.threshold)

    def clears(self, value: float) -> bool:
        """Whether a reading of this value clears an open alert (the hysteresis, if any)."""
        if self.clear_op is not None and self.clear is not None:
            return _OPS[self.clear_op](value, self.clear)
        return not self.breaks(value)

    def matches(self, reading: Reading) -> bool:
        return self.about(reading.sensor_id, reading.type) and self.breaks(reading.value)


def _duration(part: str, what: str, text: str) -> float:
    match = _DURATION.fullmatch(text)
    if not match or float(match.group(1)) <= 0:
        raise RuleError(f"ALERT_RULES: {part!r}: bad duration {text!r} after {what!r} (expected e.g. 30s, 2m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_rule(part: str) -> Rule:
    """One rule (docs/contract.md, "Alert rules"); raises RuleError naming the bad part."""
    head = _HEAD.match(part)
    if not head:
        raise RuleError(
            f"ALERT_RULES: cannot parse {part!r}: expected [pattern:]type first (e.g. greenhouse-*:temperature>40)"
        )
    pattern, type_ = head.group(1), head.group(2)
    rest = part[head.end() :].strip()
    if rest.startswith("silent"):
        words = rest.split()
        if words[0] != "silent" or len(words) != 2:
            raise RuleError(f"ALERT_RULES: {part!r}: cannot parse {rest!r} (expected e.g. temperature silent 5m)")
        return Rule(type_, pattern=pattern, silent_s=_duration(part, "silent", words[1]))
    comparison = _COMPARISON.match(rest)
    if not comparison:
        raise RuleError(
            f"ALERT_RULES: cannot parse {part!r}: expected a comparison after {type_!r}, e.g. >40, or 'silent 5m'"
            f" (got {rest!r})"
        )
    op, threshold = comparison.group(1), float(comparison.group(2))
    rest = rest[comparison.end() :].strip()
    for_s, clear_op, clear = 0.0, None, None
    if rest.startswith("for"):
        words = rest.split(None, 2)
        if words[0] != "for" or len(words) < 2:
            raise RuleError(f"ALERT_RULES: {part!r}: cannot parse {rest!r} (expected e.g. for 2m)")
        for_s = _duration(part, "for", words[1])
        rest = words[2].strip() if len(words) > 2 else ""
    if rest:
        match = _CLEAR.match(rest)
        if not match:
            raise RuleError(
                f"ALERT_RULES: {part!r}: cannot parse {rest!r} (expected e.g. clear<38 after the threshold)"
            )
        clear_op, clear = match.group(1), float(match.group(2))
        upward = op in (">", ">=")
        if (clear_op in (">", ">=")) == upward or (clear > threshold if upward else clear < threshold):
            side = f"clear< or clear<= at most {threshold:g}" if upward else f"clear> or clear>= at least {threshold:g}"
            raise RuleError(f"ALERT_RULES: {part!r}: bad hysteresis {rest!r} for {op}{threshold:g} (expected {side})")
    return Rule(type_, op, threshold, pattern=pattern, for_s=for_s, clear_op=clear_op, clear=clear)


def parse_rules(text: str) -> tuple[Rule, ...]:
    """`temperature>40,greenhouse-*:humidity<10 for 2m clear>15` -> rules; raises RuleError naming the bad part."""
    rules = tuple(parse_rule(p) for p in filter(None, (p.strip() for p in text.split(","))))
    seen: set[str] = set()
    for rule in rules:
        if str(rule) in seen:
            raise RuleError(f"ALERT_RULES: {str(rule)!r} is given twice")
        seen.add(str(rule))
    return rules


def _id(rule: Rule, sensor_id: str, type_: str, timestamp: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{rule}|{sensor_id}|{type_}|{timestamp}"))


def alert_id(rule: Rule, reading: Reading, timestamp: str) -> str:
    """Deterministic: the same rule and raising reading always give the same id."""
    return _id(rule, reading.sensor_id, reading.type, timestamp)


def _seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


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
    since: str | None = None  # a `for` rule: when the current run of breaking readings began


@dataclass
class Advance:
    """What one batch changed: key states and alert rows to write, rows raised or cleared."""

    states: dict[Key, KeyState] = field(default_factory=dict)
    rows: dict[str, AlertRow] = field(default_factory=dict)
    changed: list[AlertRow] = field(default_factory=list)


def relevant(rules: tuple[Rule, ...], records: Iterable[Record]) -> list[Record]:
    """The records some rule is about (only those need the lifecycle)."""
    types = {rule.type for rule in rules}
    return [
        r
        for r in records
        if r.reading.type in types and any(rule.about(r.reading.sensor_id, r.reading.type) for rule in rules)
    ]


def keys(rules: tuple[Rule, ...], records: Iterable[Record]) -> set[Key]:
    return {
        (str(rule), r.reading.sensor_id, r.reading.type)
        for r in records
        for rule in rules
        if rule.about(r.reading.sensor_id, r.reading.type)
    }


def _raise(rule: Rule, key: Key, reading: Reading, ts: str) -> AlertRow:
    return AlertRow(
        id=_id(rule, reading.sensor_id, reading.type, ts),
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


def advance(
    rules: tuple[Rule, ...],
    records: Iterable[Record],
    states: dict[Key, KeyState],
    active: dict[str, AlertRow],
) -> Advance:
    """Run the lifecycle over new records (any order; taken by timestamp).

    `states` and `active` are what the store holds for the records' keys (`active`: the open
    alerts, by id); they are not modified. For a threshold rule, a reading not newer than the
    last one seen for its key changes nothing, so late arrivals cannot raise, extend or close
    an alert out of order. A no-data rule keeps no state: its open alert (raised by
    `silences`) is cleared by the first new reading newer than the one the silence followed.
    """
    out = Advance()
    open_by_key: dict[Key, AlertRow] = {
        (r.rule, r.sensor_id, r.type): r for r in active.values() if r.state == "active"
    }
    for record in sorted(records, key=lambda r: r.ts):
        reading, ts = record.reading, record.ts
        for rule in rules:
            if not rule.about(reading.sensor_id, reading.type):
                continue
            key = (str(rule), reading.sensor_id, reading.type)
            row = open_by_key.get(key)
            if rule.silent:
                if row is not None and ts > row.last_at:
                    row = msgspec.structs.replace(row, state="cleared", cleared_at=ts, cleared_value=reading.value)
                    out.rows[row.id] = row
                    out.changed.append(row)
                    del open_by_key[key]
                continue
            state = out.states.get(key) or states.get(key)
            if state is not None and ts <= state.last_ts:
                continue
            if row is not None and rule.clears(reading.value):
                row = msgspec.structs.replace(row, state="cleared", cleared_at=ts, cleared_value=reading.value)
                out.changed.append(row)
                del open_by_key[key]
                out.states[key] = KeyState(ts, None)
            elif row is not None:  # still breaking, or within the hysteresis band
                row = msgspec.structs.replace(row, last_at=ts, last_value=reading.value)
                open_by_key[key] = row
                out.states[key] = KeyState(ts, row.id)
            elif rule.breaks(reading.value):
                since = (state.since if state else None) or ts
                if _seconds_between(since, ts) < rule.for_s:
                    out.states[key] = KeyState(ts, None, since)
                    continue
                row = _raise(rule, key, reading, ts)
                out.changed.append(row)
                open_by_key[key] = row
                out.states[key] = KeyState(ts, row.id)
            else:
                out.states[key] = KeyState(ts, None)
                continue
            out.rows[row.id] = row
    return out


class Latest(msgspec.Struct, array_like=True):
    """A sensor and type's newest stored reading (the store's `latest` table)."""

    sensor_id: str
    type: str
    ts: str
    value: float
    location: str | None = None


def silences(rules: tuple[Rule, ...], latest: Iterable[Latest], now: datetime, open_keys: set[Key]) -> list[AlertRow]:
    """The no-data alerts to raise at wall-clock `now`: for each no-data rule and each sensor
    and type it watches whose newest reading is at least the rule's silence old and that has
    no open alert for it. The id is derived from that newest reading's timestamp, so every
    sweep over the same silence (any worker, any restart) gives the same alert."""
    raised: list[AlertRow] = []
    now_text = utc_text(now)
    for rule in rules:
        if not rule.silent:
            continue
        cutoff = utc_text(now - timedelta(seconds=rule.silent_s))
        for last in latest:
            key = (str(rule), last.sensor_id, last.type)
            if key in open_keys or last.ts > cutoff or not rule.about(last.sensor_id, last.type):
                continue
            raised.append(
                AlertRow(
                    id=_id(rule, last.sensor_id, last.type, last.ts),
                    rule=key[0],
                    sensor_id=last.sensor_id,
                    type=last.type,
                    state="active",
                    raised_at=now_text,
                    raised_value=last.value,
                    threshold=rule.silent_s,
                    last_at=last.ts,
                    last_value=last.value,
                    location=last.location,
                )
            )
    return raised


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
