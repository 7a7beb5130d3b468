"""uvicorn's httptools protocol plus a deadline for a request's headers.

NOTE: uvicorn has no such deadline: its keep-alive timer only runs between requests and is
reset by every byte, so a client that trickles its headers (or connects and sends nothing)
holds the connection for ever (Slowloris). Here a timer starts when the connection opens and
again when a request's first byte arrives; if the headers are not complete within
API_HEADER_TIMEOUT_MS the client gets `408` and the connection is closed. The body has its
own deadline in the app (service/resources.py), where the body is read.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_BODY = b'{"error": "request headers not received in time"}'
REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _BODY
)


class DeadlineProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose requests must deliver their headers within `header_timeout`."""

    header_timeout: float = 10.0  # set per server by `with_header_timeout`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

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
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # NOTE: a client that connects and never sends is cut off too

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def with_header_timeout(seconds: float) -> type[DeadlineProtocol]:
    """The protocol class uvicorn should instantiate, with this server's header deadline."""
    return type("DeadlineProtocol", (DeadlineProtocol,), {"header_timeout": seconds})
