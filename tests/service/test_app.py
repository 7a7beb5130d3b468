"""The API in process (Falcon's TestClient on create_app): validation, limits, errors, keys,
health and the documents. Nothing here reaches Kafka: the sender refuses to be called, so a
request that would have been produced fails the test. What is produced is tested against
the real broker in test_http_contract.py."""

from __future__ import annotations

import json

import falcon.testing
import pytest

from harness.readings import SEED_READING
from pipeline.reading import Reading
from pipeline.settings import ApiSettings
from service.app import create_app


class Unreachable:
    """A sender for requests that must be refused before anything is produced."""

    async def send(self, readings: list[Reading], received_ns: int) -> None:
        raise AssertionError(f"{len(readings)} readings reached the producer")

    async def ready(self, timeout: float = 2.0) -> str | None:
        return "Kafka unreachable: no broker in this test"


@pytest.fixture
def client() -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(ApiSettings(max_body_bytes=2048, max_batch=3), Unreachable()))


def post(client: falcon.testing.TestClient, path: str, body: object, content_type: str = "application/json", **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.simulate_post(path, body=data, headers={"Content-Type": content_type, **kw})


@pytest.mark.parametrize(
    ("body", "status", "words", "path"),
    [
        (b'{"sensor_id": "s1", ', 400, "malformed JSON", None),
        ({**SEED_READING, "colour": "red"}, 422, "unknown field `colour`", "$.colour"),
        ({**SEED_READING, "value": "hot"}, 422, "Expected `float`", "$.value"),
        ({**SEED_READING, "timestamp": "2025-11-17T14:20:00"}, 422, "timezone", "$.timestamp"),
        ({**SEED_READING, "sensor_id": "a b"}, 422, "matching regex", "$.sensor_id"),
    ],
)
def test_a_bad_reading_is_refused_naming_the_field(client, body: object, status: int, words: str, path) -> None:
    resp = post(client, "/sensor", body)
    assert resp.status_code == status
    assert words in resp.json["error"]
    assert resp.json.get("path") == path


def test_the_content_type_and_size_are_checked_first(client) -> None:
    assert post(client, "/sensor", SEED_READING, "text/plain").status_code == 415
    resp = post(client, "/sensor", b"x" * 4096)
    assert resp.status_code == 413 and "2048 bytes" in resp.json["error"]


def test_a_batch_is_validated_whole_and_bounded(client) -> None:
    bad = [SEED_READING, SEED_READING, {**SEED_READING, "value": None}]
    resp = post(client, "/sensor/batch", bad)
    assert (resp.status_code, resp.json["path"]) == (422, "$[2].value")
    ndjson = "\n".join(json.dumps(r) for r in [SEED_READING, {**SEED_READING, "type": ""}])
    resp = post(client, "/sensor/batch", ndjson, "application/x-ndjson")
    assert (resp.status_code, resp.json["path"]) == (422, "$[1].type")
    assert post(client, "/sensor/batch", []).status_code == 422
    assert post(client, "/sensor/batch", [SEED_READING] * 4).status_code == 413


def test_api_keys_guard_the_posts_only() -> None:
    app = create_app(ApiSettings(api_keys=frozenset({"k1", "k2"})), Unreachable())
    client = falcon.testing.TestClient(app)
    resp = post(client, "/sensor", SEED_READING)
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "X-API-Key"
    assert post(client, "/sensor", SEED_READING, **{"X-API-Key": "nope"}).status_code == 401
    assert post(client, "/sensor", {"bad": 1}, **{"X-API-Key": "k2"}).status_code == 422  # past the key check
    assert client.simulate_get("/healthz").status_code == 200


def test_health_readiness_and_documents(client) -> None:
    assert client.simulate_get("/healthz").json == {"status": "ok"}
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "1"
    assert "Kafka unreachable" in ready.json["error"]
    doc = client.simulate_get("/openapi.json").json
    assert {"/sensor", "/sensor/batch", "/healthz", "/readyz", "/metrics"} <= set(doc["paths"])
    metrics = client.simulate_get("/metrics")
    assert 'sensor_api_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text
