"""`python -m harness.slow_clients`: do slow or idle connections starve normal requests?

A slowloris: N connections send a request's bytes one at a time, every 1-2 s, and never finish
it, while normal `POST /sensor` requests (a valid reading, fresh sensor_id/timestamp each) are
timed with a client timeout. A server that gives each connection a thread until its request is
complete answers nothing once the slow connections outnumber its threads; one that times out
slow headers closes them (408) and keeps answering. Optionally K idle keep-alive connections
send one request each and then sit idle, to see when (if) the server closes them.

Stdlib only (asyncio streams), so it runs against any server without the project installed.
`run(...)` returns a `SlowClientsResult` for tests and the benchmarks; `main()` prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import resource
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

CONNECT_TIMEOUT_S = 5.0


@dataclass
class SlowStats:
    """The slowloris connections."""

    requested: int = 0
    opened: int = 0
    failed_to_open: int = 0
    still_open: int = 0
    closed_by_server: int = 0
    # How the server ended them: its status line ("HTTP/1.1 408 Request Timeout"), "EOF" or "reset".
    closed_how: Counter[str] = field(default_factory=Counter)
    closed_after_s: list[float] = field(default_factory=list)
    bytes_sent: int = 0


@dataclass
class NormalStats:
    """The timed, well-behaved POST /sensor requests."""

    sent: int = 0
    answered: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    timed_out: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    # When each answer came, in seconds from the start of the run (did the server stall, recover?).
    answered_at_s: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of the answered requests' latency (connect to last byte), in ms."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]

    @property
    def p50_ms(self) -> float | None:
        return self.percentile(50)

    @property
    def p99_ms(self) -> float | None:
        return self.percentile(99)

    @property
    def max_ms(self) -> float | None:
        return max(self.latencies_ms, default=None)


@dataclass
class IdleStats:
    """Keep-alive connections that sent one request, then nothing."""

    requested: int = 0
    opened: int = 0
    answered: int = 0
    not_answered: Counter[str] = field(default_factory=Counter)  # first request: "timeout" or the error
    still_open: int = 0
    closed_by_server: int = 0
    closed_after_s: list[float] = field(default_factory=list)  # from the end of the answer


@dataclass
class SlowClientsResult:
    url: str
    duration_s: float
    client_timeout_s: float
    nofile_limit: int
    slow: SlowStats
    normal: NormalStats
    idle: IdleStats

    def summary(self) -> str:
        """A few human-readable lines."""
        s, n, i = self.slow, self.normal, self.idle
        lines = [f"slow_clients against {self.url} for {self.duration_s:g} s (RLIMIT_NOFILE {self.nofile_limit})"]
        if s.requested:
            how = ", ".join(f"{k}: {v}" for k, v in s.closed_how.most_common()) or "none"
            lines.append(
                f"slow:   {s.requested} requested, {s.opened} opened, {s.failed_to_open} failed to open; at the end "
                f"{s.still_open} still open, {s.closed_by_server} closed by the server ({how}) "
                f"after {_spread(s.closed_after_s)} s; {s.bytes_sent} bytes trickled"
            )
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(n.by_status.items())) or "none"
        errors = ", ".join(f"{k}: {v}" for k, v in n.errors.most_common()) or "0"
        lines.append(
            f"normal: {n.sent} sent, {n.answered} answered ({statuses}), {n.timed_out} timed out "
            f"(> {self.client_timeout_s:g} s), errors {errors}; latency ms p50 {_ms(n.p50_ms)}, "
            f"p99 {_ms(n.p99_ms)}, max {_ms(n.max_ms)}; answers came at {_spread(n.answered_at_s)} s into the run"
        )
        if i.requested:
            lines.append(
                f"idle:   {i.requested} requested, {i.opened} opened, {i.answered} answered "
                f"(not: {', '.join(f'{k}: {v}' for k, v in i.not_answered.items()) or 'none'}); "
                f"{i.closed_by_server} closed by the server after {_spread(i.closed_after_s)} s idle, "
                f"{i.still_open} still open at the end"
            )
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    return f"min {ordered[0]:.1f} / median {ordered[len(ordered) // 2]:.1f} / max {ordered[-1]:.1f}"


def raise_nofile_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit, so 1,000+ sockets fit; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def reading_body(run_id: str, n: int) -> bytes:
    """A valid reading, unique per request (fresh sensor_id and timestamp)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    reading = {"sensor_id": f"slow-{run_id}-{n}", "timestamp": now, "type": "temperature", "value": 21.5, "unit": "C"}
    return json.dumps(reading, separators=(",", ":")).encode()


