"""Load shedding, in process: the loop-lag monitor, the 503 answer, the request-age check."""

from __future__ import annotations

import asyncio
import time

import falcon.testing
import pytest

from service import metrics
from service.server.http_protocol import BEGAN, LoopLag, shed
from service.server.middleware import Overloaded, ShedMiddleware


@pytest.fixture(autouse=True)
def _metrics() -> None:
    """What a worker's lifespan does before it serves (service/server/asgi.py)."""
    metrics.register()


def test_the_lag_monitor_sees_a_blocked_loop() -> None:
    async def main() -> tuple[float, float]:
        lag = LoopLag()
        lag.watch(asyncio.get_running_loop())
        await asyncio.sleep(0.2)
        calm = lag.lag
        time.sleep(0.3)  # the loop is blocked: the next tick fires late
        await asyncio.sleep(0.01)  # read it before the following, punctual tick
        return calm, lag.lag

    calm, blocked = asyncio.run(main())
    assert calm < 0.05
    assert blocked > 0.2


def test_a_shed_request_gets_503_with_retry_after_and_a_json_body() -> None:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(shed({"type": "http"}, None, send))
    start, body = sent
    headers = dict(start["headers"])
    assert start["status"] == 503 and headers[b"retry-after"] == b"1"
    assert headers[b"content-type"] == b"application/json" and b"overloaded" in body["body"]


def request_that_waited(seconds: float, method: str = "POST") -> falcon.asgi.Request:
    req = falcon.testing.create_asgi_req(method=method)
    req.scope[BEGAN] = asyncio.get_running_loop().time() - seconds
    return req


def test_a_post_that_waited_too_long_for_its_turn_is_shed() -> None:
    async def main() -> None:
        middleware = ShedMiddleware(shed_after_ms=250)
        await middleware.process_request(request_that_waited(0.1), falcon.asgi.Response())
        await middleware.process_request(request_that_waited(5, method="GET"), falcon.asgi.Response())
        with pytest.raises(Overloaded, match="waited"):
            await middleware.process_request(request_that_waited(0.3), falcon.asgi.Response())

    asyncio.run(main())
