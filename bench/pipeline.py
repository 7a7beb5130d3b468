"""`python -m bench.pipeline`: the stack as `make up` runs it, under open-loop load.

API (2 uvicorn workers) + pool (2 workers, SQLite, the seed's echo on, as `make up` starts
it) on the broker in BENCH_KAFKA_BROKER, fresh topic. vegeta (bench/vegeta.py) offers each
rate for a fixed time, one distinct reading per request, requests leaving at their scheduled
times. Per level:
- HTTP: achieved req/s, p50/p99/max from the scheduled send, non-2xx and timeouts;
- e2e from the level's own rows (stored_at_ns - ingested_at_ns, exact), and the histogram;
- the latency budget by stage (sensor_pipeline_stage_seconds, diffed over the level);
- CPU seconds per 1,000 readings of the API, the broker and the pool, from /proc.
Then an overload level: twice the top rate, to check that the excess is shed with 503 and
nothing waits longer than ACK_TIMEOUT_MS + 1 s. Results replace the "Whole pipeline"
section of BENCHMARKS.md (skip with --no-write).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import vegeta
from bench.common import cpu_seconds, group_pids, machine, now, write_section
from harness.db import Store
from harness.process import ROOT
from harness.prometheus import Samples, histogram, scrape
from harness.stack import Endpoints, own_stack
from loadtests.gate import wait_for_store, warm_up
from loadtests.readings import new_run_id

HEADING = "Whole pipeline (vegeta -> API -> Kafka -> pool -> store)"
STAGE = "sensor_pipeline_stage_seconds"
E2E = "sensor_pipeline_e2e_latency_seconds"
STAGES = ("receipt_to_produce", "produce_to_ack", "append_to_fetch", "fetch_to_store", "store_to_commit")
COMPONENTS = ("api", "broker", "pool")


def percentile(ordered: list[float], q: float) -> float:
    """Nearest rank of sorted values; NaN when empty."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@dataclass
class Level:
    name: str
    rate: int
    seconds: float
    report: vegeta.Report
    stored: int
    e2e_rows_ms: list[float]
    e2e_hist_p99_ms: float
    stages_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # stage -> (p50, p99)
    cpu_s: dict[str, float] = field(default_factory=dict)  # component -> CPU seconds in the level

    def cpu_per_1000(self, component: str | None = None) -> float:
        used = sum(self.cpu_s.values()) if component is None else self.cpu_s[component]
        return used / max(self.report.ok, 1) * 1000

    def row(self) -> str:
        r = self.report
        bad = r.requests - r.ok
        e2e = self.e2e_rows_ms
        return (
            f"| {self.name} | {self.rate:,} | {r.throughput:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.max_ms:,.0f} "
            f"| {bad:,} | {percentile(e2e, 0.5):.1f} | {percentile(e2e, 0.99):.1f} | {self.e2e_hist_p99_ms:.1f} "
            f"| {r.ok:,} / {self.stored:,} |"
        )

    def stage_row(self) -> str:
        cells = " | ".join(f"{self.stages_ms[s][0]:.2f} / {self.stages_ms[s][1]:.1f}" for s in STAGES)
        return f"| {self.name} | {cells} |"

    def cpu_row(self) -> str:
        cells = " | ".join(f"{self.cpu_per_1000(c):.2f}" for c in COMPONENTS)
        return f"| {self.name} | {cells} | **{self.cpu_per_1000():.2f}** |"


def broker_pid() -> int | None:
    """The local broker that deploy/local/kafka.sh started, if that is what we measure."""
    path = Path(os.environ.get("RUN_DIR", ROOT / ".run")) / "kafka.pid"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def processes(endpoints: Endpoints) -> dict[str, list[int]]:
    kafka = broker_pid()
    return {
        "api": group_pids(endpoints.api_pid or 0),
        "broker": [kafka] if kafka else [],
        "pool": group_pids(endpoints.pool_pid or 0),
    }


def stage_quantiles(after: Samples, before: Samples) -> dict[str, tuple[float, float]]:
    out = {}
    for stage in STAGES:
        a, b = histogram(after, STAGE, stage=stage), histogram(before, STAGE, stage=stage)
        window = a - b if a is not None and b is not None else a
        if window is None or window.count == 0:
            out[stage] = (float("nan"), float("nan"))
        else:
            out[stage] = (window.quantile(0.5) * 1000, window.quantile(0.99) * 1000)
    return out


