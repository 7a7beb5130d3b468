"""`python -m bench.service`: the ingest API against its baselines, side by side in one run.

Closed loop (wrk), single readings and 1,000-reading batches, acknowledged by Kafka:
- the real API (Falcon ASGI on gunicorn's uvicorn workers, service/server/gunicorn_conf.py);
- the FastAPI + pydantic + aiokafka endpoint of bench/fastapi_baseline.py (what a user would
  write instead), with the same number of workers, on the same broker, under the same load;
- the bare Falcon ASGI + msgspec app of bench/bare_app.py (decode, no Kafka), same settings.
Then slow clients (harness/slow_clients.py): normal requests timed while 1,000 connections
trickle their headers. CPU per request is read from /proc for the API's processes.
Results replace the "Service" section of BENCHMARKS.md. The consumer pool is not running
here: this is the API alone (bench.pipeline measures the stack as `make up` runs it).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench import fastapi_baseline
from bench.common import WrkResult, cpu_seconds, group_pids, machine, now, single_reading_lua, write_section, wrk
from harness import slow_clients
from harness.isolation import Isolation
from harness.poll import wait_http
from harness.process import PYTHON, ROOT, Process, spawn

BATCH_LUA = """
local n = 0
request = function()
  n = n + 1
  local parts = {}
  for i = 1, %(size)d do
    parts[i] = string.format(
      '{"sensor_id":"bench-%%d","timestamp":"2025-11-17T14:%%02d:%%02d.%%06dZ","type":"temperature","value":%%d.5}',
      i %% 500, n %% 60, math.floor(n / 60) %% 60, i, i %% 90)
  end
  local body = "[" .. table.concat(parts, ",") .. "]"
  return wrk.format("POST", "/sensor/batch", {["Content-Type"] = "application/json"}, body)
