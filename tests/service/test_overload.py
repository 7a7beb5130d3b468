"""Twice the API's capacity, open loop: every request gets an HTTP status (2xx, 429, or 503
with Retry-After), none a reset, an EOF or a timeout (docs/contract.md, "Every request gets
an HTTP status").

The capacity is measured first, on this box as it is loaded now, with one API worker: vegeta
offers rising rates for a few seconds each; the capacity is the most 2xx per second seen
(vegeta's throughput: 2xx over the attack and the wait for its answers; past the capacity it
stops following the offered rate). The load is vegeta's (bench/vegeta.py,
open loop, Go): harness/openloop.py's Python sender reached ~300 req/s on this box under
load, not twice the capacity (~1,000 2xx/s for one worker when measured)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench import vegeta
from tests.conftest import ApiFactory

STEP_S = 3.0
OVERLOAD_S = 10.0
TIMEOUT_S = 15.0  # vegeta's per-request bound: past it a request counts as unanswered


def allowed(r: vegeta.Result) -> bool:
    if 200 <= r.code < 300 or r.code == 429:
        return True
    return r.code == 503 and r.header("Retry-After") is not None


def capacity(url: str, tmp_path: Path) -> float:
    best = 0.0
    for rate in (250, 500, 1000, 2000, 4000):
        targets = vegeta.write_targets(tmp_path / f"cap-{rate}.json", url, f"cap{rate}-", int(rate * STEP_S))
        report = vegeta.attack(targets, rate, STEP_S, timeout_s=TIMEOUT_S)
        # NOTE: vegeta's throughput: 2xx over the attack plus the wait for its last answers
        # (2xx / STEP_S would count late answers as if they came within the step).
        print(f"[overload] offered {rate} req/s: {report.throughput:.0f} 2xx/s, statuses {report.status_codes}")
        best = max(best, report.throughput)
        if report.throughput < 0.9 * rate:
            break  # saturated
    return best


def test_twice_the_capacity_every_request_gets_an_http_status(start_api: ApiFactory, tmp_path: Path) -> None:
    base, _ = start_api(API_WORKERS="1")
    url = f"{base}/sensor"
    cap = capacity(url, tmp_path)
    rate = int(2 * cap)
    targets = vegeta.write_targets(tmp_path / "over.json", url, "over-", int(rate * OVERLOAD_S))
    out = tmp_path / "over.bin"
    report = vegeta.attack(targets, rate, OVERLOAD_S, timeout_s=TIMEOUT_S, results=out)
    done = vegeta.results(out)
    statuses = Counter(r.code for r in done)
    print(
        f"[overload] offered {rate} req/s for {OVERLOAD_S:g} s: sent {report.rate:.0f} req/s, {len(done)} requests,"
        f" statuses {dict(statuses)}, p99 {report.p99_ms:.0f} ms, max {report.max_ms:.0f} ms"
    )
    bad = [r for r in done if not allowed(r)]
    assert not bad, (
        f"{len(bad)} of {len(done)} without an allowed status: {Counter((r.code, r.error[:80]) for r in bad)}"
    )
    # The overload took effect: the API could not answer everything 2xx. NOTE: on this loaded
    # box vegeta sent less than asked (2,100-2,400 req/s of 4,462-6,812 asked, against 1,000-
    # 3,400 2xx/s measured as the capacity, which swings with the box's load); the 503s show
    # the API got more than it could answer.
    assert statuses[503] > 0, f"no request was shed at {report.rate:.0f} req/s: {dict(statuses)}"
