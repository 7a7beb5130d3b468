"""The gate's thresholds and load come from flags, with GATE_* environment defaults."""

from __future__ import annotations

import pytest

from loadtests.gate import parse_args


def test_defaults_are_the_seed_criteria_at_200_offered_req_s(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATE_MIN_RPS", "GATE_MAX_P99_MS", "GATE_MAX_CATCHUP_S", "GATE_OFFERED_RPS", "GATE_RUN_TIME"):
        monkeypatch.delenv(name, raising=False)

    args = parse_args([])

    assert (args.min_rps, args.max_failures, args.max_p99_ms) == (100, 0, 200)
    assert args.offered_rps >= 150
    assert args.run_time <= 30


def test_environment_sets_defaults_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATE_MAX_P99_MS", "50")
    monkeypatch.setenv("GATE_MIN_RPS", "300")

    args = parse_args(["--min-rps", "120"])

    assert args.max_p99_ms == 50
    assert args.min_rps == 120
