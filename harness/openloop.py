"""Open-loop load with one distinct reading per request, every request's outcome recorded.

Open loop: reading i is sent at start + i/rate whether or not earlier requests were answered,
as sensors do; a closed loop would slow down during a fault and hide it. Each outcome is kept
per reading, so the invariants (harness/chaos.py) are checked on this run's own readings.
Every request sent gets exactly one outcome, whatever went wrong with it (stop() checks that
against the number of requests sent), and every time is on one clock, `time.monotonic()`
(system-wide on Linux, so the suite's fault and heal times compare with the sender's).

The sender runs in a process of its own: in a thread it shared the GIL with the suite's
librdkafka clients, and a client being destroyed while a broker is down held it for seconds,
so the "open" loop stalled exactly during the faults.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path

import httpx

from harness.readings import numbered


@dataclass(frozen=True)
class Outcome:
    i: int
    sent_s: float  # when it was sent, since the load started (late when the sender fell behind)
    status: int | None  # None: no HTTP answer (connection refused or reset, timeout)
    error: str = ""  # the transport error, or the body of a non-2xx answer
    sent_at: float = 0.0  # time.monotonic() when it was sent
    answered_at: float | None = None  # time.monotonic() when its outcome was known
    retry_after: str | None = None  # the answer's Retry-After header, if any


class OpenLoop:
    """POST /sensor at `rate` readings/s from a process of its own until stop()."""

    def __init__(self, api_url: str, prefix: str, out: Path, rate: float = 100, timeout: float = 15) -> None:
        self.api_url = api_url
        self.prefix = prefix
        self.rate = rate
        self.timeout = timeout
        self.out = out
        self.started = 0.0
        self.sent = 0  # requests sent (attempts), known after stop()
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._proc = ctx.Process(
            target=_main, args=(api_url, prefix, rate, timeout, str(out), self._stop), name="open-loop", daemon=True
        )

    def __enter__(self) -> OpenLoop:
        self._proc.start()
        self.started = time.monotonic()
        return self

    def __exit__(self, *_: object) -> None:
        if self._proc.is_alive():
            self._stop.set()
            self._proc.join(self.timeout + 30)
            if self._proc.is_alive():
                self._proc.kill()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stop(self) -> list[Outcome]:
        """Stop sending; wait (bounded by the request timeout) for the requests in flight."""
        self._stop.set()
        self._proc.join(self.timeout + 30)
        if self._proc.is_alive():
            self._proc.kill()
            raise AssertionError("the open-loop sender did not finish")
        assert self._proc.exitcode == 0, f"the open-loop sender exited with {self._proc.exitcode}"
        rows = [json.loads(line) for line in self.out.read_text().splitlines()]
        self.sent = json.loads(sent_path(self.out).read_text())["sent"]
        return answered_once(sorted((Outcome(**row) for row in rows), key=lambda o: o.i), self.sent)


def sent_path(out: Path) -> Path:
    return out.with_name(out.name + ".sent.json")


def answered_once(outcomes: list[Outcome], sent: int) -> list[Outcome]:
    """`outcomes` (sorted by i), checked to hold exactly one outcome per request sent."""
    numbers = [o.i for o in outcomes]
    if numbers != list(range(sent)):
        counts = Counter(numbers)
        missing = [i for i in range(sent) if i not in counts]
        twice = sorted(i for i, n in counts.items() if n > 1)
        raise AssertionError(
            f"{sent} requests sent, {len(outcomes)} outcomes: no outcome for {missing[:20]}, two for {twice[:20]}"
        )
    return outcomes


def without_a_status(outcomes: list[Outcome]) -> list[Outcome]:
    """The requests (of valid readings) that did not get an answer the contract allows under
    faults and overload: 2xx, 429, or 503 with Retry-After (docs/contract.md, "Every request
    gets an HTTP status"). No answer at all (reset, EOF, timeout) is the first thing it finds."""

    def allowed(o: Outcome) -> bool:
        if o.status is None:
            return False
        return 200 <= o.status < 300 or o.status == 429 or (o.status == 503 and bool(o.retry_after))

    return [o for o in outcomes if not allowed(o)]


def _main(api_url: str, prefix: str, rate: float, timeout: float, out: str, stop: Event) -> None:
    sent, outcomes = asyncio.run(_run(api_url, prefix, rate, timeout, stop))
    Path(out).write_text("".join(json.dumps(o.__dict__) + "\n" for o in outcomes))
    sent_path(Path(out)).write_text(json.dumps({"sent": sent}))


async def _run(api_url: str, prefix: str, rate: float, timeout: float, stop: Event) -> tuple[int, list[Outcome]]:
    outcomes: list[Outcome] = []
    started = time.monotonic()

    async def one(client: httpx.AsyncClient, i: int, sent_at: float) -> None:
        sent_s = sent_at - started
        try:
            # NOTE: one bound for the whole request (httpx's timeout is per read/write/connect).
            request = client.post(f"{api_url}/sensor", json=numbered(i, prefix))
            response = await asyncio.wait_for(request, timeout)
            body = response.text[:160] if response.status_code >= 300 else ""
            retry_after = response.headers.get("retry-after")
            outcomes.append(Outcome(i, sent_s, response.status_code, body, sent_at, time.monotonic(), retry_after))
        except asyncio.CancelledError:
            outcomes.append(Outcome(i, sent_s, None, "cancelled: no answer when the load stopped", sent_at))
            raise
        except Exception as e:  # any failure is this request's outcome, never a silent drop
            outcomes.append(Outcome(i, sent_s, None, f"{type(e).__name__}: {e}", sent_at, time.monotonic()))

    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while not stop.is_set():
            due = started + i / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(one(client, i, time.monotonic()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout + 5)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
    return i, outcomes