def post_request(host: str, body: bytes) -> bytes:
    return (
        f"POST /sensor HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with Content-Length (what the APIs send)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1)
    except (OSError, asyncio.TimeoutError):
        pass


def _slow_bytes(host: str, trickle_request_line: bool) -> tuple[bytes, itertools.chain[int]]:
    """(sent at once, then byte by byte forever): a request whose header block never ends."""
    request_line = b"POST /sensor HTTP/1.1\r\n"
    headers = f"Host: {host}\r\nContent-Type: application/json\r\nContent-Length: 80\r\n".encode()
    endless = itertools.cycle(b"X-Padding: slow\r\n")
    if trickle_request_line:
        return b"", itertools.chain(request_line + headers, endless)
    return request_line, itertools.chain(headers, endless)


async def _slow_connection(
    host: str, port: int, stats: SlowStats, stop: asyncio.Event, gate: asyncio.Semaphore, trickle_request_line: bool
) -> None:
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            stats.failed_to_open += 1
            return
    stats.opened += 1
    opened_at = time.monotonic()
    first, rest = _slow_bytes(host, trickle_request_line)

    async def trickle() -> None:
        try:
            if first:
                writer.write(first)
                stats.bytes_sent += len(first)
            for byte in rest:
                await asyncio.sleep(random.uniform(1.0, 2.0))
                writer.write(bytes([byte]))
                stats.bytes_sent += 1
                await writer.drain()
        except OSError:
            pass  # closed by the server: watch() sees it too

    async def watch() -> str:
        """What the server did: its status line, EOF or a reset."""
        said = ""
        try:
            while chunk := await reader.read(4096):
                said = said or chunk.split(b"\r\n", 1)[0].decode("latin-1", "replace")
        except OSError:
            return said or "reset"
        return said or "EOF"

    trickler = asyncio.ensure_future(trickle())
    watcher = asyncio.ensure_future(watch())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({watcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if watcher.done():
        stats.closed_by_server += 1
        stats.closed_how[watcher.result()] += 1
        stats.closed_after_s.append(time.monotonic() - opened_at)
    else:
        stats.still_open += 1
    for task in (trickler, watcher, stopper):
        task.cancel()
    await _close(writer)


async def _idle_connection(
    host: str, port: int, run_id: str, n: int, stats: IdleStats, stop: asyncio.Event, timeout_s: float
) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError):
        stats.not_answered["connect"] += 1
        return
    stats.opened += 1
    try:
        writer.write(post_request(host, reading_body(run_id, n)))
        await asyncio.wait_for(read_response(reader), timeout_s)
        stats.answered += 1
        answered_at = time.monotonic()
        eof = asyncio.ensure_future(reader.read(1))
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({eof, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if eof in done:
            eof.exception()  # a reset counts as closed too (and is retrieved, so asyncio does not log it)
            stats.closed_by_server += 1
            stats.closed_after_s.append(time.monotonic() - answered_at)
        else:
            stats.still_open += 1
        eof.cancel()
        stopper.cancel()
    except asyncio.TimeoutError:
        stats.not_answered["timeout"] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
        stats.not_answered[type(e).__name__] += 1
    await _close(writer)


async def _post(host: str, port: int, request: bytes, opened: list[asyncio.StreamWriter]) -> int:
    """One request on a fresh connection (as a sensor posting now and then); `opened` gets the writer to close."""
    reader, writer = await asyncio.open_connection(host, port)
    opened.append(writer)
    writer.write(request)
    status, _ = await read_response(reader)
    return status


async def _normal_worker(
    host: str,
    port: int,
    run_id: str,
    counter: itertools.count[int],
    stats: NormalStats,
    deadline: float,
    timeout_s: float,
    interval_s: float,
    run_started: float,
) -> None:
    while time.monotonic() < deadline:
        request = post_request(host, reading_body(run_id, next(counter)))
        opened: list[asyncio.StreamWriter] = []
        stats.sent += 1
        started = time.monotonic()
        try:
            status = await asyncio.wait_for(_post(host, port, request, opened), timeout_s)
            stats.answered += 1
            stats.by_status[status] += 1
            stats.latencies_ms.append((time.monotonic() - started) * 1000)
            stats.answered_at_s.append(time.monotonic() - run_started)
        except asyncio.TimeoutError:
            stats.timed_out += 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            stats.errors[type(e).__name__] += 1
        for writer in opened:
            await _close(writer)
        await asyncio.sleep(interval_s)


async def run_async(
    url: str,
    slow: int = 1000,
    duration_s: float = 20.0,
    normal_concurrency: int = 2,
    normal_interval_s: float = 0.1,
    client_timeout_s: float = 5.0,
    idle: int = 0,
    trickle_request_line: bool = False,
    settle_s: float = 2.0,
) -> SlowClientsResult:
    """Open the slow (and idle) connections, wait `settle_s`, time normal requests until `duration_s` is up."""
    nofile = raise_nofile_limit()
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"an http:// URL is needed, got {url!r}")
    host, port = parts.hostname, parts.port or 80
    run_id = uuid.uuid4().hex[:8]
    result = SlowClientsResult(
        url, duration_s, client_timeout_s, nofile, SlowStats(requested=slow), NormalStats(), IdleStats(requested=idle)
    )
    stop = asyncio.Event()
    started = time.monotonic()
    gate = asyncio.Semaphore(200)  # connects in flight, so a burst of 1,000 does not overflow the listen backlog
    background = [
        *(
            asyncio.ensure_future(_slow_connection(host, port, result.slow, stop, gate, trickle_request_line))
            for _ in range(slow)
        ),
        *(
            asyncio.ensure_future(_idle_connection(host, port, run_id, n, result.idle, stop, client_timeout_s))
            for n in range(idle)
        ),
    ]
    await asyncio.sleep(min(settle_s, duration_s))
    deadline = started + duration_s
    counter = itertools.count(idle)
    await asyncio.gather(
        *(
            _normal_worker(
                host, port, run_id, counter, result.normal, deadline, client_timeout_s, normal_interval_s, started
            )
            for _ in range(normal_concurrency)
        )
    )
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    stop.set()
    await asyncio.gather(*background, return_exceptions=True)
    return result


def run(url: str, **options: Any) -> SlowClientsResult:
    """Blocking `run_async` for tests and the benchmarks (the same keyword arguments)."""
    return asyncio.run(run_async(url, **options))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="base URL of the API")
    parser.add_argument("--slow", type=int, default=1000, help="slowloris connections")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds, from the first slow connection")
    parser.add_argument("--normal-concurrency", type=int, default=2, help="normal requests in flight at once")
    parser.add_argument("--normal-interval", type=float, default=0.1, help="pause after each normal request, s")
    parser.add_argument("--timeout", type=float, default=5.0, help="client timeout of a normal request, s")
    parser.add_argument("--idle", type=int, default=0, help="idle keep-alive connections (one request each)")
    parser.add_argument("--settle", type=float, default=2.0, help="s between opening the slow ones and timing")
    parser.add_argument(
        "--trickle-request-line", action="store_true", help="trickle the request line too (default: sent at once)"
    )
    args = parser.parse_args()
    result = run(
        args.url,
        slow=args.slow,
        duration_s=args.duration,
        normal_concurrency=args.normal_concurrency,
        normal_interval_s=args.normal_interval,
        client_timeout_s=args.timeout,
        idle=args.idle,
        trickle_request_line=args.trickle_request_line,
        settle_s=args.settle,
    )
    print(result.summary())


if __name__ == "__main__":
    main()
