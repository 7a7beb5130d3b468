"""The open-loop sender records exactly one outcome per request, whatever went wrong with it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from harness import openloop
from harness.openloop import Outcome, answered_once
from harness.process import free_port


def test_an_error_of_any_type_is_an_outcome_not_a_silent_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Odd readings fail with an error no `except` names (it used to leave no outcome at all),
    even ones get no answer (nothing listens on the port): every request has one outcome."""

    def numbered(i: int, prefix: str) -> dict[str, object]:
        if i % 2:
            raise RuntimeError(f"reading {i} could not be built")
        return {"i": i}

    monkeypatch.setattr(openloop, "numbered", numbered)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    sent, outcomes = asyncio.run(openloop._run(f"http://127.0.0.1:{free_port()}", "ol", 40, 2, stop))  # type: ignore[arg-type]
    outcomes = answered_once(sorted(outcomes, key=lambda o: o.i), sent)
    assert sent >= 10 and {o.status for o in outcomes} == {None}
    assert {o.error.split(":")[0] for o in outcomes if o.i % 2} == {"RuntimeError"}
    assert {o.error.split(":")[0] for o in outcomes if not o.i % 2} == {"ConnectError"}


def test_a_request_without_an_outcome_or_with_two_fails_the_run() -> None:
    def outcome(i: int) -> Outcome:
        return Outcome(i, 0.0, 202)

    with pytest.raises(AssertionError, match=r"no outcome for \[1\]"):
        answered_once([outcome(0), outcome(2)], 3)
    with pytest.raises(AssertionError, match=r"two for \[1\]"):
        answered_once([outcome(0), outcome(1), outcome(1)], 2)
