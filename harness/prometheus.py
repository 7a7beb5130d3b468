"""Scraping /metrics for the tests, the gate and the benches; the parsing and the quantiles
are pipeline/prometheus_text.py's (the API's /pipeline summary uses them too)."""

from __future__ import annotations

import requests

from pipeline.prometheus_text import (
    Histogram,
    Labels,
    Samples,
    diff,
    histogram,
    metric,
    parse,
    parse_histogram,
    series,
)

__all__ = [
    "Histogram",
    "Labels",
    "Samples",
    "diff",
    "histogram",
    "metric",
    "metrics_url",
    "parse",
    "parse_histogram",
    "scrape",
    "scrape_histogram",
    "series",
]


def metrics_url(url_or_port: str | int) -> str:
    """A port means the /metrics of 127.0.0.1:port; a string is the URL itself."""
    return f"http://127.0.0.1:{url_or_port}/metrics" if isinstance(url_or_port, int) else url_or_port


def scrape(url_or_port: str | int, timeout: float = 10.0) -> Samples:
    """GET a /metrics endpoint and parse it; raises requests.RequestException when it does not answer."""
    resp = requests.get(metrics_url(url_or_port), timeout=timeout)
    resp.raise_for_status()
    return parse(resp.text)


def scrape_histogram(url_or_port: str | int, name: str, timeout: float = 5.0) -> Histogram | None:
    """Scrape a /metrics endpoint for one histogram; None if the endpoint or the metric is missing."""
    try:
        samples = scrape(url_or_port, timeout)
    except requests.RequestException:
        return None
    return histogram(samples, name)
