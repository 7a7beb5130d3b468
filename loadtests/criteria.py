"""The seed's acceptance criteria (section 8) as pure verdicts over one run's measurements.

Kept free of I/O so the verdict logic is unit-tested directly; gate.py gathers the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """Limits the gate enforces; the defaults are the seed's, every one overridable."""

    min_rps: float = 100.0
    max_failures: int = 0
    max_p99_ms: float = 200.0
    max_catchup_s: float = 5.0


@dataclass(frozen=True)
class Measurements:
    """What one gate run observed. None means "could not be measured" (which fails its criterion)."""

    offered_rps: float
    achieved_rps: float
    requests: int
    failures: int
    acked: int  # readings in 2xx answers seen by Locust
    in_kafka: int  # this run's records in the topic
    stored: int  # this run's rows in the store
    e2e_count: float | None  # observations in the e2e histogram during the run
    e2e_p50_ms: float | None
    e2e_p95_ms: float | None
    e2e_p99_ms: float | None
    catchup_s: float | None  # last row stored minus last 2xx answer; None: never caught up
    # The same latency from the run's own rows (stored_at_ns - ingested_at_ns), exact.
    e2e_rows_count: int = 0
    e2e_rows_p50_ms: float | None = None
    e2e_rows_p99_ms: float | None = None
    e2e_rows_max_ms: float | None = None


@dataclass(frozen=True)
class Verdict:
    criterion: str
    measured: str
    limit: str
    ok: bool


def _ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return "inf" if math.isinf(value) else f"{value:.1f} ms"


def _under(value: float | None, limit: float) -> bool:
    return value is not None and not math.isnan(value) and value < limit


def evaluate(m: Measurements, t: Thresholds) -> list[Verdict]:
    """One verdict per criterion, in the order the summary table prints them."""
    p99_ok = _under(m.e2e_p99_ms, t.max_p99_ms)
    return [
        Verdict(
            "throughput",
            f"{m.achieved_rps:.1f} req/s (offered {m.offered_rps:.0f})",
            f">= {t.min_rps:g} req/s",
            m.achieved_rps >= t.min_rps,
        ),
        Verdict(
            "failures",
            f"{m.failures} of {m.requests} requests",
            f"<= {t.max_failures}",
            m.failures <= t.max_failures,
        ),
        Verdict(
            "loss",
            f"2xx {m.acked} / Kafka {m.in_kafka} / stored {m.stored}",
            "all equal, > 0",
            m.acked > 0 and m.acked == m.in_kafka == m.stored,
        ),
        Verdict(
            "e2e latency",
            f"p50 {_ms(m.e2e_p50_ms)} / p95 {_ms(m.e2e_p95_ms)} / p99 {_ms(m.e2e_p99_ms)} ({m.e2e_count or 0:.0f} obs)",
            f"p99 < {t.max_p99_ms:g} ms",
            p99_ok and bool(m.e2e_count),
        ),
        Verdict(
            "e2e latency, rows",
            f"p50 {_ms(m.e2e_rows_p50_ms)} / p99 {_ms(m.e2e_rows_p99_ms)} / max {_ms(m.e2e_rows_max_ms)} "
            f"({m.e2e_rows_count} rows)",
            f"p99 < {t.max_p99_ms:g} ms",
            _under(m.e2e_rows_p99_ms, t.max_p99_ms) and m.e2e_rows_count > 0,
        ),
        Verdict(
            "consumer caught up",
            "never" if m.catchup_s is None else f"{m.catchup_s:.2f} s after the last 2xx",
            f"<= {t.max_catchup_s:g} s",
            m.catchup_s is not None and m.catchup_s <= t.max_catchup_s,
        ),
    ]


def render(verdicts: list[Verdict]) -> str:
    """A plain-text table for CI logs, with a final PASS/FAIL line naming the failed criteria."""
    rows = [("criterion", "measured", "limit", "result")] + [
        (v.criterion, v.measured, v.limit, "ok" if v.ok else "FAIL") for v in verdicts
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = [v.criterion for v in verdicts if not v.ok]
    lines.append("")
    lines.append(f"GATE FAILED: {', '.join(failed)}" if failed else "GATE PASSED")
    return "\n".join(lines)
