"""Service metrics (names fixed by docs/contract.md), multiprocess-safe.

NOTE: nothing is registered at import. `register()` imports prometheus-client and creates every
metric below, once per process: the app factory calls it (service/app.py), so in a gunicorn
worker it runs in the ASGI lifespan (service/server/asgi.py), after the master set the metrics
folder (service/server/gunicorn_conf.py, pipeline/metrics_folder.py). Reading a metric before
that raises an AttributeError that says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)

# Requests refused with a 4xx, by reason (service/errors.py; 408 and 431 of the HTTP protocol too).
REJECT_REASONS = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    431: "headers_too_large",
}

# Set by register().
REQUESTS: Counter
REQUEST_DURATION: Histogram
READINGS: Counter
ACCEPTED: Any  # READINGS' children, by outcome
REJECTED: Any
FAILED: Any
DELIVERY_DURATION: Histogram
RECEIPT_TO_PRODUCE: Any  # the stage histogram's children (pipeline/stages.py)
PRODUCE_TO_ACK: Any
SHED: Counter
DELIVERY_ERRORS: Counter
QUEUE_DEPTH: Gauge
STREAM_CLIENTS: Gauge
REJECTED_REQUESTS: Counter
WORKER_REQUESTS: Gauge
_registered = False


def register() -> None:
    """Create the metrics of this process (later calls do nothing)."""
    global REQUESTS, REQUEST_DURATION, READINGS, ACCEPTED, REJECTED, FAILED, DELIVERY_DURATION
    global RECEIPT_TO_PRODUCE, PRODUCE_TO_ACK, SHED, DELIVERY_ERRORS, QUEUE_DEPTH, STREAM_CLIENTS
    global REJECTED_REQUESTS, WORKER_REQUESTS, _registered
    if _registered:
        return
    from prometheus_client import Counter, Gauge, Histogram

    from pipeline.stages import stage_histogram

    REQUESTS = Counter("sensor_api_requests_total", "HTTP requests answered", ["route", "method", "status"])
    REQUEST_DURATION = Histogram(
        "sensor_api_request_duration_seconds", "HTTP request duration", ["route"], buckets=LATENCY_BUCKETS
    )
    READINGS = Counter("sensor_api_readings_total", "Readings by outcome", ["result"])
    DELIVERY_DURATION = Histogram(
        "sensor_kafka_delivery_duration_seconds",
        "produce() to delivery report",
        buckets=LATENCY_BUCKETS,
    )
    # The latency budget by stage (pipeline/stages.py).
    stage = stage_histogram()
    RECEIPT_TO_PRODUCE = stage.labels("receipt_to_produce")
    PRODUCE_TO_ACK = stage.labels("produce_to_ack")
    SHED = Counter("sensor_api_shed_total", "Requests answered 503 at once because the worker was overloaded")
    DELIVERY_ERRORS = Counter("sensor_kafka_delivery_errors_total", "Failed Kafka deliveries", ["reason"])
    QUEUE_DEPTH = Gauge(
        "sensor_kafka_queue_depth",
        "Messages in the producers' local queues",
        multiprocess_mode="livesum",
    )
    STREAM_CLIENTS = Gauge(
        "sensor_api_stream_clients",
        "Open GET /stream responses, all workers",
        multiprocess_mode="livesum",
    )
    # NOTE: create the known label values at zero, so the first event is an increase that
    # rate()/increase() and the alert rules can see (a series born at 1 shows no increase).
    ACCEPTED, REJECTED, FAILED = (READINGS.labels(r) for r in ("accepted", "rejected", "failed"))
    for reason in ("timeout", "queue_full"):
        DELIVERY_ERRORS.labels(reason)
    REJECTED_REQUESTS = Counter(
        "sensor_api_rejected_requests_total", "Requests refused with a 4xx, by reason", ["reason"]
    )
    for reason in (*REJECT_REASONS.values(), "unsupported_encoding", "bad_compression"):
        REJECTED_REQUESTS.labels(reason)
    # NOTE: an extra beside the contract's list; one series per live worker (pid label) so a single
    # scrape shows how requests spread over gunicorn workers.
    WORKER_REQUESTS = Gauge(
        "sensor_api_worker_requests_served",
        "Requests served by each live worker process",
        multiprocess_mode="liveall",
    )
    _registered = True


def __getattr__(name: str) -> Any:
    if name in __annotations__:
        raise AttributeError(f"service.metrics.{name}: service.metrics.register() was not called in this process")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def render(multiproc_dir: str = "") -> tuple[bytes, str]:
    """Prometheus text for this process, or for every worker when a multiprocess folder is set."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

    if multiproc_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
