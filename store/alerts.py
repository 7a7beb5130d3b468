"""The alert lifecycle's persistence: tables and statements, shared by both backends.

Runs inside the store's write transaction on the readings that transaction really inserted
(`pipeline.alerts.advance` is the state machine). Alert timestamps are kept as fixed-width UTC text
(`pipeline.reading.utc_text`), so they sort and compare the same in both databases.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.alerts import AlertEvent, AlertRow, Key, KeyState, Rule, advance, keys, relevant
from pipeline.record import Record
from store import outbox
from store.dialect import SQLITE, Dialect

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
    PRIMARY KEY (rule, sensor_id, type)
);
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
INSERT INTO alert_state (rule, sensor_id, type, last_ts, active_id) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (rule, sensor_id, type) DO UPDATE SET last_ts = excluded.last_ts, active_id = excluded.active_id
"""
_STATE = "SELECT last_ts, active_id FROM alert_state WHERE rule = ? AND sensor_id = ? AND type = ?"
_ROW = f"SELECT {COLUMNS} FROM alerts WHERE id = ?"
_PENDING = f"SELECT {COLUMNS} FROM alerts WHERE pending = 1 ORDER BY raised_at LIMIT 1000"
_MARK = "UPDATE alerts SET pending = 0 WHERE id = ? AND state = ?"

# The read side's statements (store/reads.py).
ACK = "UPDATE alerts SET acked_at = COALESCE(acked_at, ?) WHERE id = ?"
ALERT = f"SELECT {COLUMNS} FROM alerts WHERE id = ?"
LIST = f"SELECT {COLUMNS} FROM alerts WHERE {{where}} ORDER BY raised_at DESC, id DESC LIMIT ?"


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
        self._state, self._row, self._mark = sql(_STATE), sql(_ROW), sql(_MARK)
        self._pending = sql(_PENDING)

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
            cur.executemany(self._upsert_state, [(*k, s.last_ts, s.active_id) for k, s in result.states.items()])
        if self.webhooks and result.changed:
            cur.executemany(self._outbox, outbox.rows(result.changed, self.webhooks, time.time_ns()))
        fresh = {row.id for row in result.changed}
        return [e for e in earlier if e.id not in fresh] + [row.event() for row in result.changed]

    def load(self, cur: Any, wanted: set[Key]) -> tuple[dict[Key, KeyState], dict[str, AlertRow]]:
        """The stored state of these keys and their open alerts (one lookup per key: SQLite
        answers those in microseconds; PostgreSQL overrides this with one query)."""
        states: dict[Key, KeyState] = {}
        active: dict[str, AlertRow] = {}
        for key in wanted:
            found = cur.execute(self._state, key).fetchone()
            if found is None:
                continue
            states[key] = KeyState(found[0], found[1])
            if found[1] is not None:
                row = cur.execute(self._row, (found[1],)).fetchone()
                if row is not None:
                    active[found[1]] = row_of(row)
        return states, active

    def pending(self, cur: Any) -> list[AlertEvent]:
        """Raised or cleared alerts not yet acknowledged by Kafka (their current state)."""
        return [row_of(values).event() for values in cur.execute(self._pending).fetchall()]

    def mark(self, cur: Any, events: Sequence[AlertEvent]) -> None:
        cur.executemany(self._mark, [(e.id, e.state) for e in events])
