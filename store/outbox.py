"""The webhook outbox: one row per alert event and URL, written in the transaction that
changed the alert (docs/contract.md, "Webhook notifications").

A raise or a clear is written by the pool's write (`Lifecycle.run`, store/alerts.py), one
row for each of ALERT_WEBHOOK_URLS; an acknowledgement by the API's ack, one row for each URL
the alert's raise went to (so the API needs no webhook settings). The primary key
(event_id, url) makes a replayed write or a second acknowledgement insert nothing. The pool's
deliverer claims due rows (`CLAIM`: the claim pushes `next_ns` past a lease, under
`FOR UPDATE SKIP LOCKED` on PostgreSQL, inside SQLite's single writer lock there), sends them
and records the outcome. Times are nanoseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple

from pipeline.alerts import AlertRow
from pipeline.webhooks import Event, body, event_id, event_of
from store.dialect import Dialect

DeliveryState = Literal["pending", "sent", "failed"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_deliveries (
    event_id TEXT NOT NULL,
    url TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ns BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ns BIGINT NOT NULL,
    last_error TEXT,
    done_ns BIGINT,
    PRIMARY KEY (event_id, url)
);
CREATE INDEX IF NOT EXISTS alert_deliveries_due ON alert_deliveries (next_ns) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS alert_deliveries_by_alert ON alert_deliveries (alert_id);
"""

INSERT = """
INSERT INTO alert_deliveries (event_id, url, alert_id, event, body, created_ns, next_ns)
VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id, url) DO NOTHING
"""
# The URLs an alert's raise went to (an acknowledgement goes to the same ones).
URLS_OF = "SELECT DISTINCT url FROM alert_deliveries WHERE alert_id = ? AND event = 'raised'"
# The first acknowledgement only (a later one changes nothing and notifies no one).
ACK_FIRST = "UPDATE alerts SET acked_at = ? WHERE id = ? AND acked_at IS NULL"

_CLAIM = """
UPDATE alert_deliveries SET next_ns = ?
WHERE (event_id, url) IN (
    SELECT event_id, url FROM alert_deliveries WHERE state = 'pending' AND next_ns <= ?
    ORDER BY next_ns LIMIT ?{lock}
)
RETURNING event_id, url, body, attempts, created_ns
"""
_BY_KEY = "WHERE event_id = ? AND url = ?"
SENT = f"UPDATE alert_deliveries SET state = 'sent', attempts = attempts + 1, last_error = NULL, done_ns = ? {_BY_KEY}"
RETRY = (
    "UPDATE alert_deliveries SET attempts = attempts + 1, last_error = ?, next_ns = ? WHERE event_id = ? AND url = ?"
)
FAILED = f"UPDATE alert_deliveries SET state = 'failed', attempts = attempts + 1, last_error = ?, done_ns = ? {_BY_KEY}"
# The oldest pending event and the soonest due delivery (one read: an idle deliverer takes no write lock).
PENDING = "SELECT min(created_ns), min(next_ns) FROM alert_deliveries WHERE state = 'pending'"
# The read side: the deliveries of a page of alerts.
OF_ALERTS = "SELECT alert_id, state, attempts, last_error, created_ns FROM alert_deliveries WHERE alert_id IN ({marks})"


def claim_sql(dialect: Dialect) -> str:
    return dialect.sql(_CLAIM.format(lock="" if dialect.text_times else " FOR UPDATE SKIP LOCKED"))


class Delivery(NamedTuple):
    """One claimed row: send `body` to `url` with Idempotency-Key `event_id`."""

    event_id: str
    url: str
    body: bytes
    attempts: int  # before this one
    created_ns: int


def delivery(row: Sequence[Any]) -> Delivery:
    text = row[2]
    return Delivery(row[0], row[1], text.encode() if isinstance(text, str) else bytes(text), int(row[3]), int(row[4]))


def rows(
    changed: Iterable[AlertRow], urls: Sequence[str], now_ns: int, event: Event | None = None
) -> list[tuple[Any, ...]]:
    """INSERT's parameters: one row per event of `changed` (its raise or clear, or `event`) and URL."""
    out = []
    for row in changed:
        kind = event or event_of(row)
        payload = body(kind, row).decode()
        out += [(event_id(row.id, kind), url, row.id, kind, payload, now_ns, now_ns) for url in urls]
    return out


def summaries(found: Iterable[Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """Per alert, its notification state from its delivery rows: `failed` if one delivery gave
    up, else `pending` while one is pending, else `sent`; attempts summed; the last error of
    the newest event that has one."""
    by_alert: dict[str, list[Sequence[Any]]] = {}
    for row in found:
        by_alert.setdefault(row[0], []).append(row)
    out = {}
    for alert_id, deliveries in by_alert.items():
        states = {d[1] for d in deliveries}
        state = "failed" if "failed" in states else "pending" if "pending" in states else "sent"
        errors = [d for d in deliveries if d[3]]
        out[alert_id] = {
            "state": state,
            "deliveries": len(deliveries),
            "pending": sum(1 for d in deliveries if d[1] == "pending"),
            "attempts": sum(int(d[2]) for d in deliveries),
            "last_error": max(errors, key=lambda d: int(d[4]))[3] if errors else None,
        }
    return out
