"""The first end-to-end path: readings POSTed over HTTP reach Kafka unchanged."""

from __future__ import annotations

import json

import msgspec
import requests

from harness.kafka import payload, read_at, read_topic
from harness.readings import SEED_READING


def test_seed_reading_is_acknowledged_and_stored_in_kafka(api: str, kafka_broker: str, topic: str) -> None:
    resp = requests.post(f"{api}/sensor", json=SEED_READING, timeout=10)

    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "accepted"
    record = read_at(kafka_broker, topic, body["partition"], body["offset"])
    assert json.loads(payload(record)) == SEED_READING
    assert record.key() == b"sensor01"


def test_every_posted_reading_is_consumed_with_the_same_content(api: str, kafka_broker: str, topic: str) -> None:
    sent = [
        {
            **SEED_READING,
            "sensor_id": f"sensor{i % 7:02d}",
            "value": round(20 + i * 0.1, 2),
            "timestamp": f"2025-11-17T14:{i // 60:02d}:{i % 60:02d}Z",
        }
        for i in range(120)
    ]
    with requests.Session() as session:
        for reading in sent:
            assert session.post(f"{api}/sensor", json=reading, timeout=10).status_code == 202

    records = read_topic(kafka_broker, topic, expected=len(sent))

    assert len(records) == len(sent)
    received = sorted(
        (msgspec.json.decode(payload(r)) for r in records), key=lambda r: (r["timestamp"], r["sensor_id"])
    )
    assert received == sorted(sent, key=lambda r: (r["timestamp"], r["sensor_id"]))
    assert all((r.key() or b"").decode() == json.loads(payload(r))["sensor_id"] for r in records)
