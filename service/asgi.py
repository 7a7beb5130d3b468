"""The module-level ASGI app gunicorn's uvicorn workers serve. Imported in each worker after
fork, so the Kafka producer (and its delivery thread) belongs to that worker alone."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from pipeline.settings import Settings
from pipeline.topics import ensure_topics
from service.app import create_app
from service.pipeline_health import PipelineHealth
from service.producer import ReadingProducer
from service.read_resources import ReadSide
from service.stream import Tail
from service.worker import SHUTDOWN_HOOKS
from store import open_reader

log = logging.getLogger("service")


class FlushOnShutdown:
    """Flush the producer when the server shuts down, after the requests in flight were answered.

    NOTE: this is the ASGI lifespan shutdown, not gunicorn's worker_exit hook: uvicorn re-raises
    the SIGTERM it captured once it has stopped, so the worker dies before worker_exit runs.
    """

    def __init__(self, producer: ReadingProducer, timeout: float) -> None:
        self.producer = producer
        self.timeout = timeout

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        left = await asyncio.to_thread(self.producer.close, self.timeout)
        log.info("worker %s flushed its producer (%d undelivered)", os.getpid(), left)


settings = Settings.from_env()
try:
    ensure_topics(settings.kafka)
except Exception as e:
    log.warning("could not ensure topics on %s: %s", settings.kafka.kafka_broker, e)
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
app = create_app(settings.api, producer, read)
SHUTDOWN_HOOKS.append(tail.close)
app.add_middleware(FlushOnShutdown(producer, settings.api.ack_timeout_ms / 1000 + 10))
