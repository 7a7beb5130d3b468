"""The alert lifecycle's persistence: tables and statements, shared by both backends.

Runs inside the store's write transaction on the readings that transaction really inserted
(`pipeline.alerts.advance` is the state machine). Alert timestamps are kept as fixed-width UTC text
(`pipeline.reading.utc_text`), so they sort and compare the same in both databases.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pipeline.alerts import AlertEvent, AlertRow, Key, KeyState, Latest, Rule, advance, keys, relevant, silences
from pipeline.record import Record
from store import outbox
from store.dialect import SQLITE, Dialect, ts_text

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    sensor_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    raised_value DOUBLE PRECISION NOT NULL,
    threshold DOUBLE PRECISION NOT NULL,
    last_at TEXT NOT NULL,
    last_value DOUBLE PRECISION NOT NULL,
    cleared_at TEXT,
    cleared_value DOUBLE PRECISION,
    acked_at TEXT,
    location TEXT,
    pending INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state, raised_at);
CREATE INDEX IF NOT EXISTS alerts_pending ON alerts (pending) WHERE pending = 1;
CREATE TABLE IF NOT EXISTS alert_state (
    rule TEXT NOT NULL,
    sensor_id TEXT NOT NULL,
    type TEXT NOT NULL,
    last_ts TEXT NOT NULL,
    active_id TEXT,
    since TEXT,
    PRIMARY KEY (rule, sensor_id, type)
);
"""

# An existing database, upgraded in place at setup (after SCHEMA): `since` (for `for` rules) and
# at most one open alert per rule, sensor and type, enforced by a unique partial index. An older
# database could not hold two open alerts of a key, but if it does, the older ones are closed first.
ADD_SINCE_SQLITE = "ALTER TABLE alert_state ADD COLUMN since TEXT"
HAS_SINCE_SQLITE = "SELECT 1 FROM pragma_table_info('alert_state') WHERE name = 'since'"
ADD_SINCE_POSTGRES = "ALTER TABLE alert_state ADD COLUMN IF NOT EXISTS since TEXT"
ONE_OPEN = """
UPDATE alerts SET state = 'cleared', cleared_at = last_at, cleared_value = last_value, pending = 1
WHERE state = 'active' AND EXISTS (
    SELECT 1 FROM alerts b
    WHERE b.rule = alerts.rule AND b.sensor_id = alerts.sensor_id AND b.type = alerts.type AND b.state = 'active'
      AND (b.raised_at > alerts.raised_at OR (b.raised_at = alerts.raised_at AND b.id > alerts.id))
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open ON alerts (rule, sensor_id, type) WHERE state = 'active';
"""

COLUMNS = (
    "id, rule, sensor_id, type, state, raised_at, raised_value, threshold, last_at, last_value,"
    " cleared_at, cleared_value, acked_at, location"
)
FIELDS = [c.strip() for c in COLUMNS.split(",")]

_UPSERT_ROW = f"""
INSERT INTO alerts ({COLUMNS}, pending) VALUES ({", ".join("?" * (len(FIELDS) + 1))})
ON CONFLICT (id) DO UPDATE SET
    state = excluded.state, last_at = excluded.last_at, last_value = excluded.last_value,
    cleared_at = excluded.cleared_at, cleared_value = excluded.cleared_value,
    pending = CASE WHEN alerts.state <> excluded.state THEN 1 ELSE alerts.pending END
"""
_UPSERT_STATE = """
INSERT INTO alert_state (rule, sensor_id, type, last_ts, active_id, since) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (rule, sensor_id, type) DO UPDATE SET
    last_ts = excluded.last_ts, active_id = excluded.active_id, since = excluded.since
"""
_STATE = "SELECT last_ts, active_id, since FROM alert_state WHERE rule = ? AND sensor_id = ? AND type = ?"
_OPEN = f"SELECT {COLUMNS} FROM alerts WHERE rule = ? AND sensor_id = ? AND type = ? AND state = 'active'"
# No-data rules: the sweep's candidates and the open alerts it must not duplicate.
SILENT_CANDIDATES = "SELECT sensor_id, type, ts, value, location FROM latest WHERE type IN ({types}) AND ts <= ?"
_OPEN_KEYS = "SELECT rule, sensor_id, type FROM alerts WHERE state = 'active' AND rule IN ({rules})"
_INSERT_NEW = f"""
INSERT INTO alerts ({COLUMNS}, pending) VALUES ({", ".join("?" * (len(FIELDS) + 1))}) ON CONFLICT DO NOTHING
"""
_PENDING = f"SELECT {COLUMNS} FROM alerts WHERE pending = 1 ORDER BY raised_at LIMIT 1000"
_MARK = "UPDATE alerts SET pending = 0 WHERE id = ? AND state = ?"

# The read side's statements (store/reads.py).
ACK = "UPDATE alerts SET acked_at = COALESCE(acked_at, ?) WHERE id = ?"
ALERT = f"SELECT {COLUMNS} FROM alerts WHERE id = ?"
LIST = f"SELECT {COLUMNS} FROM alerts WHERE {{where}} ORDER BY raised_at DESC, id DESC LIMIT ?"


def upgrade(conn: Any, dialect: Dialect) -> None:
    """Bring an existing database's alert tables to this version, inside the setup's transaction."""
    if dialect.text_times:
        if conn.execute(HAS_SINCE_SQLITE).fetchone() is None:
            conn.execute(ADD_SINCE_SQLITE)
    else:
        conn.execute(ADD_SINCE_POSTGRES)
    for statement in filter(str.strip, ONE_OPEN.split(";")):
        conn.execute(statement)


