"""Slow and idle clients cost a coroutine, not a thread: over real gunicorn + uvicorn workers,
normal requests are answered while hundreds of connections trickle their headers, slow
headers and bodies get 408 and a closed connection, idle keep-alive connections are closed,
and a Kafka call never stalls the event loop."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from harness.poll import wait_until
from harness.process import free_port
from harness.prometheus import metric, scrape
from harness.readings import SEED_READING
from harness.slow_clients import run
from tests.conftest import ApiFactory


def test_normal_requests_are_answered_while_hundreds_of_connections_trickle_headers(start_api: ApiFactory) -> None:
    base, _ = start_api(API_HEADER_TIMEOUT_MS="2500")
    result = run(base, slow=400, duration_s=5, client_timeout_s=5)
    assert result.slow.opened == 400
    assert result.normal.sent > 20
    assert result.normal.timed_out == 0 and result.normal.errors == {}, result.summary()
    assert result.normal.answered == result.normal.sent and set(result.normal.by_status) == {202}, result.summary()
    # Every slow connection was cut off at its header deadline with a 408, none kept for ever.
    assert result.slow.closed_by_server == 400, result.summary()
    assert set(result.slow.closed_how) == {"HTTP/1.1 408 Request Timeout"}, result.summary()
    assert 2.0 < min(result.slow.closed_after_s) and max(result.slow.closed_after_s) < 4.5, result.summary()


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(start_api: ApiFactory) -> None:
    base, _ = start_api(API_HEADER_TIMEOUT_MS="1000")
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        started = time.monotonic()
        answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer
        assert s.recv(4096) == b""  # closed
        assert 0.8 < time.monotonic() - started < 3


def test_a_body_slower_than_its_deadline_gets_408_and_the_connection_closed(start_api: ApiFactory) -> None:
    base, _ = start_api(API_BODY_TIMEOUT_MS="1000")
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /sensor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"the body did not arrive within 1000 ms" in answer
        assert 0.8 < time.monotonic() - started < 3


def test_idle_keep_alive_connections_are_closed_after_the_keepalive_timeout(start_api: ApiFactory) -> None:
    base, _ = start_api(API_KEEPALIVE_MS="1000")
    result = run(base, slow=0, idle=20, duration_s=4)
    assert result.idle.answered == 20, result.summary()
    assert result.idle.closed_by_server == 20, result.summary()
    assert all(0.8 < s < 2.5 for s in result.idle.closed_after_s), result.summary()


def test_kafka_calls_never_block_the_event_loop(start_api: ApiFactory) -> None:
    """With no broker at all, readiness checks wait on Kafka and POSTs wait for acks that never
    come, concurrently; /healthz on the same workers still answers at once."""
    base, _ = start_api(KAFKA_BROKER=f"127.0.0.1:{free_port()}", ACK_TIMEOUT_MS="4000", _ready="/healthz")

    def post(i: int) -> int:
        body = {**SEED_READING, "sensor_id": f"loop-{i}"}
        return requests.post(f"{base}/sensor", json=body, timeout=15).status_code

    def ready(_: int) -> int:
        return requests.get(f"{base}/readyz", timeout=15).status_code

    with ThreadPoolExecutor(24) as pool:
        posts = [pool.submit(post, i) for i in range(12)]
        checks = [pool.submit(ready, i) for i in range(8)]
        # The POSTs' readings wait in the producers' queues for a broker that is not there.
        queued = lambda: metric(scrape(f"{base}/metrics"), "sensor_kafka_queue_depth") >= 12  # noqa: E731
        wait_until("the 12 POSTs waiting on Kafka", queued, 3.5)
        slowest = 0.0
        for _ in range(20):
            started = time.monotonic()
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.05)
        assert [f.result() for f in posts] == [503] * 12  # answered at ACK_TIMEOUT_MS, not hung
        assert [f.result() for f in checks] == [503] * 8
    assert slowest < 0.25, f"/healthz took {slowest:.3f} s while Kafka calls were pending"
