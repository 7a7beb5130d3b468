"""uvicorn's httptools protocol plus a deadline for a request's headers, and load shedding.

NOTE: uvicorn has no such deadline: its keep-alive timer only runs between requests and is
reset by every byte, so a client that trickles its headers (or connects and sends nothing)
holds the connection for ever (Slowloris). Here a timer starts when the connection opens and
again when a request's first byte arrives; if the headers are not complete within
API_HEADER_TIMEOUT_MS the client gets `408` and the connection is closed. The body has its
own deadline in the app (service/ingest/resources.py), where the body is read.

Header size: uvicorn's httptools protocol has no limit on a request's headers (a 1 MB header,
or 100,000 of them, were read and answered 202). Here the bytes received while a request's
headers are incomplete are counted; past API_MAX_HEADER_BYTES the client gets `431` and the
connection is closed, before the rest is read.

Load shedding: when the worker's event loop runs more than API_SHED_AFTER_MS behind (its
timers fire that late), a new request is answered `503` with `Retry-After: 1` by a tiny ASGI
app instead of the API, through the same switch uvicorn uses for its own concurrency limit:
no decode, no produce, the connection kept. An overloaded worker then answers the excess
at once and spends its CPU on the requests it can still answer in time.

Every request answered (docs/contract.md, "Every request gets an HTTP status"):
- Past API_MAX_CONNECTIONS (connections plus requests in flight on the worker) a request is
  answered by `shed` too (`503` with `Retry-After: 1`, JSON) and its connection closed, where
  uvicorn's own limit answered a plain `503` without Retry-After.
- Lingering close: when the server closes a connection right after an answer (408, 431, the
  connection limit, `connection: close`), the request's body or the client's next request may
  still be unread; closing a socket with unread data makes the kernel send a reset
  (TCPAbortOnData), and a reset makes the client's kernel drop the answer it had not read yet,
  so the client saw "connection reset" instead of its status. Here the server half-closes
  (FIN after the answer), reads and discards what still comes, and closes when the client
  does, or after LINGER_S.
- An idle keep-alive connection is closed with a plain close (nothing was sent on it); the
  race with a client reusing it at that instant is avoided by API_KEEPALIVE_MS (75 s) being
  longer than the idle expiry of common clients (httpx 5 s, aiohttp 15 s, Go 90 s is the
  exception): the client drops its idle connection first.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service import metrics

BEGAN = "sensor_api.began"  # ASGI scope key: loop.time() at the request's first byte
_BODY = b'{"error": "request headers not received in time"}'
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _BODY
)


_HEADERS_BODY = b'{"error": "request headers are too large"}'
HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_HEADERS_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _HEADERS_BODY
)


class LoopLag:
    """How late this event loop runs its timers: a tick every 50 ms, measured against when it was due."""

    interval = 0.05

    def __init__(self) -> None:
        self.lag = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not loop:
            self._loop = loop
            self._due = loop.time() + self.interval
            loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self.lag = max(0.0, now - self._due)
        self._due = now + self.interval
        self._loop.call_at(self._due, self._tick)


LAG = LoopLag()
_OVERLOADED = b'{"error":"overloaded, retry shortly"}'


async def shed(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI app that answers a shed request."""
    metrics.SHED.inc()
    headers = [
        (b"content-type", b"application/json"),
        (b"retry-after", b"1"),
        (b"content-length", b"%d" % len(_OVERLOADED)),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _OVERLOADED})


def _count_rejected(reason: str) -> None:
    metrics.REJECTED_REQUESTS.labels(reason).inc()


LINGER_S = 2.0  # how long a closed connection's late input is read and discarded


