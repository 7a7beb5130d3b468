"""Ingest hardening in process (Falcon's TestClient on create_app): compressed bodies, device
tokens, rate limits, rejection metrics. Nothing here reaches Kafka: the sender refuses to be
called, so a request that would have been produced fails the test (what is produced is
tested over real HTTP and a real broker in test_ingest_hardening_http.py)."""

from __future__ import annotations

import gzip
import json
import logging
import os
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import falcon.testing
import pytest

from harness.readings import SEED_READING
from pipeline.settings import ApiSettings
from service.app import create_app
from service.ingest.device_tokens import Grant, TokenFileError, parse
from service.ingest.encoding import zstd
from service.ingest.rate_limit import TokenBuckets
from tests.service.test_app import Unreachable

BAD = {**SEED_READING, "value": "hot"}  # decodes to a 422 naming $.value: proof the body was read


def client(**settings: object) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(ApiSettings(**settings), Unreachable()))  # type: ignore[arg-type]


def post(c: falcon.testing.TestClient, path: str, body: bytes, **headers: str) -> falcon.testing.Result:
    return c.simulate_post(path, body=body, headers={"Content-Type": "application/json", **headers})


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "zstd": zstd.compress,
}


@pytest.mark.parametrize("coding", [*COMPRESS, "GZIP", "x-raw-deflate"])
def test_compressed_bodies_are_decompressed_before_decoding(coding: str) -> None:
    c = client()
    if coding == "x-raw-deflate":  # a raw deflate stream, as some clients send for `deflate`
        raw = zlib.compressobj(wbits=-15)
        body, header = raw.compress(json.dumps(BAD).encode()) + raw.flush(), "deflate"
    else:
        body, header = COMPRESS[coding.lower()](json.dumps(BAD).encode()), coding
    resp = post(c, "/sensor", body, **{"Content-Encoding": header})
    assert (resp.status_code, resp.json.get("path")) == (422, "$.value"), resp.text
    batch = COMPRESS["gzip"](json.dumps([SEED_READING, BAD, BAD]).encode())
    resp = post(c, "/sensor/batch", batch, **{"Content-Encoding": "gzip"})
    assert [e["path"] for e in resp.json["errors"]] == ["$[1].value", "$[2].value"]


@pytest.mark.parametrize("coding", ["br", "compress", "gzip, gzip", "x-gzip"])
def test_an_unknown_encoding_gets_415_naming_the_supported_ones(coding: str) -> None:
    resp = post(client(), "/sensor", json.dumps(SEED_READING).encode(), **{"Content-Encoding": coding})
    assert resp.status_code == 415
    assert "gzip, deflate, zstd, identity" in resp.json["error"]
    assert resp.headers["Accept-Encoding"] == "gzip, deflate, zstd, identity"


@pytest.mark.parametrize("coding", list(COMPRESS))
def test_a_small_body_that_inflates_past_the_limit_gets_413_without_being_inflated(coding: str) -> None:
    bomb = COMPRESS[coding](b"[" + b" " * (64 * 2**20) + b"]")  # 64 MiB of JSON whitespace
    assert len(bomb) < 2**20
    c = client(max_body_bytes=2**20)
    tracemalloc.start()
    try:
        resp = post(c, "/sensor/batch", bomb, **{"Content-Encoding": coding})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status_code == 413 and "1048576 bytes" in resp.json["error"]
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB allocated: the body was inflated further than the limit"


