"""The HTTP contract over real gunicorn and a real broker: statuses, messages, batches,
the Kafka record format, API keys, and metrics aggregated over workers."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import msgspec
import pytest
import requests
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

from harness.kafka import headers_of, payload, read_at, read_topic, watermarks
from harness.prometheus import scrape, series
from harness.readings import SEED_READING
from tests.conftest import ApiFactory

JSON = {"Content-Type": "application/json"}


def post(url: str, data: bytes | str, content_type: str = "application/json", **headers: str) -> requests.Response:
    return requests.post(url, data=data, headers={"Content-Type": content_type, **headers}, timeout=15)


def topic_size(broker: str, topic: str) -> int:
    return sum(high - low for low, high in watermarks(broker, topic).values())


@pytest.mark.parametrize(
    ("data", "content_type", "status", "error_words", "path"),
    [
        (b'{"sensor_id": "s1", ', "application/json", 400, "malformed JSON", None),
        (b"", "application/json", 400, "malformed JSON", None),
        (json.dumps({**SEED_READING, "colour": "red"}), "application/json", 422, "unknown field `colour`", "$.colour"),
        (
            json.dumps({k: v for k, v in SEED_READING.items() if k != "type"}),
            "application/json",
            422,
            "missing required field `type`",
            "$.type",
        ),
        (
            json.dumps({**SEED_READING, "timestamp": "2025-11-17 14:20"}),
            "application/json",
            422,
            "datetime",
            "$.timestamp",
        ),
        (json.dumps({**SEED_READING, "value": "hot"}), "application/json", 422, "Expected `float`", "$.value"),
        (json.dumps([SEED_READING]), "application/json", 422, "Expected `object`, got `array`", "$"),
        (json.dumps(SEED_READING), "text/plain", 415, "Content-Type must be application/json", None),
        (json.dumps(SEED_READING), "", 415, "Content-Type must be application/json", None),
    ],
)
def test_single_reading_errors_have_the_status_and_name_the_field(
    api: str, data: bytes | str, content_type: str, status: int, error_words: str, path: str | None
) -> None:
    resp = post(f"{api}/sensor", data, content_type)

    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert error_words in body["error"]
    assert body.get("path") == path


def test_size_limits_answer_413(start_api: ApiFactory) -> None:
    base, _ = start_api(MAX_BODY_BYTES="2000", MAX_BATCH="3")

    big = post(f"{base}/sensor", json.dumps({**SEED_READING, "location": "x" * 3000}))
    too_many = post(f"{base}/sensor/batch", json.dumps([SEED_READING] * 4))

    assert big.status_code == 413 and "larger than 2000 bytes" in big.json()["error"]
    assert too_many.status_code == 413 and "at most 3" in too_many.json()["error"]
    assert post(f"{base}/sensor/batch", json.dumps([SEED_READING] * 3)).status_code == 202


def test_garbage_never_causes_a_500(api: str) -> None:
    bodies = [b"\xff\xfe\x00", b"null", b"[]", b"{}", b"1e999999", b'{"value": NaN}', b"[" * 5000, b'"' + b"a" * 10000]
    for path in ("/sensor", "/sensor/batch"):
        for body in bodies:
            resp = post(f"{api}{path}", body)
            assert 400 <= resp.status_code < 500, (path, body[:20], resp.status_code, resp.text)
            assert "error" in resp.json()
    assert requests.get(f"{api}/nowhere", timeout=5).status_code == 404


def test_the_record_has_the_designed_key_value_timestamp_and_headers(api: str, kafka_broker: str, topic: str) -> None:
    reading = {**SEED_READING, "timestamp": "2025-11-17T16:20:00.5+02:00"}
    before_ms = time.time() * 1000

    resp = post(f"{api}/sensor", json.dumps(reading))
    after_ms = time.time() * 1000

    assert resp.status_code == 202
    record = read_at(kafka_broker, topic, resp.json()["partition"], resp.json()["offset"])
    assert record.key() == b"sensor01"
    assert record.value() == msgspec.json.encode({**SEED_READING, "timestamp": "2025-11-17T14:20:00.500000Z"})
    kind, ts_ms = record.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME  # the broker's append time (pipeline/topics.py)
    assert before_ms - 1 <= ts_ms <= after_ms + 1
    headers = headers_of(record)
    assert headers["content-type"] == b"application/json"
    received_ms = int(headers["ingested_at_ns"]) / 1_000_000
    assert before_ms - 1 <= received_ms <= ts_ms + 1  # received, then appended


def test_batches_are_all_or_nothing(api: str, kafka_broker: str, topic: str) -> None:
    good = [{**SEED_READING, "sensor_id": f"s{i}"} for i in range(50)]
    bad = [*good[:49], {**good[49], "value": None}]

    rejected = post(f"{api}/sensor/batch", json.dumps(bad))
    assert rejected.status_code == 422
    assert rejected.json()["path"] == "$[49].value"
    assert post(f"{api}/sensor/batch", b"").status_code == 400
    assert post(f"{api}/sensor/batch", b"[]").status_code == 422
    assert topic_size(kafka_broker, topic) == 0

    as_array = post(f"{api}/sensor/batch", json.dumps(good))
    ndjson = "\n".join(json.dumps({**r, "type": "humidity"}) for r in good) + "\n"
    as_ndjson = post(f"{api}/sensor/batch", ndjson, "application/x-ndjson")

    assert as_array.json() == {"accepted": 50} and as_array.status_code == 202
    assert as_ndjson.json() == {"accepted": 50} and as_ndjson.status_code == 202
    records = read_topic(kafka_broker, topic, expected=100)
    assert len(records) == 100
    assert {(r.key(), json.loads(payload(r))["type"]) for r in records} == {
        (f"s{i}".encode(), t) for i in range(50) for t in ("temperature", "humidity")
    }


def test_enqueued_mode_answers_queued_and_the_reading_arrives(
    start_api: ApiFactory, kafka_broker: str, topic: str
) -> None:
    base, _ = start_api(ACK_MODE="enqueued")

    resp = post(f"{base}/sensor", json.dumps(SEED_READING))

    assert (resp.status_code, resp.json()) == (202, {"status": "queued"})
    assert len(read_topic(kafka_broker, topic, expected=1)) == 1


def test_api_keys_guard_posts_but_not_health_or_metrics(start_api: ApiFactory) -> None:
    base, _ = start_api(API_KEYS="alpha,beta")

    missing = post(f"{base}/sensor", json.dumps(SEED_READING))
    wrong = post(f"{base}/sensor", json.dumps(SEED_READING), **{"X-API-Key": "gamma"})
    right = post(f"{base}/sensor", json.dumps(SEED_READING), **{"X-API-Key": "beta"})

    assert missing.status_code == 401 and "API key" in missing.json()["error"]
    assert wrong.status_code == 401
    assert right.status_code == 202
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert requests.get(f"{base}{path}", timeout=5).status_code == 200


def test_openapi_document_describes_every_route(api: str) -> None:
    doc = requests.get(f"{api}/openapi.json", timeout=5).json()
    assert doc["openapi"].startswith("3.1")
    ingest = {"/sensor", "/sensor/batch", "/healthz", "/readyz", "/metrics", "/openapi.json"}
    read = {"/sensors", "/sensors/{sensor_id}/readings", "/sensors/{sensor_id}/aggregates", "/alerts"}
    read |= {"/sensors/{sensor_id}/completeness", "/alerts/{alert_id}/ack", "/stream", "/pipeline"}
    assert set(doc["paths"]) == ingest | read  # the dashboard's HTML and files are not API
    reading = doc["components"]["schemas"]["Reading"]
    assert set(reading["required"]) == {"sensor_id", "timestamp", "type", "value"}
    assert reading["additionalProperties"] is False


def test_one_scrape_covers_every_worker(start_api: ApiFactory) -> None:
    base, _ = start_api(API_WORKERS="2", API_THREADS="4")

    def send(i: int) -> int:
        # A new connection per request, so the kernel spreads them over both workers.
        return requests.post(f"{base}/sensor", json={**SEED_READING, "sensor_id": f"w{i}"}, timeout=15).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(200)))
    assert statuses == [202] * 200
    requests.post(f"{base}/sensor", data=b"{", headers=JSON, timeout=5)

    metrics = scrape(f"{base}/metrics", timeout=5)

    served = {labels["pid"]: value for labels, value in series(metrics, "sensor_api_worker_requests_served")}
    assert len([v for v in served.values() if v > 0]) >= 2, served
    posts = {
        labels["status"]: v
        for labels, v in series(metrics, "sensor_api_requests_total")
        if labels["route"] == "/sensor"
    }
    assert posts == {"202": 200.0, "400": 1.0}
    readings = {labels["result"]: v for labels, v in series(metrics, "sensor_api_readings_total")}
    assert readings == {"accepted": 200.0, "rejected": 1.0, "failed": 0.0}
    buckets = {labels["le"]: v for labels, v in series(metrics, "sensor_kafka_delivery_duration_seconds_bucket")}
    assert buckets["+Inf"] == 200.0
    assert series(metrics, "sensor_kafka_queue_depth")[0][1] == 0.0
