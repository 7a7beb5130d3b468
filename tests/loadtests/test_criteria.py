"""The gate's verdicts: each criterion passes and fails on its own."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace
from typing import Any

import pytest

from loadtests.criteria import Measurements, Thresholds, evaluate, render

GOOD = Measurements(
    offered_rps=200,
    achieved_rps=191,
    requests=5700,
    failures=0,
    acked=9000,
    in_kafka=9000,
    stored=9000,
    e2e_count=9000,
    e2e_p50_ms=8.0,
    e2e_p95_ms=20.0,
    e2e_p99_ms=40.0,
    catchup_s=0.3,
    acked_ids=9000,
    lost=0,
    unacked_stored=0,
    kafka_missing=0,
    kafka_unacked=0,
    kafka_twice=0,
    outside_count=120,
    outside_p50_ms=12.0,
    outside_p99_ms=60.0,
    outside_max_ms=80.0,
    outside_unseen=0,
    e2e_rows_count=9000,
    e2e_rows_p50_ms=7.5,
    e2e_rows_p99_ms=38.0,
    e2e_rows_max_ms=90.0,
)


DEFAULTS = Thresholds()


def failed(m: Measurements, t: Thresholds = DEFAULTS) -> list[str]:
    return [v.criterion for v in evaluate(m, t) if not v.ok]


def test_a_healthy_run_passes_every_criterion() -> None:
    assert failed(GOOD) == []
    assert render(evaluate(GOOD, Thresholds())).endswith("GATE PASSED")


@pytest.mark.parametrize(
    ("change", "criterion"),
    [
        ({"achieved_rps": 99.9}, "throughput"),
        ({"achieved_rps": 189.9}, "throughput"),  # below 0.95 of the 200 offered
        ({"lost": 1, "unacked_stored": 1}, "loss"),  # one lost, one extra: the counts still agree
        ({"kafka_missing": 1, "kafka_unacked": 1}, "loss"),
        ({"kafka_twice": 1}, "loss"),
        ({"acked_ids": 8999}, "loss"),  # the users' record disagrees with Locust's stats
        ({"outside_p99_ms": 200.0}, "e2e latency, outside"),
        ({"outside_unseen": 1}, "e2e latency, outside"),  # a probe acknowledged, never readable
        ({"outside_count": 0, "outside_p99_ms": None}, "e2e latency, outside"),
        ({"failures": 1}, "failures"),
        ({"stored": 8999}, "loss"),
        (
            {"in_kafka": 9001},
            "loss",
        ),  # more in Kafka than acknowledged: something wrong was accepted
        (
            {"acked": 0, "in_kafka": 0, "stored": 0},
            "loss",
        ),  # nothing measured proves nothing
        ({"e2e_p99_ms": 200.0}, "e2e latency"),
        ({"e2e_p99_ms": math.inf}, "e2e latency"),
        (
            {"e2e_p99_ms": None, "e2e_count": None},
            "e2e latency",
        ),  # pool metrics unreachable
        ({"e2e_count": 0, "e2e_p99_ms": math.nan}, "e2e latency"),
        ({"catchup_s": 5.01}, "consumer caught up"),
        ({"catchup_s": None}, "consumer caught up"),
    ],
)
def test_each_criterion_fails_alone(change: dict[str, Any], criterion: str) -> None:
    assert failed(dataclasses.replace(GOOD, **change)) == [criterion]


def test_thresholds_are_overridable() -> None:
    strict = Thresholds(min_rps=1000, max_failures=0, max_p99_ms=10, max_catchup_s=0.1)

    assert failed(GOOD, strict) == [
        "throughput",
        "e2e latency, outside",
        "e2e latency",
        "e2e latency, rows",
        "consumer caught up",
    ]


def test_the_table_names_every_failed_criterion() -> None:
    text = render(evaluate(dataclasses.replace(GOOD, failures=3, stored=10), Thresholds()))

    assert text.splitlines()[-1] == "GATE FAILED: failures, loss"
    assert "2xx 9000 / Kafka 9000 / stored 10" in text


def test_the_latency_from_the_runs_own_rows_must_pass_too() -> None:
    assert failed(replace(GOOD, e2e_rows_p99_ms=250.0), DEFAULTS) == ["e2e latency, rows"]
    assert failed(replace(GOOD, e2e_rows_count=0, e2e_rows_p99_ms=None), DEFAULTS) == ["e2e latency, rows"]
