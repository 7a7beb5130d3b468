"""Request metrics, load shedding by request age, and optional API-key authentication."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any

import falcon
import falcon.asgi

from service import metrics
from service.server.http_protocol import BEGAN


class MetricsMiddleware:
    """Counts and times every request by route template (bounded label values).

    PERF: the labelled children are looked up once per (route, method, status) and kept:
    `labels()` was a tenth of the metrics cost per request.
    """

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        req.context.started = time.perf_counter()

    async def process_response(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: object, req_succeeded: bool
    ) -> None:
        key = (req.uri_template or "unmatched", req.method, resp.status_code)
        children = self._children.get(key)
        if children is None:
            route, method, status = key
            children = (metrics.REQUESTS.labels(route, method, str(status)), metrics.REQUEST_DURATION.labels(route))
            self._children[key] = children
        requests, duration = children
        requests.inc()
        duration.observe(time.perf_counter() - req.context.started)
        metrics.WORKER_REQUESTS.inc()


class Overloaded(Exception):
    """The request waited longer than API_SHED_AFTER_MS before the worker got to it."""

    retry_after = 1


class ShedMiddleware:
    """Load shedding: a POST that waited in the worker's queue longer than API_SHED_AFTER_MS
    (from its first byte to its turn on the event loop) is answered 503 at once, before it
    is decoded or produced, so an overloaded worker spends its CPU on requests that can still
    be answered in time instead of queueing all of them until they time out."""

    def __init__(self, shed_after_ms: int) -> None:
        self.shed_after_s = shed_after_ms / 1000

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        began = req.scope.get(BEGAN)
        if began is None or req.method != "POST":
            return
        waited = asyncio.get_running_loop().time() - began
        if waited > self.shed_after_s:
            metrics.SHED.inc()
            raise Overloaded(f"overloaded: the request waited {waited * 1000:.0f} ms; retry shortly")


class ApiKeyMiddleware:
    """When API_KEYS is set, POSTs need a known `X-API-Key`; GETs (health, metrics) stay open."""

    def __init__(self, keys: frozenset[str]) -> None:
        self._keys = [k.encode() for k in keys]

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if req.method != "POST":
            return
        given = (req.get_header("X-API-Key") or "").encode()
        # NOTE: compare against every key so the time taken does not reveal which one matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise falcon.HTTPUnauthorized(
                title="Unauthorized",
                description="missing or unknown API key (header X-API-Key)",
                headers={"WWW-Authenticate": "X-API-Key"},
            )
