"""harness.poll: one poller that returns the check's result, fails fast on a dead process and
says what it waited for (with the last error and the log) when it times out."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.poll import ProcessExited, wait_until
from harness.process import spawn


def test_returns_the_first_truthy_result_and_keeps_polling_through_errors() -> None:
    calls = iter([ValueError("not yet"), None, 0, {"done": 1}])

    def check() -> object:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert wait_until("the answer", check, 5, interval=0.01) == {"done": 1}


def test_timeout_names_what_and_the_last_error() -> None:
    def check() -> bool:
        raise ValueError("broker says no")

    with pytest.raises(TimeoutError, match=r"waiting for the rows .*broker says no"):
        wait_until("the rows", check, 0.1, interval=0.01)


def test_checks_once_even_without_time_left() -> None:
    assert wait_until("instant", lambda: "yes", 0) == "yes"


def test_a_process_that_exits_fails_at_once_with_its_log(tmp_path: Path) -> None:
    code = "print('boot failed: no database'); raise SystemExit(3)"
    with spawn([sys.executable, "-c", code], {}, tmp_path / "child.log") as proc:
        proc.popen.wait(10)
        with pytest.raises(ProcessExited, match=r"(?s)exited with 3 before the pool to start.*boot failed"):
            wait_until("the pool to start", lambda: False, 60, proc)


def test_spawn_stops_the_child_when_the_body_raises(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError),
        spawn([sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path / "c.log") as p,
    ):
        child = p
        raise RuntimeError("test body failed")
    assert not child.alive()
