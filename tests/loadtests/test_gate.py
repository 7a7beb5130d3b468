"""The acceptance gate can fail: on a broken pipeline and on a threshold it cannot meet.

Both run the real gate (`python -m loadtests.gate`) against real Kafka, briefly and at a
low load; the full-length gate runs in `make test` after pytest.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.process import PYTHON, spawn

pytestmark = pytest.mark.integration  # real processes (see tests/conftest.py)

# NOTE: a 5 s run reaches less than 0.95 of its offered rate while Locust ramps up.
SHORT = ["--run-time", "5", "--users", "10", "--offered-rps", "50", "--min-rps", "10", "--min-offered-share", "0.2"]


def run_gate(tmp_path: Path, kafka_broker: str, *args: str) -> tuple[int, str]:
    """Run the gate to completion (stopped, with whatever it started, if the test is cut short)."""
    with spawn(
        [PYTHON, "-m", "loadtests.gate", "--kafka-broker", kafka_broker, "--reports", str(tmp_path), *args],
        {},
        tmp_path / "gate.log",
    ) as proc:
        code = proc.popen.wait(150)
        return code, proc.log()


def verdict(output: str, criterion: str) -> str:
    """The result column ("ok" or "FAIL") of one criterion's row in the summary table."""
    match = re.search(rf"^{re.escape(criterion)}\s{{2,}}.*\s(ok|FAIL)$", output, re.MULTILINE)
    assert match, f"no row for {criterion!r} in:\n{output[-3000:]}"
    return match.group(1)


def test_gate_fails_on_loss_when_no_pool_stores_the_readings(tmp_path: Path, kafka_broker: str) -> None:
    code, out = run_gate(
        tmp_path, kafka_broker, *SHORT, "--without-pool", "--warmup-timeout", "3", "--max-catchup-s", "1"
    )

    assert code == 1, out[-3000:]
    assert verdict(out, "loss") == "FAIL"
    # Acknowledged and in Kafka, never stored: every acknowledged identity is missing from the store.
    assert re.search(r"2xx (\d+) / Kafka \1 / stored 0; acked not stored \1, ", out), out[-3000:]
    assert verdict(out, "consumer caught up") == "FAIL"
    assert verdict(out, "e2e latency, outside") == "FAIL"  # the probes' rows never became readable
    assert verdict(out, "throughput") == "ok"
    assert re.search(r"^GATE FAILED: .*loss", out, re.MULTILINE)
    assert list(tmp_path.glob("gate-*/locust.html")), "Locust's HTML report is kept"


def test_gate_fails_naming_the_thresholds_it_cannot_meet(tmp_path: Path, kafka_broker: str) -> None:
    code, out = run_gate(tmp_path, kafka_broker, *SHORT, "--min-rps", "100000", "--max-p99-ms", "0.01")

    assert code == 1, out[-3000:]
    assert re.search(
        r"^GATE FAILED: throughput, e2e latency, outside, e2e latency, e2e latency, rows$", out, re.MULTILINE
    ), out[-3000:]
    # The pipeline itself was healthy: every acknowledged reading reached Kafka and the store.
    assert verdict(out, "loss") == "ok"
    assert verdict(out, "failures") == "ok"
    assert list(tmp_path.glob("gate-*/locust_stats.csv")), "Locust's CSV is kept"
