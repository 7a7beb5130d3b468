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
    # Throughput is judged against the offered load too: a gate offering 200 req/s that passes
    # at 100 would hide a pipeline that keeps up with half of it.
    min_offered_share: float = 0.95
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
    acked: int  # readings in 2xx answers seen by Locust (its stats)
    in_kafka: int  # this run's records in the topic
    stored: int  # this run's rows in the store
    e2e_count: float | None  # observations in the e2e histogram during the run
    e2e_p50_ms: float | None
    e2e_p95_ms: float | None
    e2e_p99_ms: float | None
    catchup_s: float | None  # last row stored minus last 2xx answer; None: never caught up
    # Loss as identities (sensor_id, type, timestamp), so one lost and one extra reading do
    # not cancel out: the acknowledged set (recorded by the load's users) against the stored
    # set and the set in Kafka.
    acked_ids: int  # distinct identities acknowledged (must equal `acked`)
    lost: int  # acknowledged, not stored
    unacked_stored: int  # stored, never acknowledged
    kafka_missing: int  # acknowledged, not in Kafka
    kafka_unacked: int  # in Kafka, never acknowledged
    kafka_twice: int  # records in Kafka beyond one per identity
    # e2e measured from outside the pipeline: a probe's send (its own clock) -> its row
    # readable in the store (committed), polled every few ms.
    outside_count: int
    outside_p50_ms: float | None
    outside_p99_ms: float | None
    outside_max_ms: float | None
    outside_unseen: int  # probes acknowledged whose row never became readable
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
    min_rps = max(t.min_rps, t.min_offered_share * m.offered_rps)
    identities_equal = not (m.lost or m.unacked_stored or m.kafka_missing or m.kafka_unacked or m.kafka_twice)
    return [
        Verdict(
            "throughput",
            f"{m.achieved_rps:.1f} req/s (offered {m.offered_rps:.0f})",
            f">= {min_rps:g} req/s ({t.min_offered_share:g} x offered, at least {t.min_rps:g})",
            m.achieved_rps >= min_rps,
        ),
        Verdict(
            "failures",
            f"{m.failures} of {m.requests} requests",
            f"<= {t.max_failures}",
            m.failures <= t.max_failures,
        ),
        Verdict(
            "loss",
            f"2xx {m.acked} / Kafka {m.in_kafka} / stored {m.stored}; acked not stored {m.lost}, stored not acked"
            f" {m.unacked_stored}, acked not in Kafka {m.kafka_missing}, in Kafka not acked {m.kafka_unacked},"
            f" twice in Kafka {m.kafka_twice}",
            "the same readings everywhere, > 0",
            m.acked > 0 and m.acked == m.acked_ids == m.in_kafka == m.stored and identities_equal,
        ),
        Verdict(
            "e2e latency, outside",
            f"p50 {_ms(m.outside_p50_ms)} / p99 {_ms(m.outside_p99_ms)} / max {_ms(m.outside_max_ms)} "
            f"({m.outside_count} probes, {m.outside_unseen} never readable)",
            f"p99 < {t.max_p99_ms:g} ms",
            _under(m.outside_p99_ms, t.max_p99_ms) and m.outside_count > 0 and m.outside_unseen == 0,
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
