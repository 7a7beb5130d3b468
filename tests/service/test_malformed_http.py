"""Malformed HTTP over a raw socket to the real API (gunicorn + uvicorn + httptools): every
case gets a 4xx (or a closed connection), never a 5xx, and the worker keeps answering.

The cases and their answers are summed up in docs/api.md ("Hostile input, and what it gets").
"""

from __future__ import annotations

import socket
import time

import pytest
import requests

from tests.conftest import ApiFactory

pytestmark = pytest.mark.integration

R = b'{"sensor_id":"s1","timestamp":"2025-01-01T00:00:00Z","type":"t","value":1}'
POST = b"POST /sensor HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
CL = b"Content-Length: %d\r\n\r\n" % len(R)


def chunked(*chunks: bytes, end: bytes = b"0\r\n\r\n") -> bytes:
    return b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + end


CASES: list[tuple[str, bytes, int]] = [
    ("a 1 MB header", POST + b"X-Big: " + b"a" * (1 << 20) + b"\r\n" + CL + R, 431),
    ("100,000 headers", POST + b"".join(b"X-%d: a\r\n" % i for i in range(100_000)) + CL + R, 431),
    ("a request line that never ends", b"POST /sensor" + b"a" * 100_000, 431),
    ("a request line that stops", b"POST /sensor HTTP/1.1\r\nHost: x", 408),
    ("a 200 kB path", b"GET /" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    ("Content-Length shorter than the body", POST + b"Content-Length: 10\r\n\r\n" + R, 400),
    ("Content-Length longer than the body", POST + b"Content-Length: 500\r\n\r\n" + R, 408),
    ("Content-Length not a number", POST + b"Content-Length: abc\r\n\r\n" + R, 400),
    ("Content-Length negative", POST + b"Content-Length: -5\r\n\r\n" + R, 400),
    ("two different Content-Lengths", POST + b"Content-Length: 10\r\n" + CL + R, 400),
    ("Content-Length and chunked (request smuggling)", POST + b"Content-Length: 10\r\n" + chunked(R), 400),
    ("chunked, well formed", POST + chunked(R[:20], R[20:]), 202),
    ("chunked, a bad chunk size", POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + R + b"\r\n0\r\n\r\n", 400),
    ("chunked, never the last chunk", POST + chunked(R, end=b""), 408),
    ("chunked, past MAX_BODY_BYTES", POST + chunked(*[b"a" * 0x4000] * 80), 413),
    ("binary garbage (a TLS hello)", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 garbage\r\n\r\n", 400),
    ("the HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ("an unknown method", b"FOO /sensor HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("a header without a colon", b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400),
    ("NUL in a header", b"GET /healthz HTTP/1.1\r\nHost: x\x00y\r\n\r\n", 400),
    ("an obsolete folded header", b"GET /healthz HTTP/1.1\r\nHost: x\r\n y\r\n\r\n", 400),
    ("invalid UTF-8 in Content-Type", POST.replace(b"json", b"json; charset=\xff") + CL + R, 202),
    ("Content-Encoding gzip on a plain body", POST + b"Content-Encoding: gzip\r\n" + CL + R, 400),
    ("Content-Encoding br", POST + b"Content-Encoding: br\r\n" + CL + R, 415),
    ("Content-Encoding list", POST + b"Content-Encoding: gzip, gzip\r\n" + CL + R, 415),
]


def first_status(port: int, data: bytes, timeout: float = 10.0) -> int | None:
    """The status of the first answer, or None when the connection closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # NOTE: the server may answer and close before it has read everything
        got = b""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in got and time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
    return int(got.split(b" ", 2)[1]) if got.startswith(b"HTTP/1.1 ") else None


def test_malformed_http_gets_a_4xx_and_the_worker_keeps_answering(start_api: ApiFactory) -> None:
    base, proc = start_api(API_HEADER_TIMEOUT_MS="1500", API_BODY_TIMEOUT_MS="1500", MAX_BODY_BYTES="65536")
    port = int(base.rsplit(":", 1)[1])
    answers = {name: first_status(port, data) for name, data, _ in CASES}
    assert answers == {name: status for name, _, status in CASES}
    assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
    log = proc.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
