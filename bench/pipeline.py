"""`python -m bench.pipeline`: the whole pipeline (HTTP -> API -> Kafka -> pool -> SQLite) under load.

Starts its own API and pool (2 gunicorn workers, 2 pool workers, SQLite sink: the defaults)
on the broker in BENCH_KAFKA_BROKER with a fresh topic, then offers fixed loads with Locust
(single readings, constant throughput per user) and finally the most it can take with wrk
(closed loop, 64 connections). Per level: achieved req/s, HTTP p50/p99 (client side),
e2e p50/p99 (the pool's histogram, diffed over the level), readings acknowledged vs stored,
and how long after the last answer the last row was stored. Results replace the
"Whole pipeline" section of BENCHMARKS.md (skip with --no-write).

wrk comes from Debian (apt-get install wrk), as for bench/service.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.common import machine, now, single_reading_lua, write_section, wrk
from harness.db import Store
from harness.process import ROOT
from harness.prometheus import Histogram, scrape_histogram
from harness.stack import Endpoints, own_stack
from loadtests.gate import E2E, Load, run_locust, wait_for_store, warm_up
from loadtests.readings import new_run_id

HEADING = "Whole pipeline (Locust -> API -> Kafka -> pool -> store)"
WRK_CONNECTIONS = 64


@dataclass(frozen=True)
class Level:
    """One row of the results table."""

    name: str
    offered: str
    achieved_rps: float
    http_p50_ms: float
    http_p99_ms: float
    e2e_p50_ms: float
    e2e_p99_ms: float
    acked: int
    stored: int
    catchup_s: float | None

    def row(self) -> str:
        catchup = "n/a" if self.catchup_s is None else f"{self.catchup_s:.2f} s"
        return (
            f"| {self.name} | {self.offered} | {self.achieved_rps:,.0f} | {self.http_p50_ms:.1f} | "
            f"{self.http_p99_ms:.1f} | {self.e2e_p50_ms:.1f} | {self.e2e_p99_ms:.1f} | "
            f"{self.acked:,} / {self.stored:,} | {catchup} |"
        )


def e2e_ms(before: Histogram | None, after: Histogram | None, q: float) -> float:
    if before is None or after is None:
        return float("nan")
    return (after - before).quantile(q) * 1000


def locust_level(endpoints: Endpoints, store: Store, run_id: str, rps: int, seconds: int, out: Path) -> Level:
    """A fixed offered load of single readings from Locust (one process up to 500 req/s, else two)."""
    tag = f"{run_id}r{rps}"
    users = min(max(rps // 5, 20), 400)
    load = Load(rps, users, seconds, "SensorUser", processes=1 if rps <= 500 else 2)
    before = scrape_histogram(endpoints.pool_metrics_url, E2E)
    summary = run_locust(load, endpoints.api_url, tag, out / f"locust-{rps}", tag="bench")
    stored, catchup = wait_for_store(store, f"{tag}-", int(summary["acked_readings"]), summary["last_ok_time"], 30)
    after = scrape_histogram(endpoints.pool_metrics_url, E2E)
    return Level(
        name=f"Locust, {users} users" + (f", {load.processes} processes" if load.processes > 1 else ""),
        offered=f"{rps:,}",
        achieved_rps=float(summary["rps"]),
        http_p50_ms=float(summary["http_p50_ms"]),
        http_p99_ms=float(summary["http_p99_ms"]),
        e2e_p50_ms=e2e_ms(before, after, 0.50),
        e2e_p99_ms=e2e_ms(before, after, 0.99),
        acked=int(summary["acked_readings"]),
        stored=stored,
        catchup_s=catchup,
    )


def wrk_level(endpoints: Endpoints, store: Store, run_id: str, seconds: int) -> Level:
    """As much as the stack takes: wrk, closed loop, single readings."""
    tag = f"{run_id}max"
    hour = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H")
    lua = single_reading_lua(prefix=f"{tag}-", hour=hour)
    before = scrape_histogram(endpoints.pool_metrics_url, E2E)
    print(f"[bench] wrk -t1 -c{WRK_CONNECTIONS} -d{seconds}s {endpoints.api_url}/sensor", flush=True)
    result = wrk(f"{endpoints.api_url}/sensor", lua, seconds, WRK_CONNECTIONS)
    last_answer = time.time()
    acked = result.requests - result.non_2xx
    # NOTE: wrk does not count requests still in flight when it stops; those may be stored
    # too, so stored >= 2xx here, and catch-up is measured from wrk's end.
    stored, catchup = wait_for_store(store, f"{tag}-", acked, last_answer, 60)
    after = scrape_histogram(endpoints.pool_metrics_url, E2E)
    return Level(
        name=f"wrk, {WRK_CONNECTIONS} connections",
        offered="max",
        achieved_rps=result.rps,
        http_p50_ms=result.p50_ms,
        http_p99_ms=result.p99_ms,
        e2e_p50_ms=e2e_ms(before, after, 0.50),
        e2e_p99_ms=e2e_ms(before, after, 0.99),
        acked=acked,
        stored=stored,
        catchup_s=catchup,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=20, help="per level")
    p.add_argument("--loads", default="100,1000", help="fixed offered loads, req/s")
    p.add_argument("--no-max", action="store_true", help="skip the wrk level")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = p.parse_args(argv)
    broker = os.environ.get("BENCH_KAFKA_BROKER", "127.0.0.1:9092")
    run_id = new_run_id()
    out = ROOT / "reports" / f"bench-pipeline-{run_id}"
    levels: list[Level] = []
    with own_stack(run_id, out / "stack", broker) as endpoints:
        store = Store(endpoints.sqlite_path, endpoints.database_url)
        if warm_up(endpoints, store, run_id, 60) is None:
            print("[bench] the pipeline did not warm up; see the logs in " + str(out / "stack"), file=sys.stderr)
            return 1
        for rps in (int(x) for x in args.loads.split(",") if x.strip()):
            levels.append(locust_level(endpoints, store, run_id, rps, args.seconds, out))
            print(f"[bench] {levels[-1].row()}", flush=True)
        if not args.no_max:
            levels.append(wrk_level(endpoints, store, run_id, args.seconds))
            print(f"[bench] {levels[-1].row()}", flush=True)
    extra = " ".join(argv if argv is not None else sys.argv[1:])
    command = f"python -m bench.pipeline {extra}".strip()
    body = "\n".join(
        [
            f"Measured {now()} on {machine()}; Kafka broker, API, pool and load generator share the cores.",
            f"Command: `deploy/local/bench.sh pipeline` (`{command}` under flock; `make bench` runs every part);",
            f"{args.seconds} s per level, one after the other on one stack.",
            "Stack: the defaults: ACK_MODE=delivered, 2 gunicorn workers x 16 threads, 2 pool workers,",
            "SQLite sink, 6 partitions. Client-side HTTP latency (Locust's percentiles are rounded to",
            "2 significant digits); e2e = API receipt -> row stored, from the pool's histogram",
            "(interpolated within its buckets, 5 to 25 ms apart below 300 ms).",
            "",
            "| load generator | offered req/s | achieved req/s | HTTP p50 ms | HTTP p99 ms | e2e p50 ms | e2e p99 ms "
            "| readings 2xx / stored | last row stored after last answer |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            *(level.row() for level in levels),
            "",
            "One reading per request. Stored > 2xx in the wrk row: wrk does not count requests in",
            "flight when it stops. Reports (Locust HTML/CSV, process logs): `reports/bench-pipeline-<id>/`.",
        ]
    )
    print("\n" + body)
    if not args.no_write:
        write_section(HEADING, body)
        print("\n[bench] BENCHMARKS.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
