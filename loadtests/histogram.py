"""Prometheus histograms over a time window: scrape, diff two scrapes, interpolate quantiles.

The pool's e2e histogram is cumulative since the pool started; the gate wants the latency of
its own run only, so it scrapes before and after and works on the difference of the buckets.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import requests
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts by upper bound (`le`, +Inf included), summed over label sets."""

    buckets: dict[float, float]
    count: float
    sum: float

    def __sub__(self, before: Histogram) -> Histogram:
        """The observations made between two scrapes of the same histogram."""
        return Histogram(
            buckets={le: n - before.buckets.get(le, 0.0) for le, n in self.buckets.items()},
            count=self.count - before.count,
            sum=self.sum - before.sum,
        )

    def quantile(self, q: float) -> float:
        """Linear interpolation inside the bucket holding rank q*count, as PromQL's histogram_quantile.

        NOTE: unlike PromQL, a rank that falls in the +Inf bucket gives +inf rather than the
        highest finite bound: a gate must not pass on a latency it cannot bound. NaN when empty.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        bounds = sorted(self.buckets)
        total = self.buckets.get(math.inf, self.count)
        if total <= 0:
            return math.nan
        rank = q * total
        lower, below = 0.0, 0.0
        for le in bounds:
            cumulative = self.buckets[le]
            if cumulative >= rank and cumulative > below:
                if math.isinf(le):
                    return math.inf
                return lower + (le - lower) * (rank - below) / (cumulative - below)
            lower, below = le, cumulative
        return math.inf


def parse_histogram(text: str, name: str) -> Histogram | None:
    """The histogram `name` from Prometheus text exposition, summed over its labels; None if absent."""
    buckets: dict[float, float] = defaultdict(float)
    count = total = 0.0
    found = False
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        found = True
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                buckets[float(sample.labels["le"])] += sample.value
            elif sample.name == f"{name}_count":
                count += sample.value
            elif sample.name == f"{name}_sum":
                total += sample.value
    return Histogram(dict(buckets), count, total) if found else None


def scrape_histogram(url: str, name: str, timeout: float = 5.0) -> Histogram | None:
    """Scrape `url` (a /metrics endpoint) for one histogram; None if the endpoint or metric is missing."""
    try:
        resp = requests.get(url, timeout=timeout)
        resp.raise_for_status()
    except requests.RequestException:
        return None
    return parse_histogram(resp.text, name)
