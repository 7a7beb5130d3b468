"""The one polling loop: wait until something is true, or fail saying what and why.

Waiting on a process is the common case, so a poll that watches one fails as soon as it
exits (rather than after the whole timeout) and every failure quotes the end of its log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import requests

from harness.process import Process

T = TypeVar("T")

LOG_TAIL = 4000


class ProcessExited(AssertionError):
    """The process we waited on died first."""


def wait_until(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    proc: Process | None = None,
    interval: float = 0.2,
) -> T:
    """Poll `check()` until it returns something truthy and return that.

    Exceptions from `check` count as "not yet" (the last one is reported). `check` runs at
    least once, even with a timeout of 0. Raises ProcessExited at once when `proc` has
    exited, TimeoutError naming `what` after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        if proc is not None and not proc.alive():
            raise ProcessExited(
                f"{proc.name} exited with {proc.popen.returncode} before {what}:\n{proc.log_tail(LOG_TAIL)}"
            )
        try:
            result = check()
            if result:
                return result
        except Exception as e:  # keep polling, report the last one
            last = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    error = f" (last error: {last!r})" if last is not None else ""
    tail = f":\n{proc.log_tail(LOG_TAIL)}" if proc is not None else ""
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}{error}{tail}")


def wait_http(
    url: str, timeout: float = 60, status: int = 200, proc: Process | None = None, verify: str | bool = True
) -> None:
    """Poll GET `url` until it answers `status` (`verify`: the CA file for https)."""
    answers = lambda: requests.get(url, timeout=2, verify=verify).status_code == status  # noqa: E731
    wait_until(f"{url} to answer {status}", answers, timeout, proc)
