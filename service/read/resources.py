"""The read side's HTTP resources: sensors, readings, aggregates, alerts, the stream, health.

Parameters are checked here (400 naming the parameter); the queries are the store's (store/),
the stream service/read/stream.py. docs/contract.md, "Read API", is the contract.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import falcon
import falcon.asgi

from pipeline.reading import is_sensor_id
from service.errors import NoStore, reply
from service.read.pipeline_health import PipelineHealth
from service.read.stream import Tail, parse_token
from store import BUCKETS, SENSOR_SORTS, Page, SensorQuery
from store import Reader as Store


@dataclass
class ReadSide:
    """What the read resources need: the store (None with SINK=console), the tail, health."""

    store: Store | None
    tail: Tail
    health: PipelineHealth


def _bad(name: str, message: str) -> falcon.HTTPBadRequest:
    return falcon.HTTPBadRequest(description=f"parameter {name}: {message}")


def limit_of(req: falcon.asgi.Request, default: int, most: int) -> int:
    text = req.get_param("limit")
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _bad("limit", f"must be an integer from 1 to {most}, got {text!r}") from None
    if not 1 <= value <= most:
        raise _bad("limit", f"must be from 1 to {most}, got {value}")
    return value


def time_of(req: falcon.asgi.Request, name: str) -> datetime | None:
    """An RFC 3339 date-time with a zone (`Z` or an offset), as UTC."""
    text = req.get_param(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _bad(name, f"must be an RFC 3339 date-time like 2025-11-17T14:20:00Z, got {text!r}") from None
    if moment.tzinfo is None:
        raise _bad(name, f"needs a zone (Z or +hh:mm), got {text!r}")
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise _bad(name, f"is out of range, got {text!r}") from None


def text_of(req: falcon.asgi.Request, name: str, most: int = 64) -> str | None:
    text = req.get_param(name)
    if text is None or text == "":
        return None
    if len(text) > most:
        raise _bad(name, f"is longer than {most} characters")
    return text


def choice_of(req: falcon.asgi.Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    text = req.get_param(name)
    if text is None:
        return default
    if text not in allowed:
        raise _bad(name, f"must be one of {', '.join(allowed)}, got {text!r}")
    return text


def only(req: falcon.asgi.Request, *names: str) -> None:
    """400 naming a query parameter this endpoint does not know (docs/contract.md, "Read API")."""
    for name in req.params:
        if name not in names:
            known = ", ".join(names) if names else "none"
            raise _bad(name, f"is not known here (known: {known})")


_DURATION = re.compile(r"([0-9]{1,9})(s|m|h|d)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_of(req: falcon.asgi.Request, name: str) -> int | None:
    """A duration like `30s`, `5m`, `2h`, `7d`, in seconds."""
    text = req.get_param(name)
    if text is None:
        return None
    match = _DURATION.fullmatch(text)
    if match is None:
        raise _bad(name, f"must be a duration like 30s, 5m, 2h or 7d, got {text!r}")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _day_before(moment: datetime) -> datetime:
    try:
        return moment - timedelta(days=1)
    except OverflowError:  # `to` in the calendar's first day
        return datetime.min.replace(tzinfo=timezone.utc)


def _sensor(sensor_id: str) -> str:
    if not is_sensor_id(sensor_id):
        raise falcon.HTTPNotFound(description=f"no sensor {sensor_id!r}")
    return sensor_id


def _page(page: Page, **extra: Any) -> dict[str, Any]:
    return {**extra, "items": page.items, "next_cursor": page.next_cursor}


class _Reads:
    def __init__(self, read: ReadSide) -> None:
        self.read = read

    @property
    def store(self) -> Store:
        if self.read.store is None:
            raise NoStore()
        return self.read.store


SENSORS_PARAMS = ("limit", "cursor", "q", "type", "location", "sort", "silent_for")


class SensorsResource(_Reads):
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        only(req, *SENSORS_PARAMS)
        silent_for = duration_of(req, "silent_for")
        query = SensorQuery(
            q=text_of(req, "q"),
            type=text_of(req, "type", 32),
            location=text_of(req, "location"),
            sort="last_seen" if choice_of(req, "sort", SENSOR_SORTS, "sensor_id") == "last_seen" else "sensor_id",
            # NOTE: clamped at the epoch, so a duration of centuries stays a 64-bit integer
            silent_before_ns=None if silent_for is None else max(0, time.time_ns() - silent_for * 1_000_000_000),
        )
        page = await self.store.sensors(limit_of(req, 100, 1000), req.get_param("cursor"), query)
        reply(resp, _page(page), no_store=True)


class ReadingsResource(_Reads):
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, sensor_id: str) -> None:
        only(req, "type", "from", "to", "limit", "cursor")
        sensor_id = _sensor(sensor_id)
        type_, start, end = text_of(req, "type", 32), time_of(req, "from"), time_of(req, "to")
        limit = limit_of(req, 100, 10_000)
        page = await self.store.readings(sensor_id, type_, start, end, limit, req.get_param("cursor"))
        if not page.items and req.get_param("cursor") is None and not await self.store.known(sensor_id):
            raise falcon.HTTPNotFound(description=f"no sensor {sensor_id!r}")
        reply(resp, _page(page, sensor_id=sensor_id), no_store=True)


class AggregatesResource(_Reads):
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, sensor_id: str) -> None:
        only(req, "type", "bucket", "from", "to", "limit", "cursor")
        sensor_id = _sensor(sensor_id)
        type_ = text_of(req, "type", 32)
        bucket = choice_of(req, "bucket", BUCKETS, "5m")
        end = time_of(req, "to") or datetime.now(timezone.utc)
        start = time_of(req, "from") or _day_before(end)
        if start >= end:
            raise _bad("from", "must be before to")
        limit = limit_of(req, 1000, 10_000)
        page = await self.store.aggregates(sensor_id, type_, start, end, bucket, limit, req.get_param("cursor"))  # type: ignore[arg-type]
        if not page.items and req.get_param("cursor") is None and not await self.store.known(sensor_id):
            raise falcon.HTTPNotFound(description=f"no sensor {sensor_id!r}")
        reply(resp, _page(page, sensor_id=sensor_id, bucket=bucket), no_store=True)


def only_params(req: falcon.asgi.Request, *allowed: str) -> None:
    """400 naming the query parameters this endpoint does not take."""
    unknown = sorted(set(req.params) - set(allowed))
    if unknown:
        raise _bad(", ".join(unknown), f"unknown (this endpoint takes {', '.join(allowed)})")


class CompletenessResource(_Reads):
    """Which seq numbers of a sensor and type arrived (store/ledger.py)."""

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, sensor_id: str) -> None:
        sensor_id = _sensor(sensor_id)
        only_params(req, "type")
        type_ = text_of(req, "type", 32)
        if type_ is None:
            raise _bad("type", "is required (the reading type whose seq numbers to check)")
        if "\x00" in type_:
            raise _bad("type", "must not contain a NUL character")
        if not await self.store.known(sensor_id):
            raise falcon.HTTPNotFound(description=f"no sensor {sensor_id!r}")
        reply(resp, await self.store.completeness(sensor_id, type_), no_store=True)


class AlertsResource(_Reads):
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        only(req, "state", "sensor_id", "limit", "cursor")
        state = choice_of(req, "state", ("active", "cleared", "all"), "active")
        sensor_id = text_of(req, "sensor_id")
        page = await self.store.alerts(state, sensor_id, limit_of(req, 100, 1000), req.get_param("cursor"))  # type: ignore[arg-type]
        reply(resp, _page(page), no_store=True)


class AlertAckResource(_Reads):
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, alert_id: str) -> None:
        only(req)
        alert = await self.store.ack(alert_id[:64])
        if alert is None:
            raise falcon.HTTPNotFound(description=f"no alert {alert_id!r}")
        reply(resp, alert, no_store=True)


class StreamResource:
    """Server-Sent Events: readings and alert changes as Kafka gets them (service/read/stream.py)."""

    def __init__(self, tail: Tail) -> None:
        self.tail = tail

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        only(req, "sensor_id", "type", "last_event_id")
        sensor_id, type_ = text_of(req, "sensor_id"), text_of(req, "type", 32)
        resume = parse_token(req.get_header("Last-Event-ID") or req.get_param("last_event_id"), self.tail.topics)
        try:
            await self.tail.start()
        except Exception as e:  # Kafka unreachable: the client's EventSource retries
            raise falcon.HTTPServiceUnavailable(
                description=f"Kafka unreachable: {e}", headers={"Retry-After": "1"}
            ) from e
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = self.tail.subscribe(sensor_id, type_, resume, _disconnect_of(req))


def _disconnect_of(req: falcon.asgi.Request) -> Callable[[], Awaitable[None]]:
    """Waits for the ASGI `http.disconnect` of this request. NOTE: Falcon watches for it only
    behind `resp.sse` (one write per event); `resp.stream` needs it done here, through the
    request's ASGI receive (`Request._receive`, Falcon 4)."""
    receive = req._receive

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    return disconnected


class PipelineResource:
    def __init__(self, health: PipelineHealth) -> None:
        self.health = health

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        only(req)
        reply(resp, await self.health.summary(), no_store=True)


def add_routes(app: falcon.asgi.App, read: ReadSide) -> None:
    app.add_route("/sensors", SensorsResource(read))
    app.add_route("/sensors/{sensor_id}/readings", ReadingsResource(read))
    app.add_route("/sensors/{sensor_id}/aggregates", AggregatesResource(read))
    app.add_route("/sensors/{sensor_id}/completeness", CompletenessResource(read))
    app.add_route("/alerts", AlertsResource(read))
    app.add_route("/alerts/{alert_id}/ack", AlertAckResource(read))
    app.add_route("/stream", StreamResource(read.tail))
    app.add_route("/pipeline", PipelineResource(read.health))
