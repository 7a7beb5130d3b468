"""GET /pipeline: the dashboard's health figures, from the same metrics Prometheus scrapes.

The API's own counters (all its workers) and the pool's /metrics are read on request and
kept for a short while, so rates and e2e latency quantiles are over the last WINDOW_S, as
a Prometheus `rate()` over that range would give them.
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.request
from collections import deque
from typing import Any

from pipeline.prometheus_text import Histogram, Samples, histogram, metric, parse
from service import metrics

WINDOW_S = 10.0
E2E = "sensor_pipeline_e2e_latency_seconds"


def _fetch(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # the configured pool URL
        return resp.read().decode()


class PipelineHealth:
    def __init__(self, multiproc_dir: str, pool_metrics_url: str, timeout: float = 1.0) -> None:
        self.multiproc_dir = multiproc_dir
        self.pool_metrics_url = pool_metrics_url
        self.timeout = timeout
        self._history: deque[tuple[float, Samples, Samples | None]] = deque()

    async def _pool(self) -> Samples | None:
        try:
            return parse(await asyncio.to_thread(_fetch, self.pool_metrics_url, self.timeout))
        except (OSError, ValueError):
            return None

    async def summary(self) -> dict[str, Any]:
        now = time.time()
        api = parse((await asyncio.to_thread(metrics.render, self.multiproc_dir))[0].decode())
        pool = await self._pool()
        self._history.append((now, api, pool))
        while len(self._history) > 2 and now - self._history[1][0] >= WINDOW_S:
            self._history.popleft()
        then, api_then, pool_then = self._history[0]
        span = now - then
        out: dict[str, Any] = {
            "at": round(now, 3),
            "window_s": round(span, 3),
            "ingest_rate": _rate(api, api_then, "sensor_api_readings_total", span, result="accepted"),
            "stored_rate": None,
            "e2e_p50_ms": None,
            "e2e_p99_ms": None,
            "lag": None,
            "workers_alive": None,
            "dlq_total": None,
            "pool_reachable": pool is not None,
        }
        if pool is None:
            return out
        out["lag"] = metric(pool, "sensor_consumer_lag")
        out["workers_alive"] = metric(pool, "sensor_consumer_workers_alive")
        out["dlq_total"] = metric(pool, "sensor_consumer_readings_total", result="dlq")
        if pool_then is not None:
            out["stored_rate"] = _rate(pool, pool_then, "sensor_consumer_readings_total", span, result="stored")
            window = _window(histogram(pool, E2E), histogram(pool_then, E2E))
            if window is not None and window.count > 0:
                out["e2e_p50_ms"] = _ms(window.quantile(0.5))
                out["e2e_p99_ms"] = _ms(window.quantile(0.99))
        return out


def _rate(now: Samples, then: Samples, name: str, span: float, **labels: str) -> float | None:
    if span <= 0:
        return None
    return round(max(metric(now, name, **labels) - metric(then, name, **labels), 0.0) / span, 2)


def _window(now: Histogram | None, then: Histogram | None) -> Histogram | None:
    if now is None:
        return None
    return now - then if then is not None and then.count <= now.count else now


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) or math.isinf(seconds) else round(seconds * 1000, 2)
