"""The ASGI app gunicorn's uvicorn workers serve (`service.server.asgi:app`).

Importing this module starts nothing, like Falcon's `asgi.py`: the worker's app, its Kafka
producer (and delivery thread), stream tail and store are built at the ASGI lifespan's startup,
in the worker after fork, and the producer is flushed at the lifespan's shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Any

import falcon.asgi

from pipeline.settings import Settings
from pipeline.topics import ensure_topics
from service import metrics
from service.app import create_app
from service.ingest.producer import ReadingProducer
from service.read.pipeline_health import PipelineHealth
from service.read.resources import ReadSide
from service.read.stream import Tail
from service.server.worker import SHUTDOWN_HOOKS
from store import open_reader

log = logging.getLogger("service")

Scope = dict[str, Any]


@dataclass
class Worker:
    """What one worker process builds and owns: the app and the producer it flushes at exit."""

    app: falcon.asgi.App
    producer: ReadingProducer
    flush_timeout: float


def build(settings: Settings) -> Worker:
    """The worker's app and its dependencies (Kafka is contacted here, never at import)."""
    try:
        ensure_topics(settings.kafka)
    except Exception as e:
        log.warning("could not ensure topics on %s: %s", settings.kafka.kafka_broker, e)
    metrics.register()  # NOTE: before the producer, whose delivery thread reports at once
    producer = ReadingProducer(settings.kafka, settings.api)
    pool = settings.pool
    tail = Tail(settings.kafka)
    read = ReadSide(
        store=open_reader(pool.sink, pool.sqlite_path, pool.database_url),
        tail=tail,
        health=PipelineHealth(
            settings.api.prometheus_multiproc_dir,
            settings.api.pool_metrics_url or f"http://127.0.0.1:{pool.consumer_metrics_port}/metrics",
        ),
    )
    SHUTDOWN_HOOKS.append(tail.close)
    return Worker(create_app(settings.api, producer, read), producer, settings.api.ack_timeout_ms / 1000 + 10)


class Lifespan:
    """Builds the worker at the lifespan startup and hands every request to its app.

    NOTE: the producer is flushed at the lifespan shutdown, after the requests in flight were
    answered, not in gunicorn's worker_exit hook: uvicorn re-raises the SIGTERM it captured once
    it has stopped, so the worker dies before worker_exit runs.
    """

    def __init__(self) -> None:
        self.worker: Worker | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.worker is None:
            raise RuntimeError("a request before the lifespan startup (uvicorn needs lifespan='on')")
        await self.worker.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.worker = await asyncio.to_thread(build, Settings.from_env())
                except Exception as e:  # process boundary: the worker does not boot (WORKER_BOOT_ERROR)
                    log.exception("worker %s could not start", os.getpid())
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.worker is not None:
                    left = await asyncio.to_thread(self.worker.producer.close, self.worker.flush_timeout)
                    log.info("worker %s flushed its producer (%d undelivered)", os.getpid(), left)
                await send({"type": "lifespan.shutdown.complete"})
                return


app = Lifespan()
