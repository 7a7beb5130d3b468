"""The pool's metrics (names fixed by docs/contract.md), shared by every process of the pool.

NOTE: prometheus-client chooses multiprocess mode when first imported, so the supervisor
sets PROMETHEUS_MULTIPROC_DIR (the pool's own folder, pipeline/metrics_folder.py) before
anything imports this module; spawned workers inherit it.
"""

from __future__ import annotations

import bisect
from collections import Counter as Counter_
from collections.abc import Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

from pipeline.stages import stage_histogram

# NOTE: fine steps between 5 and 300 ms, where the 200 ms budget and our p99 live, so the
# quantiles interpolated from the buckets (the CI gate, the dashboard) are not coarse.
# fmt: off
E2E_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
    0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0,
)
# fmt: on
WRITE_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
BATCH_BUCKETS = (1, 5, 10, 50, 100, 500, 1000, 2500, 5000, 10000)

# The latency budget by stage (pipeline/stages.py).
APPEND_TO_FETCH = stage_histogram().labels("append_to_fetch")  # per record: broker LogAppendTime -> poll returned
FETCH_TO_STORE = stage_histogram().labels("fetch_to_store")  # per batch: poll returned -> sink write done
STORE_TO_COMMIT = stage_histogram().labels("store_to_commit")  # per batch: write done -> offsets committed

READINGS = Counter(
    "sensor_consumer_readings_total",
    "Records handled by the pool, by outcome",
    ["result"],
)
E2E_LATENCY = Histogram(
    "sensor_pipeline_e2e_latency_seconds",
    "API receipt (ingested_at_ns) -> stored in the sink",
    buckets=E2E_BUCKETS,
)
# NOTE: a reading stored "before" the API received it means the two clocks disagree; it is
# counted here, not clamped to 0 in E2E_LATENCY (which would hide the skew as a fast reading).
E2E_NEGATIVE = Counter(
    "sensor_pipeline_e2e_negative_total",
    "Readings whose API receipt (ingested_at_ns) is later than their store time: clock skew",
)
BATCH_SIZE = Histogram("sensor_consumer_batch_size", "Records per consumed batch", buckets=BATCH_BUCKETS)
SINK_WRITE = Histogram(
    "sensor_sink_write_duration_seconds",
    "One batch write (flush) to the sink",
    ["sink"],
    buckets=WRITE_BUCKETS,
)
# NOTE: a partition belongs to one live worker at a time; the previous owner sets it to 0
# on revoke, so the max over live workers is the current lag.
LAG = Gauge(
    "sensor_consumer_lag",
    "High watermark - position, per partition",
    ["partition"],
    multiprocess_mode="livemax",
)
WORKERS_ALIVE = Gauge(
    "sensor_consumer_workers_alive",
    "Worker processes running",
    multiprocess_mode="livemax",
)
# NOTE: one worker (slot 0) reads it from the store's ledger every MISSING_REFRESH_S and sets
# it; no other process sets it, and a dead worker's value is dropped (mark_dead), so the max
# over live workers is the store's figure (docs/contract.md, "Completeness").
MISSING = Gauge(
    "sensor_readings_missing",
    "Seq numbers missing between the first and last received, per type, summed over sensors",
    ["type"],
    multiprocess_mode="livemax",
)
STORED, DUPLICATE, DLQ = (READINGS.labels(r) for r in ("stored", "duplicate", "dlq"))
RESTARTS = Counter(
    "sensor_consumer_worker_restarts_total",
    "Workers restarted after an unexpected exit",
)
SINK_ERRORS = Counter("sensor_consumer_sink_errors_total", "Failed sink writes (retried)", ["sink"])
ALERTS = Counter("sensor_consumer_alerts_total", "Threshold alerts raised (produced to ALERTS_TOPIC)", ["rule"])
RETENTION_DELETED = Counter(
    "sensor_consumer_retention_deleted_total", "Rows deleted by retention (readings and aggregates)"
)

# Webhook notifications (consumer_pool/notifier.py; docs/contract.md, "Webhook notifications").
WEBHOOK_SENT = Counter("sensor_alert_webhook_sent_total", "Alert events delivered to a webhook URL (2xx)")
WEBHOOK_FAILED = Counter(
    "sensor_alert_webhook_failed_total",
    "Failed webhook delivery attempts, by reason (connect, timeout, http_4xx, http_5xx, gave_up)",
    ["reason"],
)
# NOTE: one deliverer (worker 0) sets it; livemax drops it with that process.
WEBHOOK_OLDEST_PENDING = Gauge(
    "sensor_alert_webhook_oldest_pending_seconds",
    "Age of the oldest alert event not yet delivered to every URL (0: none pending)",
    multiprocess_mode="livemax",
)


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """Observe many values with one increment per bucket instead of one per value.

    PERF: Histogram.observe() costs a few mmap writes per call; per reading that was a
    fifth of a worker's CPU at 50k readings/s. This uses the client's bucket counters
    (`_upper_bounds`, `_buckets`, `_sum`, stable across prometheus-client releases) and
    gives exactly the same series as calling observe() for each value.
    """
    if not values:
        return
    bounds = histogram._upper_bounds  # type: ignore[attr-defined]
    counts = Counter_(bisect.bisect_left(bounds, v) for v in values)
    for index, count in counts.items():
        histogram._buckets[index].inc(count)  # type: ignore[attr-defined]
    histogram._sum.inc(sum(values))  # type: ignore[attr-defined]


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics for the whole pool: every scrape reads all processes' files."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=addr, registry=registry)


def mark_dead(pid: int) -> None:
    """Drop a dead worker's live gauges from the aggregate."""
    multiprocess.mark_process_dead(pid)
