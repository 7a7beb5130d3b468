"""Webhook notifications of alerts: the body, the event's id and the signature
(docs/contract.md, "Webhook notifications").

Every raise, clear and acknowledgement of an alert is one event, sent to each of
ALERT_WEBHOOK_URLS as JSON `{"event": "raised"|"cleared"|"acked", "id": <event id>,
"alert": {...}}` (the alert as `GET /alerts` returns it), with the headers
`X-Signature-256: sha256=<hex HMAC-SHA256 of the body under ALERT_WEBHOOK_SECRET>` and
`Idempotency-Key: <event id>`. An event's id is derived from the alert's id and the event's
kind, so a replayed write or a repeated acknowledgement gives the same id (and the store
keeps one outbox row per id and URL). The store writes the body (store/outbox.py), the pool
signs and sends it (consumer_pool/notifier.py); both use this module.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any, Literal

import msgspec

from pipeline.alerts import AlertRow

Event = Literal["raised", "cleared", "acked"]
EVENTS: tuple[Event, ...] = ("raised", "cleared", "acked")
SIGNATURE_HEADER = "X-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_NAMESPACE = uuid.UUID("0b6f9d5e-2f8a-4c1e-9d0b-8a7f3e2c1d40")
_ENCODER = msgspec.json.Encoder()


def event_id(alert_id: str, event: Event) -> str:
    """Deterministic: one id per alert and kind of event (the Idempotency-Key)."""
    return str(uuid.uuid5(_NAMESPACE, f"{alert_id}|{event}"))


def event_of(row: AlertRow) -> Event:
    """The event a raise or a clear of `row` is."""
    return "cleared" if row.state == "cleared" else "raised"


def body(event: Event, row: AlertRow) -> bytes:
    """The JSON sent for `event` of this alert (what is signed, byte for byte)."""
    alert: dict[str, Any] = msgspec.to_builtins(row)
    return _ENCODER.encode({"event": event, "id": event_id(row.id, event), "alert": alert})


def signature(secret: str, payload: bytes) -> str:
    """The X-Signature-256 header's value: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def verify(secret: str, payload: bytes, header: str) -> bool:
    """Whether `header` is the signature of `payload` under `secret` (constant-time)."""
    return hmac.compare_digest(signature(secret, payload), header)