@pytest.mark.parametrize("coding", list(COMPRESS))
def test_corrupt_or_truncated_streams_get_400(coding: str) -> None:
    c = client()
    whole = COMPRESS[coding](json.dumps([SEED_READING] * 50).encode())
    for body in (whole[: len(whole) // 2], b"not compressed at all", b""):
        resp = post(c, "/sensor/batch", body, **{"Content-Encoding": coding})
        assert resp.status_code == 400, (coding, body[:10], resp.text)


# --- device tokens ---------------------------------------------------------------------

TOKENS = """
# token              sensors
tok-lab-0123456789   lab-*  sensor01   # a prefix and an exact id
tok-one-0123456789   sensor02
"""


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    return path


def test_the_token_file_grants_exact_ids_and_prefixes() -> None:
    grants = list(parse(TOKENS).values())
    assert grants[0] == Grant(frozenset({"sensor01"}), ("lab-",))
    assert grants[0].permits("lab-7") and grants[0].permits("sensor01")
    assert not grants[0].permits("sensor011") and not grants[0].permits("la")
    for text, words in [("tok", "line 1: a token needs"), ("a b\nsecret-token x*y", r"line 2: `\*` may only end"),
                        ("a b\na c", "line 2: a token listed twice"), ("a *", "line 1")]:  # fmt: skip
        with pytest.raises(TokenFileError, match=words) as refused:
            parse(text)
        assert "secret-token" not in str(refused.value)


def test_a_token_writes_only_its_sensors_and_nothing_of_a_forbidden_request_is_produced(tokens_file: Path) -> None:
    c = client(device_tokens_file=str(tokens_file), api_keys=frozenset({"key-1"}))
    reading = json.dumps({**SEED_READING, "sensor_id": "sensor02"}).encode()
    assert post(c, "/sensor", reading).status_code == 401
    assert post(c, "/sensor", reading, Authorization="Bearer nope").status_code == 401
    assert post(c, "/sensor", reading, **{"X-API-Key": "nope"}).status_code == 401
    resp = post(c, "/sensor", reading, Authorization="Bearer tok-lab-0123456789")
    assert resp.status_code == 403 and resp.json == {
        "error": "this device token may not write sensor sensor02",
        "path": "$.sensor_id",
    }
    batch = json.dumps([{**SEED_READING, "sensor_id": s} for s in ("lab-1", "sensor01", "lab-2", "sensor02")])
    resp = post(c, "/sensor/batch", batch.encode(), Authorization="Bearer tok-lab-0123456789")
    assert (resp.status_code, resp.json["path"]) == (403, "$[3].sensor_id")  # the Unreachable sender: nothing sent
    # past the token check, a permitted sensor reaches validation (422), as does an API key
    bad = json.dumps({**BAD, "sensor_id": "lab-9"}).encode()
    assert post(c, "/sensor", bad, Authorization="bearer tok-lab-0123456789").status_code == 422
    assert post(c, "/sensor", bad, **{"X-API-Key": "key-1"}).status_code == 422
    assert c.simulate_get("/healthz").status_code == 200


def test_the_token_file_is_reread_when_it_changes_and_a_broken_one_keeps_the_tokens(
    tokens_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    c = client(device_tokens_file=str(tokens_file))
    bad = json.dumps({**BAD, "sensor_id": "sensor03"}).encode()
    assert post(c, "/sensor", bad, Authorization="Bearer tok-new-0123456789").status_code == 401
    tokens_file.write_text(TOKENS + "tok-new-0123456789 sensor03\n")
    time.sleep(1.1)  # the file is looked at at most once a second
    assert post(c, "/sensor", bad, Authorization="Bearer tok-new-0123456789").status_code == 422
    tokens_file.write_text("tok-broken-0123456789\n")
    os.utime(tokens_file, ns=(time.time_ns(), time.time_ns() + 10**9))
    time.sleep(1.1)
    assert post(c, "/sensor", bad, Authorization="Bearer tok-new-0123456789").status_code == 422  # kept
    assert "keeping the 3 loaded: line 1" in caplog.text
    assert "tok-" not in caplog.text  # no token in the logs
    assert "tok-" not in c.simulate_get("/metrics").text


def test_a_token_file_that_does_not_parse_stops_the_api_at_start(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("only-a-token\n")
    with pytest.raises(TokenFileError, match="line 1"):
        client(device_tokens_file=str(path))


# --- rate limits -----------------------------------------------------------------------


def test_token_buckets_allow_the_burst_then_the_rate() -> None:
    now = [100.0]
    buckets = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take(b"a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take(b"a") == pytest.approx(0.5)  # one more token in half a second
    assert buckets.take(b"b") == 0.0  # another key has its own bucket
    now[0] += 0.5
    assert buckets.take(b"a") == 0.0
    now[0] += 60  # refills to the burst, not beyond
    assert [buckets.take(b"a") for _ in range(4)][-1] > 0


def test_rate_limits_answer_429_with_retry_after_per_credential_and_leave_gets_alone(tokens_file: Path) -> None:
    c = client(
        device_tokens_file=str(tokens_file), api_keys=frozenset({"key-1"}), rate_limit_rps=0.5, rate_limit_burst=2
    )
    bad = json.dumps({**BAD, "sensor_id": "lab-1"}).encode()
    lab = {"Authorization": "Bearer tok-lab-0123456789"}
    assert [post(c, "/sensor", bad, **lab).status_code for _ in range(3)] == [422, 422, 429]
    limited = post(c, "/sensor", bad, **lab)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert "rate limit" in limited.json["error"]
    assert post(c, "/sensor", bad, **{"X-API-Key": "key-1"}).status_code == 422  # its own bucket
    assert all(c.simulate_get("/healthz").status_code == 200 for _ in range(10))
    metrics = c.simulate_get("/metrics").text
    for reason in ("rate_limited", "invalid", "unauthorized", "forbidden", "unsupported_encoding"):
        assert f'sensor_api_rejected_requests_total{{reason="{reason}"}}' in metrics
    assert "tok-" not in metrics and "key-1" not in metrics
