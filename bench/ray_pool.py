"""`python -m bench.ray_pool`: the pool's Ray backend against its multiprocessing one (make bench-ray).

1. Pre-fill a fresh 6-partition topic with BENCH_RAY_RECORDS (300,000) readings: the backlog.
2. Drain that same backlog into a fresh PostgreSQL database with `python -m consumer_pool`,
   2 workers, alternating the backend (multiprocessing, ray, multiprocessing, ray, ...;
   BENCH_RAY_ROUNDS rounds, default 2), each run a new consumer group. readings/s from the
   rows' stored_at_ns span (first row stored -> last row stored), as bench.pool counts it.
3. Overhead = 1 - median(ray) / median(multiprocessing); the target is < 15 %.

Env: BENCH_KAFKA_BROKER, BENCH_DATABASE_URL (set by deploy/local/bench.sh). Results replace the
"Consumer pool: Ray backend" section of BENCHMARKS.md (skip with --no-write).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from bench.common import machine, now, write_section
from bench.pool import Throughput, prefill, stored
from harness.db import throwaway_database
from harness.isolation import Isolation
from harness.poll import wait_until
from harness.process import PYTHON, ROOT, free_port, spawn
from store.probe import Probe

BACKENDS = ("multiprocessing", "ray")
TARGET_OVERHEAD = 0.15


def drain(backend: str, env: dict[str, str], count: int, url: str, log: Path) -> Throughput:
    """One pool drains the backlog into `url`; stopped with SIGTERM to its main process (the
    Ray driver drains its actors and stops its local Ray itself)."""
    port = int(env["CONSUMER_METRICS_PORT"])
    started = time.perf_counter()
    args = [PYTHON, "-m", "consumer_pool", "--backend", backend]
    with spawn(args, {**env, "DATABASE_URL": url}, log, name=f"pool-{backend}", stop_timeout=60) as proc:
        wait_until(f"{count} readings stored", lambda: stored(port) >= count, 900, proc, interval=0.25)
        wall = time.perf_counter() - started
        proc.signal(signal.SIGTERM)
        code = proc.popen.wait(90)
        if code != 0:
            raise SystemExit(f"{backend} pool exited {code}; see {log}")
    first, last = Probe(database_url=url).span()
    assert first is not None and last is not None, "the pool stored nothing"
    return Throughput(backend, count, (last - first) / 1e9, wall)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ray_pool", description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=int(os.environ.get("BENCH_RAY_RECORDS", "300000")))
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_RAY_ROUNDS", "2")))
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = p.parse_args(argv)
    broker = os.environ.get("BENCH_KAFKA_BROKER", "127.0.0.1:9092")
    base_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:55432/sensors")
    run = uuid.uuid4().hex[:8]
    iso = Isolation.fresh(broker, "bench-ray", run)
    topic = iso.topic
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    logs = ROOT / ".run" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        "CONSUMER_WORKERS": "2",
        "SINK": "postgres",
        "CONSUMER_ECHO": "false",
        "ALERT_RULES": "",
        "RAY_ADDRESS": "",
        "LOG_LEVEL": "WARNING",
    }
    results: dict[str, list[Throughput]] = {b: [] for b in BACKENDS}
    iso.create()
    try:
        print(f"[bench] pre-filling {topic} with {args.records:,} readings", flush=True)
        fill = prefill(broker, topic, args.records)
        print(f"[bench] pre-filled in {fill:.1f}s", flush=True)
        for round_ in range(args.rounds):
            for backend in BACKENDS:
                # NOTE: a new group (so the whole backlog again) and a new metrics port each run
                run_iso = replace(iso.with_group(f"bench-{backend}-{run}-{round_}"), metrics_port=free_port())
                run_env = {
                    **env,
                    **run_iso.env(),
                    "CONSUMER_METRICS_DIR": str(work / f"metrics-{backend}-{round_}"),
                }
                with throwaway_database(base_url, "bench_ray") as url:
                    result = drain(backend, run_env, args.records, url, logs / f"bench-ray-{backend}-{round_}.log")
                results[backend].append(result)
                print(
                    f"[bench] round {round_ + 1} {backend}: {result.rate:,.0f} readings/s"
                    f" ({result.seconds:.1f}s; wall {result.wall:.1f}s)",
                    flush=True,
                )
    finally:
        iso.delete()
        shutil.rmtree(work, ignore_errors=True)

    mp, ray = (statistics.median(r.rate for r in results[b]) for b in BACKENDS)
    overhead = 1 - ray / mp
    # NOTE: the box drifts within minutes; each round's ray/multiprocessing ratio compares neighbours.
    paired = 1 - statistics.median(
        r.rate / m.rate for r, m in zip(results["ray"], results["multiprocessing"], strict=True)
    )
    print(
        f"[bench] median: multiprocessing {mp:,.0f}/s, ray {ray:,.0f}/s -> overhead {overhead:.1%}"
        f" (median of the rounds' ratios: {paired:.1%})",
        flush=True,
    )
    if not args.no_write:
        write_section("Consumer pool: Ray backend", report(args, results, mp, ray, overhead, paired, fill))
        print("[bench] BENCHMARKS.md updated", flush=True)
    return 0


def report(
    args: argparse.Namespace,
    results: dict[str, list[Throughput]],
    mp: float,
    ray: float,
    overhead: float,
    paired: float,
    fill: float,
) -> str:
    verdict = "met" if overhead < TARGET_OVERHEAD else "**missed**"
    rows = "\n".join(
        f"| {i + 1} | {b} | {r.rate:,.0f} | {r.seconds:.1f} | {r.wall:.1f} |"
        for i in range(args.rounds)
        for b in BACKENDS
        for r in [results[b][i]]
    )
    return f"""
Measured {now()} on {machine()}.
Command: `make bench-ray` (= `deploy/local/bench.sh ray_pool`, i.e. `python -m bench.ray_pool`).
The same backlog, {args.records:,} readings pre-filled over 6 partitions (written in {fill:.1f}s), drained into a
fresh PostgreSQL database by 2 workers, each run a new consumer group, the backends alternating in one run
({args.rounds} rounds). readings/s from the first to the last row's `stored_at_ns`; wall = pool start -> all stored
(a local Ray's start, about 5 s, is in the Ray rows' wall time only).

| round | backend | readings/s | seconds | wall s |
|---|---|---|---|---|
{rows}

Median: multiprocessing {mp:,.0f} readings/s, Ray actors {ray:,.0f} readings/s: overhead **{overhead:.1%}**
(target < {TARGET_OVERHEAD:.0%}: {verdict}). Round by round (each Ray run against the multiprocessing run just
before it), the median overhead is {paired:.1%}. Both run the same `Worker` loop and sink; on Ray the driver also
fetches each actor's metric files once a second. The box has 2 shared cores and is noisy (±30 %).
"""


if __name__ == "__main__":
    sys.exit(main())