def run_level(
    endpoints: Endpoints,
    store: Store,
    out: Path,
    run_id: str,
    rate: int,
    seconds: float,
    name: str,
) -> Level:
    prefix = f"{run_id}r{rate}-"
    targets = vegeta.write_targets(
        out / f"targets-{rate}.json", f"{endpoints.api_url}/sensor", prefix, rate * int(seconds + 2)
    )
    procs = processes(endpoints)
    api_before, pool_before = scrape(endpoints.api_url + "/metrics"), scrape(endpoints.pool_metrics_url)
    cpu_before = {c: cpu_seconds(p) for c, p in procs.items()}
    print(f"[bench] {name}: vegeta {rate} req/s for {seconds:g} s", flush=True)
    report = vegeta.attack(targets, rate, seconds)
    cpu = {c: cpu_seconds(p) - cpu_before[c] for c, p in procs.items()}
    stored, _ = wait_for_store(store, prefix, report.ok, time.time(), 30)
    api_after, pool_after = scrape(endpoints.api_url + "/metrics"), scrape(endpoints.pool_metrics_url)
    stages = stage_quantiles(api_after, api_before) | {
        s: q
        for s, q in stage_quantiles(pool_after, pool_before).items()
        if s not in ("receipt_to_produce", "produce_to_ack")
    }
    e2e_after, e2e_before = histogram(pool_after, E2E), histogram(pool_before, E2E)
    hist_p99 = (e2e_after - e2e_before).quantile(0.99) * 1000 if e2e_after and e2e_before else float("nan")
    level = Level(name, rate, seconds, report, stored, store.e2e_ms(prefix), hist_p99, stages, cpu)
    targets.unlink(missing_ok=True)
    print(f"[bench] {level.row()}\n[bench] statuses {report.status_codes} errors {report.errors[:3]}", flush=True)
    return level


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="200,500,1000,2000", help="offered loads, req/s, one level each")
    p.add_argument("--seconds", type=float, default=30, help="per level (the top rate gets --top-seconds)")
    p.add_argument("--top-seconds", type=float, default=60)
    p.add_argument("--overload", type=float, default=2.0, help="x the top rate, 20 s; 0 skips it")
    p.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra stack environment")
    args = p.parse_args(argv)
    broker = os.environ.get("BENCH_KAFKA_BROKER", "127.0.0.1:9092")
    run_id = new_run_id()
    out = ROOT / "reports" / f"bench-pipeline-{run_id}"
    out.mkdir(parents=True, exist_ok=True)
    rates = [int(x) for x in args.rates.split(",") if x.strip()]
    env = {"CONSUMER_ECHO": "true", **dict(item.split("=", 1) for item in args.env)}  # as `make up`
    levels: list[Level] = []
    with own_stack(run_id, out / "stack", broker, extra_env=env) as endpoints:
        store = Store(endpoints.sqlite_path, endpoints.database_url)
        if warm_up(endpoints, store, run_id, 60) is None:
            print("[bench] the pipeline did not warm up; see the logs in " + str(out / "stack"), file=sys.stderr)
            return 1
        for rate in rates:
            seconds = args.top_seconds if rate == rates[-1] else args.seconds
            levels.append(run_level(endpoints, store, out, run_id, rate, seconds, f"{rate:,} req/s"))
        if args.overload:
            over = int(rates[-1] * args.overload)
            levels.append(run_level(endpoints, store, out, run_id, over, 20, f"overload {over:,} req/s"))
    command = "python -m bench.pipeline " + " ".join(argv if argv is not None else sys.argv[1:])
    body = "\n".join(
        [
            f"Measured {now()} on {machine()}; broker, API, pool and load generator share the cores.",
            f"Command: `make bench` (`{command.strip()}`); the stack as `make up` runs it: 2 API workers,",
            "2 pool workers, SQLite sink, the seed's echo on, 6 partitions, ACK_MODE=delivered"
            + (f", {', '.join(args.env)}" if args.env else "")
            + ". Load: vegeta, open loop, one distinct reading per request; HTTP latency counts from each",
            "request's scheduled send; 30 s per level, 60 s for the top rate, then 20 s at twice the top rate.",
            "",
            "| level | offered req/s | achieved req/s | HTTP p50 ms | HTTP p99 ms | HTTP max ms | non-2xx | "
            "e2e p50 ms (rows) | e2e p99 ms (rows) | e2e p99 ms (histogram) | readings 2xx / stored |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *(level.row() for level in levels),
            "",
            "Latency budget by stage, p50 / p99 ms (`sensor_pipeline_stage_seconds`, diffed over each level;",
            "append_to_fetch per record, fetch_to_store and store_to_commit per batch):",
            "",
            "| level | " + " | ".join(STAGES) + " |",
            "|---|" + "---:|" * len(STAGES),
            *(level.stage_row() for level in levels),
            "",
            "CPU seconds per 1,000 readings stored (user + system, from /proc, over each level):",
            "",
            "| level | API | broker | pool | total |",
            "|---|---:|---:|---:|---:|",
            *(level.cpu_row() for level in levels),
        ]
    )
    print("\n" + body)
    if not args.no_write:
        write_section(HEADING, body)
        print("\n[bench] BENCHMARKS.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
