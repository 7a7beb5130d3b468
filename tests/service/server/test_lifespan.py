"""The ASGI lifespan of service/server/asgi.py: a worker that cannot build its app says so at
startup (uvicorn then exits and gunicorn's master stops: WORKER_BOOT_ERROR), and a request
never reaches an app that was not built."""

from __future__ import annotations

import asyncio
from typing import Any

import falcon.testing
import pytest

from service.server.asgi import Lifespan


async def run_lifespan(app: Lifespan, *messages: str) -> list[dict[str, Any]]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for message in messages:
        inbox.put_nowait({"type": message})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app({"type": "lifespan"}, inbox.get, send), 30)
    return sent


def test_a_bad_setting_fails_the_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_PORT", "not-a-port")
    app = Lifespan()
    sent = asyncio.run(run_lifespan(app, "lifespan.startup"))
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "API_PORT" in sent[0]["message"]
    assert app.worker is None


def test_a_request_before_the_startup_is_refused() -> None:
    async def request() -> None:
        await Lifespan()({"type": "http"}, None, None)

    with pytest.raises(RuntimeError, match="lifespan"):
        asyncio.run(request())


def test_the_startup_builds_the_worker_and_the_shutdown_flushes_it(
    pipeline_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the real broker: the app answers only once started; the producer ends closed."""
    for name, value in pipeline_env.items():
        monkeypatch.setenv(name, value)
    # NOTE: in this process prometheus-client keeps one registry in one mode; no folder here.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    app = Lifespan()

    async def serve() -> tuple[int, int]:
        async with falcon.testing.ASGIConductor(app) as conductor:
            assert app.worker is not None
            health = await conductor.simulate_get("/healthz")
            ready = await conductor.simulate_get("/readyz")
        return health.status_code, ready.status_code

    assert asyncio.run(serve()) == (200, 200)
    assert app.worker is not None and not app.worker.producer._running
