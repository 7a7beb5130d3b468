"""Every JSON reply in one place: `reply()` for the resources, and the map of library errors to
JSON HTTP errors, `{"error": ..., "path": ...}`."""

from __future__ import annotations

import logging
from typing import Any

import falcon
import falcon.asgi
import msgspec

from pipeline.reading import BatchError, ReadingError
from service import metrics
from service.ingest import encoding
from service.ingest.producer import ProduceError
from service.server.middleware import Overloaded
from store import BadCursor, StoreUnavailable

log = logging.getLogger(__name__)


class NoStore(Exception):
    """SINK=console: there is nothing to query."""


def reply(resp: falcon.asgi.Response, body: Any, status: int = 200, *, no_store: bool = False) -> None:
    """A JSON body; `no_store` forbids caches to keep it (the read side's answers change)."""
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = msgspec.json.encode(body)
    if no_store:
        resp.set_header("Cache-Control", "no-store")


def _json(resp: falcon.asgi.Response, status: int, message: str, path: str | None = None, **more: Any) -> None:
    body: dict[str, Any] = {"error": message}
    if path:
        body["path"] = path
    body.update(more)
    reply(resp, body, status)


def _rejected(status: int, ex: Exception) -> None:
    """Count a 4xx by reason (sensor_api_rejected_requests_total)."""
    if isinstance(ex, encoding.UnsupportedEncoding):
        reason = "unsupported_encoding"
    elif isinstance(ex, encoding.BadCompression):
        reason = "bad_compression"
    else:
        reason = metrics.REJECT_REASONS.get(status, "other")
    metrics.REJECTED_REQUESTS.labels(reason).inc()


async def handle_decode_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: msgspec.DecodeError, params: dict
) -> None:
    _rejected(400, ex)
    _json(resp, 400, f"malformed JSON: {ex}")


async def handle_reading_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: ReadingError, params: dict
) -> None:
    _rejected(422, ex)
    if isinstance(ex, BatchError):
        errors = [{"path": e.path, "error": e.message} for e in ex.errors]
        _json(resp, 422, ex.message, ex.path, errors=errors, invalid=ex.invalid)
        return
    _json(resp, 422, ex.message, ex.path)


async def handle_unavailable(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: ProduceError | Overloaded, params: dict
) -> None:
    """Kafka could not take the reading, or the worker shed it: 503, and when to retry."""
    _json(resp, 503, str(ex))
    resp.set_header("Retry-After", str(ex.retry_after))


async def handle_store_unavailable(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: StoreUnavailable, params: dict
) -> None:
    """The read API's store cannot be read right now (not created yet, or down)."""
    _json(resp, 503, f"the store is unavailable: {ex}")
    resp.set_header("Retry-After", "1")


async def handle_no_store(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: NoStore, params: dict) -> None:
    _json(resp, 503, "no store to read: the pool writes to the console only (SINK=console)")


async def handle_bad_cursor(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: BadCursor, params: dict) -> None:
    _json(resp, 400, f"parameter cursor: {ex}")


async def handle_http_error(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: falcon.HTTPError, params: dict
) -> None:
    if 400 <= ex.status_code < 500:
        _rejected(ex.status_code, ex)
    _json(resp, ex.status_code, ex.description or ex.title, getattr(ex, "path", None))
    for name, value in dict(ex.headers or {}).items():
        resp.set_header(name, value)


async def handle_unexpected(req: falcon.asgi.Request, resp: falcon.asgi.Response, ex: Exception, params: dict) -> None:
    log.exception("unhandled error on %s %s", req.method, req.path)
    _json(resp, 500, "internal server error")


def register(app: falcon.asgi.App) -> None:
    """Install the handlers; the most generic first, since Falcon picks the most specific."""
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(msgspec.DecodeError, handle_decode_error)
    app.add_error_handler(ReadingError, handle_reading_error)
    app.add_error_handler(ProduceError, handle_unavailable)
    app.add_error_handler(Overloaded, handle_unavailable)
    app.add_error_handler(StoreUnavailable, handle_store_unavailable)
    app.add_error_handler(NoStore, handle_no_store)
    app.add_error_handler(BadCursor, handle_bad_cursor)
