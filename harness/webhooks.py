"""A real webhook receiver for the tests: an HTTP server on loopback, in a thread, that the
test starts, stops and restarts on the same port. It checks each POST's signature
(pipeline/webhooks.py) and keeps what it got, deduplicated by Idempotency-Key as a receiver
of an at-least-once sender must."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.process import free_port
from pipeline.webhooks import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify


@dataclass
class Received:
    key: str
    signature_ok: bool
    body: dict[str, Any]


@dataclass
class Receiver:
    secret: str
    port: int = field(default_factory=free_port)
    status: int = 200  # what it answers (a test sets 500 or 400 to refuse)
    posts: list[Received] = field(default_factory=list)  # every POST, duplicates included
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                got = Received(
                    self.headers.get(IDEMPOTENCY_HEADER, ""),
                    verify(receiver.secret, raw, self.headers.get(SIGNATURE_HEADER, "")),
                    json.loads(raw),
                )
                with receiver._lock:
                    receiver.posts.append(got)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until start() again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> dict[str, Received]:
        """What it got, one per Idempotency-Key (the receiver's dedupe)."""
        with self._lock:
            return {p.key: p for p in self.posts}
