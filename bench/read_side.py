"""`python -m bench.read_side`: what the read side costs and how fast it answers.

1. Stream cost: closed-loop single-reading ingest (wrk, POST /sensor, acknowledged by Kafka)
   on a `make up`-like stack (API 2 workers, pool 2 workers, SQLite), interleaved rounds of
   three conditions: nothing reading; 50 open `GET /stream` clients (curl -N, each receiving
   every reading); the same plus the dashboard open in headless Chromium (its polling, its
   EventSource and its rendering, on the same two cores). Throughput and the API's CPU per
   request are compared with the baseline of the same round.
2. Aggregates: `GET /sensors/{id}/aggregates` over 30 days of one sensor on SQLite holding
   10 million readings (built once into .cache/bench-read/, by the SQLite sink itself, so
   its triggers kept `readings_1m` and `latest`), timed from a sequential client.
Results replace the "Read side" section of BENCHMARKS.md (skip with --no-write).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

from bench.common import cpu_seconds, group_pids, machine, now, single_reading_lua, write_section, wrk
from harness.process import ROOT
from harness.stack import Endpoints, own_stack
from loadtests.readings import new_run_id
from pipeline.reading import Reading
from pipeline.record import Record
from store.sqlite import SqliteWriter

HEADING = "Read side (stream cost, aggregates on 10 million rows)"
DB_DIR = ROOT / ".cache" / "bench-read"
START = datetime(2025, 10, 1, tzinfo=timezone.utc)
DAYS = 30


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# --- 1. stream cost --------------------------------------------------------------------


@contextmanager
def stream_clients(url: str, count: int) -> Iterator[list[subprocess.Popen]]:
    curl = shutil.which("curl") or "curl"
    procs = [
        subprocess.Popen(
            [curl, "-sN", "-o", "/dev/null", f"{url}/stream"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(count)
    ]
    try:
        time.sleep(1.0)
        alive = sum(p.poll() is None for p in procs)
        if alive != count:
            raise SystemExit(f"only {alive} of {count} stream clients stayed connected")
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(5)


@contextmanager
def dashboard(url: str, workdir: Path) -> Iterator[subprocess.Popen]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is needed for the dashboard condition: apt-get install chromium")
    proc = subprocess.Popen(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
         f"--user-data-dir={workdir / 'chromium'}", f"{url}/dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(4.0)  # NOTE: loaded, its first queries answered, its EventSource open
        if proc.poll() is not None:
            raise SystemExit("chromium exited at start")
        yield proc
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(10)


def stream_cost(stack: Endpoints, rounds: int, seconds: int, connections: int, workdir: Path) -> str:
    lua = single_reading_lua(f"rs-{new_run_id()}-")
    api_pid = stack.api_pid
    assert api_pid is not None, "the stack was started without its API's process group"
    api_pids = lambda: group_pids(api_pid)  # noqa: E731
    wrk(stack.api_url + "/sensor", lua, 3, connections)  # warm-up
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "50 streams": [], "50 streams + dashboard": []}

    def measure(name: str) -> None:
        before = cpu_seconds(api_pids())
        r = wrk(stack.api_url + "/sensor", lua, seconds, connections)
        cpu = cpu_seconds(api_pids()) - before
        if r.non_2xx or r.socket_errors:
            print(f"  {name}: {r.non_2xx} non-2xx, {r.socket_errors} socket errors")
        results[name].append((r.rps, cpu * 1000 / max(r.requests, 1)))
        print(f"  {name}: {r.rps:,.0f} req/s, API {results[name][-1][1]:.3f} CPU ms/request", flush=True)

    for i in range(rounds):
        print(f"round {i + 1}/{rounds}", flush=True)
        measure("baseline")
        with stream_clients(stack.api_url, 50):
            measure("50 streams")
            with dashboard(stack.api_url, workdir):
                measure("50 streams + dashboard")
    base = statistics.median(r for r, _ in results["baseline"])
    lines = [
        "| condition | ingest req/s (median) | vs baseline | runs (req/s) | API CPU ms/request (median) |",
        "|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        rps = statistics.median(r for r, _ in runs)
        lines.append(
            f"| {name} | {rps:,.0f} | {rps / base - 1:+.1%} | {', '.join(f'{r:,.0f}' for r, _ in runs)} |"
            f" {statistics.median(c for _, c in runs):.3f} |"
        )
    return "\n".join(lines)


# --- 2. aggregates on 10 million rows ---------------------------------------------------


def build(path: Path, rows: int, target: str) -> None:
    """The target sensor: a temperature every 10 s for 30 days; the rest of `rows` spread over
    2,000 other sensors and the same 30 days. Written through the SQLite store in batches."""
    if path.exists():
        return
    tmp = path.with_suffix(".building")
    for leftover in tmp.parent.glob(tmp.name + "*"):
        leftover.unlink()
    sink = SqliteWriter(str(tmp))
    sink.setup()
    # NOTE: only while building the fixture: no fsync per batch (the store itself keeps FULL).
    sink._conn.execute("PRAGMA synchronous=OFF")  # type: ignore[union-attr]
    own = DAYS * 86_400 // 10
    others = rows - own
    step = DAYS * 86_400 / (others / 2_000)
    started, written, batch = time.monotonic(), 0, list[Record]()

    def flush() -> None:
        nonlocal written, batch
        written += sink.write(batch).stored
        batch = []
        if written % 500_000 < 50_000:
            print(f"  {written:,} rows ({time.monotonic() - started:.0f} s)", flush=True)

    for n in range(own):
        batch.append(Record.of(Reading(target, START + timedelta(seconds=10 * n), "temperature", 20 + n % 100 / 10), 0))
        if len(batch) == 50_000:
            flush()
    for n in range(others):
        sensor, k = n % 2_000, n // 2_000
        moment = START + timedelta(seconds=k * step + sensor % 7)
        batch.append(Record.of(Reading(f"other-{sensor}", moment, "temperature", float(n % 50)), 0))
        if len(batch) == 50_000:
            flush()
    if batch:
        flush()
    sink.close()
    tmp.rename(path)
    print(f"  built {written:,} rows in {time.monotonic() - started:.0f} s", flush=True)


def aggregates(stack: Endpoints, target: str, requests_per_case: int) -> str:
    session = requests.Session()
    window = {"from": START.isoformat(), "to": (START + timedelta(days=DAYS)).isoformat()}
    cases = [("1d", {}), ("1h", {}), ("5m", {"limit": "10000"}), ("1m", {"limit": "10000"})]
    lines = ["| bucket | buckets returned | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for bucket, extra in cases:
        url = f"{stack.api_url}/sensors/{target}/aggregates"
        params = {**window, "bucket": bucket, "type": "temperature", **extra}
        body = session.get(url, params=params, timeout=30).json()  # warm-up
        timings = []
        for _ in range(requests_per_case):
            t0 = time.perf_counter()
            resp = session.get(url, params=params, timeout=30)
            timings.append((time.perf_counter() - t0) * 1000)
            resp.raise_for_status()
        lines.append(
            f"| {bucket} | {len(body['items']):,}{' (first page)' if body['next_cursor'] else ''} |"
            f" {percentile(timings, 0.5):.1f} | {percentile(timings, 0.99):.1f} | {max(timings):.1f} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--only", choices=["stream", "aggregates"])
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    broker = os.environ.get("BENCH_KAFKA_BROKER", "127.0.0.1:9092")
    workdir = ROOT / ".run" / "bench-read"
    sections = []
    with ExitStack() as stack:
        if args.only != "aggregates":
            print("stream cost: make-up-like stack (API 2 workers, pool 2 workers, SQLite)", flush=True)
            env = {"CONSUMER_ECHO": "false", "ALERT_RULES": "temperature>45"}
            s = stack.enter_context(own_stack(new_run_id(), workdir / "stream", broker, env))
            sections.append(
                "**Stream and dashboard cost.** wrk (1 thread, "
                f"{args.connections} connections, closed loop, {args.seconds} s per run, {args.rounds} interleaved"
                " rounds) posting single readings, acknowledged by Kafka; 50 `curl -N /stream` clients each"
                " receive every reading; the dashboard is headless Chromium on the same two cores.\n\n"
                + stream_cost(s, args.rounds, args.seconds, args.connections, workdir)
            )
            stack.close()
        if args.only != "stream":
            DB_DIR.mkdir(parents=True, exist_ok=True)
            db = DB_DIR / f"readings-{args.rows}.db"
            print(f"aggregates: {db} ({args.rows:,} rows)", flush=True)
            build(db, args.rows, "agg-target")
            env = {"SQLITE_PATH": str(db)}
            s = stack.enter_context(own_stack(new_run_id(), workdir / "agg", broker, env, with_pool=False))
            sections.append(
                f"**Aggregates.** `GET /sensors/agg-target/aggregates?type=temperature` over 30 days (a reading every"
                f" 10 s: 259,200 rows, 43,200 minute aggregates) in SQLite holding {args.rows:,} readings;"
                f" {args.requests} sequential requests per bucket from one Python client, after one warm-up.\n\n"
                + aggregates(s, "agg-target", args.requests)
            )
    body = f"\nMeasured {now()} on {machine()} with `python -m bench.read_side`.\n\n" + "\n\n".join(sections) + "\n"
    print(body)
    if not args.no_write:
        write_section(HEADING, body)


if __name__ == "__main__":
    main()
