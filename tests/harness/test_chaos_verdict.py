"""The fault suite's verdict: each invariant it checks can fail (no cluster needed here)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from harness.chaos import API_RECOVERY_BOUND_S, Verdict, out_of_order
from harness.openloop import Outcome

GOOD = Verdict("s", sent=100, ok=100, stored=100, aggregated=100, tail_s=45.0, final_window=50, api_recovery_s=3.0)


def test_a_clean_run_has_no_problems() -> None:
    assert GOOD.problems() == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"lost": [7], "lost_in_kafka": [7]}, "1 acknowledged readings not stored (1 of them in Kafka"),
        ({"aggregated": 101}, "the minute aggregates count 101 readings, the store holds 100"),
        ({"kafka_duplicates": [3]}, "1 readings are in Kafka more than once"),
        ({"out_of_order": [4]}, "1 readings precede in their partition"),
        ({"api_recovery_s": API_RECOVERY_BOUND_S + 0.1}, "non-2xx answers went on 30.1 s after the fault healed"),
        ({"tail_s": API_RECOVERY_BOUND_S}, "the load ran 30.0 s after the heal, not past the 30 s bound"),
        ({"final_window_not_2xx": 1}, "not recovered: 1 of the 50 requests"),
        ({"final_window": 0}, "not recovered: 0 of the 0 requests"),
        ({"other_5xx": 2}, "2 answers were 5xx but not 503"),
    ],
)
def test_each_invariant_fails_alone(change: dict[str, Any], words: str) -> None:
    (problem,) = dataclasses.replace(GOOD, **change).problems()
    assert words in problem


def outcome(i: int, sent_at: float, answered_at: float, status: int = 202) -> Outcome:
    return Outcome(i, sent_at, status, "", sent_at, answered_at)


def test_order_is_checked_only_between_a_2xx_and_what_was_sent_after_it() -> None:
    outcomes = [outcome(0, 0.0, 0.1), outcome(1, 0.2, 0.3), outcome(2, 0.05, 0.4), outcome(3, 1.0, 1.1, 503)]
    # 1 was sent after 0's 2xx and lands before it: reordered. 2 was sent while 0 was in
    # flight: either order is fine. 3 comes after everything it could be compared with.
    records = [("k", 1), ("k", 2), ("k", 0), ("k", 3), ("other", 9)]
    assert out_of_order(records, outcomes) == [1]
    assert out_of_order([("k", 0), ("k", 2), ("k", 1), ("k", 3)], outcomes) == []
    # A duplicate further on does not count: the first copy fixes the position.
    assert out_of_order([("k", 0), ("k", 1), ("k", 0)], outcomes) == []
