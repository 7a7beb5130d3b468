"""Ingest hardening over real HTTP (gunicorn + uvicorn workers) and a real broker: compressed
bodies reach Kafka as sent, TLS with a certificate made here (and the header deadline still
holds over it), device tokens re-read on SIGHUP, 429 with Retry-After."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import ssl
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import trustme

from harness.kafka import payload, read_topic
from harness.poll import wait_until
from harness.prometheus import metric, scrape
from harness.readings import SEED_READING
from service.ingest.encoding import zstd
from tests.conftest import ApiFactory

pytestmark = pytest.mark.integration


def test_compressed_batches_reach_kafka_as_sent(api: str, kafka_broker: str, topic: str) -> None:
    sent: list[str] = []
    codings: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("zstd", zstd.compress),
    ]
    for i, (coding, compress) in enumerate(codings):
        batch = [{**SEED_READING, "sensor_id": f"{coding}-{n}"} for n in range(20)]
        ndjson = "\n".join(json.dumps(r) for r in batch).encode()
        resp = requests.post(
            f"{api}/sensor/batch",
            data=compress(ndjson),
            headers={"Content-Type": "application/x-ndjson", "Content-Encoding": coding},
            timeout=15,
        )
        assert (resp.status_code, resp.json()) == (202, {"accepted": 20}), (i, resp.text)
        sent += [str(r["sensor_id"]) for r in batch]
    got = sorted(json.loads(payload(m))["sensor_id"] for m in read_topic(kafka_broker, topic, len(sent)))
    assert got == sorted(sent)


def test_tls_with_a_certificate_made_here(start_api: ApiFactory, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    env = {"API_TLS_CERT": str(cert_file), "API_TLS_KEY": str(key_file), "API_HEADER_TIMEOUT_MS": "1500"}
    base, proc = start_api("/healthz", **env, _scheme="https", _verify=str(ca_file))
    assert base.startswith("https://")
    resp = requests.post(f"{base}/sensor", json=SEED_READING, verify=str(ca_file), timeout=15)
    assert resp.status_code == 202 and resp.json()["status"] == "accepted"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{base}/healthz", timeout=5)  # an unknown CA is refused
    plain = base.replace("https://", "http://")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{plain}/healthz", timeout=5)  # no plain HTTP beside it
    # the header deadline (service/server/http_protocol.py) holds over TLS: silence gets 408 and a close
    host, port = base.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as s,
    ):
        started = time.monotonic()
        answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert 1.0 < time.monotonic() - started < 6
    assert "Running on https://" in proc.log()


def test_device_tokens_are_reread_on_sighup(start_api: ApiFactory, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-aaaaaaaaaaaaaaaa sensor01\n")
    stamp = os.stat(tokens)
    base, proc = start_api(DEVICE_TOKENS_FILE=str(tokens), API_WORKERS="1")
    reading = {**SEED_READING, "sensor_id": "sensor01"}
    bearer = {"Authorization": "Bearer tok-bbbbbbbbbbbbbbbb"}
    assert requests.post(f"{base}/sensor", json=reading, headers=bearer, timeout=15).status_code == 401
    # the same size and mtime: only SIGHUP can tell the workers the file changed
    tokens.write_text("tok-bbbbbbbbbbbbbbbb sensor01\n")
    os.utime(tokens, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    time.sleep(1.2)
    assert requests.post(f"{base}/sensor", json=reading, headers=bearer, timeout=15).status_code == 401
    proc.signal(signal.SIGHUP)
    ok = lambda: requests.post(f"{base}/sensor", json=reading, headers=bearer, timeout=15).status_code == 202  # noqa: E731
    wait_until("the new token after SIGHUP", ok, 30, proc)
    assert "tok-bbbb" not in proc.log() and "tok-aaaa" not in proc.log()


def test_rate_limit_answers_429_with_retry_after_and_counts_it(start_api: ApiFactory) -> None:
    base, _ = start_api(RATE_LIMIT_RPS="0.2", RATE_LIMIT_BURST="2", API_WORKERS="1")
    with requests.Session() as s:  # one connection: one worker's buckets
        codes = [s.post(f"{base}/sensor", json=SEED_READING, timeout=15) for _ in range(3)]
    assert [r.status_code for r in codes] == [202, 202, 429]
    assert codes[2].headers["Retry-After"] == "5"
    assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
    assert metric(scrape(f"{base}/metrics"), "sensor_api_rejected_requests_total", reason="rate_limited") == 1.0
