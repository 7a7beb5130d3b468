"""Open-loop load with one distinct reading per request, every request's outcome recorded.

Open loop: reading i is sent at start + i/rate whether or not earlier requests were answered,
as sensors do; a closed loop would slow down during a fault and hide it. Each outcome is kept
per reading, so the invariants (harness/chaos.py) are checked on this run's own readings.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import httpx

from harness.readings import numbered


@dataclass(frozen=True)
class Outcome:
    i: int
    sent_s: float  # since the load started
    status: int | None  # None: no HTTP answer (connection refused or reset, timeout)
    error: str = ""


class OpenLoop:
    """POST /sensor at `rate` readings/s from a thread of its own until stop()."""

    def __init__(self, api_url: str, prefix: str, rate: float = 100, timeout: float = 15) -> None:
        self.api_url = api_url
        self.prefix = prefix
        self.rate = rate
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self.started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="open-loop", daemon=True)

    def __enter__(self) -> OpenLoop:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stop(self) -> list[Outcome]:
        """Stop sending; wait (bounded by the request timeout) for the requests in flight."""
        self._stop.set()
        self._thread.join(self.timeout + 30)
        assert not self._thread.is_alive(), "the open-loop sender did not finish"
        return sorted(self.outcomes, key=lambda o: o.i)

    async def _one(self, client: httpx.AsyncClient, i: int, sent_s: float) -> None:
        try:
            response = await client.post(f"{self.api_url}/sensor", json=numbered(i, self.prefix))
            self.outcomes.append(Outcome(i, sent_s, response.status_code))
        except httpx.HTTPError as e:
            self.outcomes.append(Outcome(i, sent_s, None, f"{type(e).__name__}: {e}"))

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits) as client:
            tasks: set[asyncio.Task[None]] = set()
            i = 0
            while not self._stop.is_set():
                due = self.started + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(self._one(client, i, due - self.started))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if tasks:
                await asyncio.wait(tasks, timeout=self.timeout + 5)
