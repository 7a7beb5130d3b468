"""The webhook wire format (pipeline/webhooks.py) and its settings: the body, the event id,
the signature against a value computed independently, and the configuration errors."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from pipeline.alerts import AlertRow
from pipeline.settings import ConfigError, Settings
from pipeline.webhooks import body, event_id, event_of, signature, verify

ROW = AlertRow(
    id="a1",
    rule="temperature>40",
    sensor_id="s1",
    type="temperature",
    state="active",
    raised_at="2025-11-17T14:00:00.000000Z",
    raised_value=41.0,
    threshold=40.0,
    last_at="2025-11-17T14:00:00.000000Z",
    last_value=41.0,
)


def test_the_body_names_the_event_its_id_and_the_alert() -> None:
    got = json.loads(body("raised", ROW))
    assert got["event"] == "raised" and got["id"] == event_id("a1", "raised")
    assert got["alert"]["id"] == "a1" and got["alert"]["acked_at"] is None and got["alert"]["threshold"] == 40.0


def test_event_ids_are_one_per_alert_and_event() -> None:
    ids = {event_id(a, e) for a in ("a1", "a2") for e in ("raised", "cleared", "acked")}
    assert len(ids) == 6
    assert event_id("a1", "acked") == event_id("a1", "acked")
    assert event_of(ROW) == "raised"


def test_the_signature_is_the_hex_hmac_sha256_of_the_body() -> None:
    payload = body("cleared", ROW)
    expected = "sha256=" + hmac.new(b"k", payload, hashlib.sha256).hexdigest()
    assert signature("k", payload) == expected
    assert verify("k", payload, expected)
    assert not verify("other", payload, expected)
    assert not verify("k", payload + b" ", expected)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALERT_WEBHOOK_URLS": "http://x/hook"}, "ALERT_WEBHOOK_SECRET must be set"),
        ({"ALERT_WEBHOOK_URLS": "ftp://x", "ALERT_WEBHOOK_SECRET": "s"}, "not an http:// or https:// URL"),
        ({"ALERT_WEBHOOK_BACKOFF_CAP_S": "0"}, "ALERT_WEBHOOK_BACKOFF_CAP_S"),
    ],
)
def test_bad_webhook_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env, dotenv=False)


def test_webhook_settings() -> None:
    pool = Settings.from_env(
        {"ALERT_WEBHOOK_URLS": "https://b/h, http://a/h", "ALERT_WEBHOOK_SECRET": "s"}, dotenv=False
    ).pool
    assert pool.webhooks() == ("http://a/h", "https://b/h")
    assert (pool.alert_webhook_timeout_ms, pool.alert_webhook_backoff_cap_s) == (5000, 30.0)
