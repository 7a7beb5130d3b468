"""HTTP resources: POST /sensor, POST /sensor/batch, health, readiness, metrics, OpenAPI.

Responders are coroutines on the worker's event loop (falcon.asgi): nothing here may block.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import falcon
import falcon.asgi
import msgspec

from pipeline.reading import Reading, decode_batch, decode_reading
from pipeline.settings import ApiSettings
from service import metrics
from service.errors import reply
from service.ingest import device_tokens, encoding
from service.ingest.producer import Delivery, ProduceError

NDJSON = "application/x-ndjson"


class Sender(Protocol):
    """What the resources need from the producer."""

    async def send(self, readings: list[Reading], received_ns: int) -> Delivery | None: ...

    async def ready(self, timeout: float = 2.0) -> str | None: ...


def _media_type(req: falcon.asgi.Request) -> str:
    return (req.content_type or "").split(";", 1)[0].strip().lower()


_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


async def _read_within(req: falcon.asgi.Request, size: int, seconds: float) -> bytes:
    """PERF: asyncio.timeout (3.11) cancels the request's own task when due, where
    asyncio.wait_for wraps the read in a new task per request (a tenth of a worker's CPU
    under load); 3.10 keeps wait_for. Raises asyncio.TimeoutError either way."""
    if _timeout is None:
        return await asyncio.wait_for(req.stream.read(size), seconds)
    async with _timeout(seconds):
        return await req.stream.read(size)


async def read_body(req: falcon.asgi.Request, settings: ApiSettings, accepted: tuple[str, ...]) -> bytes:
    """The body, after the content-type, content-encoding and size checks (415 / 413), read
    within API_BODY_TIMEOUT_MS (408, and the connection is closed: a client that slow is not
    kept), then decompressed within MAX_BODY_BYTES (service/ingest/encoding.py)."""
    if _media_type(req) not in accepted:
        raise falcon.HTTPUnsupportedMediaType(
            description=f"Content-Type must be {' or '.join(accepted)}, got {req.content_type or 'none'}"
        )
    coding = encoding.coding(req.get_header("Content-Encoding"))
    limit = settings.max_body_bytes
    if req.content_length is not None and req.content_length > limit:
        raise falcon.HTTPContentTooLarge(description=f"body is larger than {limit} bytes")
    try:
        body = await _read_within(req, limit + 1, settings.api_body_timeout_ms / 1000)
    except asyncio.TimeoutError:
        raise falcon.HTTPError(
            falcon.HTTP_408,
            description=f"the body did not arrive within {settings.api_body_timeout_ms} ms",
            headers={"Connection": "close"},
        ) from None
    if len(body) > limit:
        raise falcon.HTTPContentTooLarge(description=f"body is larger than {limit} bytes")
    return encoding.decompress(body, coding, limit)


async def _send(sender: Sender, readings: list[Reading], received_ns: int) -> Delivery | None:
    try:
        delivery = await sender.send(readings, received_ns)
    except ProduceError:
        metrics.FAILED.inc(len(readings))
        raise
    metrics.ACCEPTED.inc(len(readings))
    return delivery


class SensorResource:
    """One reading per request, answered once Kafka acknowledged it (or once queued)."""

    def __init__(self, settings: ApiSettings, sender: Sender) -> None:
        self.settings = settings
        self.sender = sender

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        received_ns = time.time_ns()
        body = await read_body(req, self.settings, (falcon.MEDIA_JSON,))
        try:
            reading = decode_reading(body, self.settings.not_after(received_ns))
        except (ValueError, msgspec.DecodeError):
            metrics.REJECTED.inc()
            raise
        device_tokens.check(req, (reading,))
        delivery = await _send(self.sender, [reading], received_ns)
        if delivery is None:
            reply(resp, {"status": "queued"}, 202)
        else:
            reply(resp, {"status": "accepted", "partition": delivery.partition, "offset": delivery.offset}, 202)


class BatchResource:
    """A JSON array or NDJSON of readings, validated whole before anything is produced."""

    def __init__(self, settings: ApiSettings, sender: Sender) -> None:
        self.settings = settings
        self.sender = sender

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        received_ns = time.time_ns()
        body = await read_body(req, self.settings, (falcon.MEDIA_JSON, NDJSON))
        try:
            readings = decode_batch(
                body, ndjson=_media_type(req) == NDJSON, not_after=self.settings.not_after(received_ns)
            )
        except (ValueError, msgspec.DecodeError):
            metrics.REJECTED.inc()
            raise
        if not readings:
            raise falcon.HTTPUnprocessableEntity(description="the batch is empty")
        if len(readings) > self.settings.max_batch:
            raise falcon.HTTPContentTooLarge(
                description=f"the batch has {len(readings)} readings; at most {self.settings.max_batch} are allowed"
            )
        device_tokens.check(req, readings)
        await _send(self.sender, readings, received_ns)
        reply(resp, {"accepted": len(readings)}, 202)


class HealthResource:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        reply(resp, {"status": "ok"})


class ReadyResource:
    """200 when Kafka answers and the topic exists; 503 otherwise."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        problem = await self.sender.ready()
        if problem:
            reply(resp, {"status": "unavailable", "error": problem}, 503)
            resp.set_header("Retry-After", "1")
        else:
            reply(resp, {"status": "ready"})


class MetricsResource:
    def __init__(self, multiproc_dir: str) -> None:
        self.multiproc_dir = multiproc_dir

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.data, resp.content_type = metrics.render(self.multiproc_dir)


class OpenApiResource:
    def __init__(self, document: bytes) -> None:
        self.document = document

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.document
