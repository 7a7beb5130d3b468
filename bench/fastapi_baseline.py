"""The FastAPI + pydantic v2 + aiokafka baseline: what a competent user would write for POST /sensor.

Same contract as the real API for one reading (validate -> 422, produce with acks=all and
wait for the acknowledgement -> 202 with partition/offset, Kafka errors -> 503), so
`bench.service` can put its figures beside ours in one run. Deliberately plain, idiomatic
FastAPI: a body model, a lifespan-owned producer, `send_and_wait`. Topic and broker come
from KAFKA_BROKER / TOPIC_NAME (ACK_TIMEOUT_MS optional), read straight from os.environ.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timezone
from typing import Annotated

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_lz4
from aiokafka.errors import KafkaError
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

# lz4 (as the real API) when cramjam is installed (it is pinned in requirements.txt), else none.
COMPRESSION: str | None = "lz4" if has_lz4() else None
ACK_TIMEOUT_S = int(os.environ.get("ACK_TIMEOUT_MS", "5000")) / 1000
TOPIC = os.environ.get("TOPIC_NAME", "sensor_data")
# BENCH_NO_KAFKA=1: the bare variant, validation and the 202 only (as bench/bare_app.py for Falcon).
NO_KAFKA = os.environ.get("BENCH_NO_KAFKA") == "1"


class Reading(BaseModel):
    """The same rules as pipeline/service's msgspec Reading; pydantic's lax mode otherwise."""

    model_config = ConfigDict(extra="forbid")

    sensor_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    timestamp: Annotated[AwareDatetime, AfterValidator(lambda t: t.astimezone(timezone.utc))]
    type: str = Field(min_length=1, max_length=32)
    value: float = Field(allow_inf_nan=False)
    unit: str | None = Field(default=None, max_length=16)
    location: str | None = Field(default=None, max_length=64)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One idempotent producer per worker process, flushed on shutdown."""
    if NO_KAFKA:
        yield
        return
    producer = AIOKafkaProducer(
        bootstrap_servers=os.environ.get("KAFKA_BROKER", "127.0.0.1:9092"),
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        compression_type=COMPRESSION,
    )
    await producer.start()
    app.state.producer = producer
    try:
        yield
    finally:
        await producer.stop()


app = FastAPI(lifespan=lifespan)


@app.exception_handler(RequestValidationError)
async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 without echoing the input: FastAPI's default handler answers 500 on NaN/1e999 (not JSON-encodable)."""
    errors = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


@app.post("/sensor", status_code=202)
async def post_sensor(reading: Reading) -> dict[str, str | int]:
    """Validated by FastAPI (422 on a bad reading); answered once Kafka acknowledged it."""
    received_ns = time.time_ns()
    if NO_KAFKA:
        return {"status": "accepted"}
    try:
        meta = await asyncio.wait_for(
            app.state.producer.send_and_wait(
                TOPIC,
                value=reading.model_dump_json(exclude_none=True).encode(),
                key=reading.sensor_id.encode(),
                timestamp_ms=received_ns // 1_000_000,
                headers=[("ingested_at_ns", str(received_ns).encode()), ("content-type", b"application/json")],
            ),
            ACK_TIMEOUT_S,
        )
    except (KafkaError, asyncio.TimeoutError) as e:
        raise HTTPException(503, f"Kafka did not acknowledge: {e!r}", headers={"Retry-After": "1"}) from e
    return {"status": "accepted", "partition": meta.partition, "offset": meta.offset}


@app.get("/healthz")
@app.get("/readyz")  # the producer started in the lifespan, so the worker is ready once it answers
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def command(workers: int, port: int, host: str = "127.0.0.1", server: str = "gunicorn") -> list[str]:
    """argv serving this app with `workers` processes: gunicorn + UvicornWorker (default) or plain uvicorn.

    Keep-alive 5 s as in service/server/gunicorn_conf.py; "auto" picks uvloop and httptools.
    """
    if server == "uvicorn":
        args = f"uvicorn {__name__}:app --workers {workers} --host {host} --port {port} --timeout-keep-alive 5"
        return [sys.executable, "-m", *args.split(), "--no-access-log"]
    args = f"gunicorn {__name__}:app -k uvicorn_worker.UvicornWorker -w {workers} -b {host}:{port} --keep-alive 5"
    return [sys.executable, "-m", *args.split(), "--no-control-socket"]