end
"""


@contextmanager
def serve(name: str, args: list[str], port: int, env: dict[str, str]) -> Iterator[tuple[str, Process]]:
    """Run a server command with `env`; yields its base URL and process once /readyz answers."""
    full_env = {**env, "API_PORT": str(port), "API_HOST": "127.0.0.1"}
    full_env["PROMETHEUS_MULTIPROC_DIR"] = f"/tmp/bench-metrics-{port}"
    log = ROOT / ".run" / "logs" / f"bench-{port}.log"
    with spawn(args, full_env, log, name=name, stop_timeout=60) as proc:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz", 60, proc=proc)
        yield base, proc


def gunicorn(app: str) -> list[str]:
    return [PYTHON, "-m", "gunicorn", "-c", "python:service.server.gunicorn_conf", app]


@dataclass
class Measured:
    name: str
    result: WrkResult
    per_request: int
    cpu_ms_per_request: float
    spread: str

    @property
    def readings_per_s(self) -> float:
        return self.result.rps * self.per_request

    def row(self) -> str:
        r = self.result
        errors = r.non_2xx + r.socket_errors
        return (
            f"| {self.name} | {r.rps:,.0f} | {self.readings_per_s:,.0f} ({self.spread}) | {r.p50_ms:.1f} | "
            f"{r.p99_ms:.1f} | {self.cpu_ms_per_request:.3f} | {errors} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="per measured run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario; the median is reported")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=1000, help="slow connections in the slow-client run")
    parser.add_argument("--slow-seconds", type=float, default=8.0, help="< API_HEADER_TIMEOUT_MS, so all stay open")
    parser.add_argument(
        "--api-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every server, e.g. API_WORKERS=3 (repeatable)",
    )
    args = parser.parse_args()

    broker = os.environ.get("BENCH_KAFKA_BROKER", "127.0.0.1:9092")
    iso = Isolation.fresh(broker, "bench-service").create()
    env = iso.env()  # serve() sets each server's own port
    env.update(item.split("=", 1) for item in args.api_env)
    workers = int(env.get("API_WORKERS", "2"))
    batch_lua = BATCH_LUA % {"size": args.batch_size}
    measured: dict[str, Measured] = {}

    def measure(proc: Process, url: str, lua: str) -> tuple[WrkResult, float]:
        """One wrk run; returns the result and the server's CPU ms per request in it."""
        pids = group_pids(proc.pid)
        before = cpu_seconds(pids)
        r = wrk(url, lua, args.seconds, args.connections)
        cpu = (cpu_seconds(pids) - before) * 1000 / max(r.requests, 1)
        print(f"  {r.rps:,.0f} req/s, p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, {cpu:.3f} CPU ms/req", flush=True)
        return r, cpu

    def record(key: str, name: str, runs: list[tuple[WrkResult, float]], per_request: int) -> None:
        runs.sort(key=lambda x: x[0].rps)
        median, cpu = runs[len(runs) // 2]
        spread = f"{runs[0][0].rps * per_request:,.0f} to {runs[-1][0].rps * per_request:,.0f}"
        measured[key] = Measured(name, median, per_request, cpu, spread)
        print(measured[key].row(), flush=True)

    single = {
        "api": "this API, single",
        "fastapi": "FastAPI + aiokafka, single",
        "bare": "bare Falcon ASGI + msgspec, no Kafka, single",
    }
    slow: dict[str, slow_clients.SlowClientsResult] = {}
    try:
        # NOTE: all three servers run at once and the single-reading runs take turns, so a
        # machine that gets slower or faster during the bench moves every server alike.
        with (
            serve("API", gunicorn("service.server.asgi:app"), 5071, env) as api_server,
            serve("FastAPI", fastapi_baseline.command(workers, 5074), 5074, env) as fastapi_server,
            serve("bare", gunicorn("bench.bare_app:app"), 5073, env) as bare_server,
        ):
            servers = {"api": api_server, "fastapi": fastapi_server, "bare": bare_server}
            runs: dict[str, list[tuple[WrkResult, float]]] = {key: [] for key in servers}
            for key, (base, _) in servers.items():
                wrk(base + "/sensor", single_reading_lua(f"{key}-w"), 3, args.connections)  # warm-up
            for i in range(args.repeats):
                for key, (base, proc) in servers.items():
                    print(f"[bench.service] {single[key]}, run {i + 1}/{args.repeats}", flush=True)
                    runs[key].append(measure(proc, base + "/sensor", single_reading_lua(f"{key}-{i}-")))
            for key, name in single.items():
                record(key, name, runs[key], 1)
            for key in ("api", "bare"):
                base, proc = servers[key]
                print(f"[bench.service] {key}, batch of {args.batch_size}", flush=True)
                wrk(base + "/sensor/batch", batch_lua, 3, args.connections)
                batch = [measure(proc, base + "/sensor/batch", batch_lua) for _ in range(args.repeats)]
                label = "this API" if key == "api" else "bare, no Kafka"
                record(f"{key}_batch", f"{label}, batch of {args.batch_size}", batch, args.batch_size)
            for key in ("api", "fastapi"):
                base, _ = servers[key]
                print(f"[bench.service] {key}: {args.slow} slow connections, {args.slow_seconds:g} s", flush=True)
                slow[key] = slow_clients.run(base, slow=args.slow, duration_s=args.slow_seconds)
                print(slow[key].summary(), flush=True)
    finally:
        iso.delete()

    api, fastapi, bare = measured["api"], measured["fastapi"], measured["bare"]
    flags = (
        f"--seconds {args.seconds} --repeats {args.repeats} --connections {args.connections} "
        f"--batch-size {args.batch_size} --slow {args.slow}"
    ) + "".join(f" --api-env {item}" for item in args.api_env)

    def slow_row(name: str, s: slow_clients.SlowClientsResult) -> str:
        n = s.normal
        return (
            f"| {name} | {s.slow.opened} | {n.sent} | {n.answered} | {n.timed_out} | "
            f"{slow_clients._ms(n.p50_ms)} | {slow_clients._ms(n.p99_ms)} | {slow_clients._ms(n.max_ms)} |"
        )

    table = "\n".join(
        [
            f"Measured {now()} on {machine()}; command: `make bench` (`python -m bench.service {flags}`); "
            f"load generator wrk (1 thread, {args.connections} connections, closed loop) on the same machine; "
            f"{workers} workers for every server; acknowledged delivery (ACK_MODE=delivered); "
            "broker on the same machine; **no consumer pool running** (the API alone).",
            "",
            f"Each row is the median of {args.repeats} runs (by requests/s) after a 3 s warm-up; the three servers "
            "run side by side and their single-reading runs take turns; the range of readings/s is in brackets. "
            "CPU ms/req: user + system CPU of all the server's processes (from /proc) divided by the requests "
            "of that run. Errors are non-2xx answers.",
            "",
            "| scenario | requests/s | readings/s (range) | p50 ms | p99 ms | CPU ms/req | errors |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(m.row() for m in measured.values()),
            "",
            f"Ratios in this run: this API / FastAPI + aiokafka = **{api.result.rps / fastapi.result.rps:.2f}x** "
            f"(target >= 1.5x); this API / bare no-Kafka endpoint = **{api.result.rps / bare.result.rps:.2f}x** "
            f"(target >= 0.6x); batch ingest **{measured['api_batch'].readings_per_s:,.0f} readings/s** "
            "(target >= 150,000).",
            "",
            f"Slow clients: {args.slow} connections trickle header bytes (one every 1-2 s) for "
            f"{args.slow_seconds:g} s while normal POSTs are timed (fresh connection each, 2 at a time, 5 s client "
            "timeout); target: all answered, p99 < 50 ms.",
            "",
            "| server | slow connections open | normal sent | answered | timed out | p50 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            slow_row("this API", slow["api"]),
            slow_row("FastAPI + aiokafka", slow["fastapi"]),
        ]
    )
    write_section("Service (HTTP API -> Kafka)", table)
    print(table)


if __name__ == "__main__":
    main()