def row_of(values: Sequence[Any]) -> AlertRow:
    return AlertRow(**dict(zip(FIELDS, values, strict=True)))


class Lifecycle:
    """The lifecycle on one DB-API connection of the given dialect."""

    def __init__(self, rules: tuple[Rule, ...], dialect: Dialect = SQLITE, webhooks: tuple[str, ...] = ()) -> None:
        self.rules = rules
        self.webhooks = webhooks  # ALERT_WEBHOOK_URLS: each raise and clear goes to the outbox
        self._outbox = dialect.sql(outbox.INSERT)
        self.types = {rule.type for rule in rules}
        sql = dialect.sql
        self._upsert_row, self._upsert_state = sql(_UPSERT_ROW), sql(_UPSERT_STATE)
        self._state, self._open, self._mark = sql(_STATE), sql(_OPEN), sql(_MARK)
        self._pending = sql(_PENDING)
        self.dialect = dialect
        self.silent = tuple(rule for rule in rules if rule.silent)
        if self.silent:
            silent_types = sorted({rule.type for rule in self.silent})
            self._candidates = sql(SILENT_CANDIDATES.format(types=", ".join("?" * len(silent_types))))
            if not dialect.text_times:
                # NOTE: a sensor whose `latest` row a write holds is talking: skip it, do not wait.
                self._candidates += " FOR UPDATE SKIP LOCKED"
            self._silent_types = silent_types
            self._open_keys = sql(_OPEN_KEYS.format(rules=", ".join("?" * len(self.silent))))
            self._insert_new = sql(_INSERT_NEW)

    def candidates(self, batch: Iterable[Record]) -> list[Record]:
        """The records some rule is about."""
        return relevant(self.rules, batch)

    def run(self, cur: Any, new: list[Record]) -> list[AlertEvent]:
        """Advance the lifecycle with the transaction's new readings and write what changed.

        Returns the events to publish: every raise and clear of these readings, in order,
        and first the current state of alerts an earlier write could not get published
        (a crash between the write and Kafka's acknowledgement)."""
        earlier = self.pending(cur)
        if not new:
            return earlier
        states, active = self.load(cur, keys(self.rules, new))
        result = advance(self.rules, new, states, active)
        if result.rows:
            cur.executemany(self._upsert_row, [(*(getattr(r, f) for f in FIELDS), 1) for r in result.rows.values()])
        if result.states:
            cur.executemany(
                self._upsert_state, [(*k, s.last_ts, s.active_id, s.since) for k, s in result.states.items()]
            )
        if self.webhooks and result.changed:
            cur.executemany(self._outbox, outbox.rows(result.changed, self.webhooks, time.time_ns()))
        fresh = {row.id for row in result.changed}
        return [e for e in earlier if e.id not in fresh] + [row.event() for row in result.changed]

    def load(self, cur: Any, wanted: set[Key]) -> tuple[dict[Key, KeyState], dict[str, AlertRow]]:
        """The stored state of these keys and their open alerts (lookups per key: SQLite
        answers those in microseconds; PostgreSQL overrides this with one query)."""
        states: dict[Key, KeyState] = {}
        active: dict[str, AlertRow] = {}
        for key in wanted:
            found = cur.execute(self._state, key).fetchone()
            if found is not None:
                states[key] = KeyState(found[0], found[1], found[2])
            row = cur.execute(self._open, key).fetchone()
            if row is not None:
                active[row[0]] = row_of(row)
        return states, active

    def sweep(self, cur: Any, now: datetime) -> list[AlertEvent]:
        """Raise the no-data alerts due at wall-clock `now` (pipeline.alerts.silences) and
        return them to publish. Idempotent: an alert already open for its rule, sensor and type,
        or already raised for the same silence by another worker, is not raised again (the
        unique index and the deterministic id make a concurrent sweep insert nothing)."""
        if not self.silent:
            return []
        shortest = min(rule.silent_s for rule in self.silent)
        bound = self.dialect.bound(now - timedelta(seconds=shortest))
        latest = [
            Latest(sensor_id, type_, ts_text(ts), value, location)
            for sensor_id, type_, ts, value, location in cur.execute(
                self._candidates, (*self._silent_types, bound)
            ).fetchall()
        ]
        if not latest:
            return []
        found = cur.execute(self._open_keys, [str(r) for r in self.silent]).fetchall()
        open_keys: set[Key] = {(rule, sensor_id, type_) for rule, sensor_id, type_ in found}
        raised = [
            row
            for row in silences(self.silent, latest, now, open_keys)
            if cur.execute(self._insert_new, (*(getattr(row, f) for f in FIELDS), 1)).rowcount
        ]
        if self.webhooks and raised:  # the same outbox as run()'s raises (docs/contract.md)
            cur.executemany(self._outbox, outbox.rows(raised, self.webhooks, time.time_ns()))
        return [row.event() for row in raised]

    def pending(self, cur: Any) -> list[AlertEvent]:
        """Raised or cleared alerts not yet acknowledged by Kafka (their current state)."""
        return [row_of(values).event() for values in cur.execute(self._pending).fetchall()]

    def mark(self, cur: Any, events: Sequence[AlertEvent]) -> None:
        cur.executemany(self._mark, [(e.id, e.state) for e in events])