class LingeringTransport:
    """The connection's transport, whose close() is a lingering close (the module's docstring).

    uvicorn's protocol and its request cycles call `transport.close()` themselves; they get
    this object instead of the real transport, and everything else is passed through."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.raw = transport
        self._loop = loop
        self.lingering = False
        self._timer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        raw = self.raw
        if self.lingering or raw.is_closing():
            return
        try:
            can_half_close = raw.can_write_eof()
        except (NotImplementedError, RuntimeError):
            can_half_close = False
        if not can_half_close:  # TLS: no half-close
            raw.close()
            return
        self.lingering = True
        try:
            raw.write_eof()  # NOTE: sent after the buffered answer is written
            raw.resume_reading()  # FlowControl may have paused it; the rest is read and dropped
        except (OSError, RuntimeError):
            raw.close()
            return
        # NOTE: the client's FIN ends it sooner: uvicorn's eof_received returns None, so the
        # transport closes on it.
        self._timer = self._loop.call_later(LINGER_S, raw.close)

    def abort_linger(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.raw.is_closing():
            self.raw.close()

    def is_closing(self) -> bool:
        return self.lingering or self.raw.is_closing()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        # NOTE: what a closed transport does with a late write (a request's answer after the
        # connection was closed on a malformed next one): drop it; after write_eof() it raises.
        if not self.lingering:
            self.raw.write(data)

    def writelines(self, lines: Any) -> None:
        if not self.lingering:
            self.raw.writelines(lines)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class DeadlineProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose requests must deliver their headers within `header_timeout`,
    and which sheds new requests while the loop is more than `shed_after` behind."""

    header_timeout: float = 10.0  # set per server by `protocol_class`
    shed_after: float = 0.25
    max_header_bytes: int = 65_536
    max_connections: int | None = None  # API_MAX_CONNECTIONS (uvicorn's own limit is off)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0  # received while the current request's headers are incomplete
        self._linger: LingeringTransport | None = None

    def data_received(self, data: bytes) -> None:
        if self._linger is not None and self._linger.lingering:
            return  # closed after an answer: read and dropped
        pending = self._deadline is not None  # NOTE: armed exactly while headers are awaited
        if pending:
            self._header_bytes += len(data)
        super().data_received(data)
        if pending and self._deadline is not None and self._header_bytes > self.max_header_bytes:
            self._disarm()
            if not self.transport.is_closing():
                _count_rejected("headers_too_large")
                self.transport.write(HEADERS_TOO_LARGE)
                self.transport.close()

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            _count_rejected("timeout")
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._linger = LingeringTransport(transport, self.loop)
        self.transport = cast(asyncio.Transport, self._linger)  # NOTE: the request cycles get it too
        LAG.watch(self.loop)
        self._arm()  # NOTE: a client that connects and never sends is cut off too

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # NOTE: when the request's first byte was read, on the loop's clock: the app sheds a
        # request that waited too long for the loop to reach it (service/server/middleware.py).
        self.scope[BEGAN] = self.loop.time()  # type: ignore[literal-required]
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._header_bytes = 0
        idle = self.cycle is None or self.cycle.response_complete  # NOTE: never reorder pipelined answers
        limit = self.max_connections
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            # Over capacity: answered like a shed request, and the connection closed (lingering).
            app, self.app = self.app, shed
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            if self.cycle is not None:
                self.cycle.keep_alive = False
            return
        if LAG.lag > self.shed_after and idle:
            app, self.app = self.app, shed
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def _close_idle(self) -> None:
        # An idle connection: nothing unread, so a plain close (no linger to hold it open).
        if self._linger is not None and not self._linger.is_closing():
            self._linger.raw.close()

    def timeout_keep_alive_handler(self) -> None:
        self._close_idle()

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._close_idle()
        else:
            self.cycle.keep_alive = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._linger is not None:
            self._linger.abort_linger()
        super().connection_lost(exc)


def protocol_class(
    header_timeout_s: float,
    shed_after_s: float,
    max_header_bytes: int = 65_536,
    max_connections: int | None = None,
) -> type[DeadlineProtocol]:
    """The protocol class uvicorn should instantiate, with this server's limits."""
    limits = {
        "header_timeout": header_timeout_s,
        "shed_after": shed_after_s,
        "max_header_bytes": max_header_bytes,
        "max_connections": max_connections,
    }
    return type("DeadlineProtocol", (DeadlineProtocol,), limits)
