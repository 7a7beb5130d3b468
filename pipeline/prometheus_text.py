"""Prometheus text exposition: one parser for every /metrics read, and histogram quantiles.

Used by the API's /pipeline summary and, through harness/prometheus.py, by the tests, the
gate and the benches: counters by name and labels (`metric`), and the latency of a window
as quantiles of the difference of two scrapes' cumulative buckets (`Histogram`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition as {(sample name, sorted labels): value}."""
    # NOTE: imported here, not at import: importing any of prometheus_client picks its
    # multiprocess mode (pipeline/metrics_folder.py), and the API imports this module early.
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples named `name` whose labels include `labels` (0 when absent)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def series(samples: Samples, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample named `name`."""
    return [(dict(ls), v) for (n, ls), v in samples.items() if n == name]


def diff(after: Samples, before: Samples) -> Samples:
    """What every series gained between two scrapes (counters and histogram buckets)."""
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


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


def histogram(samples: Samples, name: str, **only: str) -> Histogram | None:
    """The histogram `name` among `samples`, summed over its label sets (those including the
    labels `only`, e.g. stage="fetch_to_store"); None if absent."""
    buckets: dict[float, float] = defaultdict(float)
    count = total = 0.0
    found = False
    wanted = set(only.items())
    for (sample, labels), value in samples.items():
        if wanted and not wanted <= set(labels):
            continue
        if sample == f"{name}_bucket":
            buckets[float(dict(labels)["le"])] += value
        elif sample == f"{name}_count":
            count += value
        elif sample == f"{name}_sum":
            total += value
        else:
            continue
        found = True
    return Histogram(dict(buckets), count, total) if found else None


def parse_histogram(text: str, name: str) -> Histogram | None:
    """The histogram `name` from Prometheus text exposition, summed over its labels; None if absent."""
    return histogram(parse(text), name)
