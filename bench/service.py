"""`python -m bench.service`: HTTP ingest throughput and latency, against a baseline.

Runs wrk (closed loop) against the real API in delivered mode (single readings and
1,000-reading batches), the real API in enqueued mode, and the bare Falcon app of
bench/bare_app.py (decode, no Kafka), all with the same gunicorn settings, in one run.
Results replace the "Service" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from bench.common import ROOT, WrkResult, machine, now, single_reading_lua, write_section, wrk
from loadtests.stack import Process, wait_until

BATCH_LUA = """
local parts = {}
for i = 1, %(size)d do
  parts[i] = string.format(
    '{"sensor_id":"bench-%%d","timestamp":"2025-11-17T14:20:00.%%06dZ","type":"temperature","value":%%d.5,"unit":"C"}',
    i %% 500, i, i %% 90)
end
local body = "[" .. table.concat(parts, ",") .. "]"
request = function()
  return wrk.format("POST", "/sensor/batch", {["Content-Type"] = "application/json"}, body)
end
"""


@contextmanager
def serve(app: str, port: int, env: dict[str, str]) -> Iterator[str]:
    """Run `app` under the project's gunicorn settings; yields the base URL."""
    full_env = {
        **os.environ,
        **env,
        "API_PORT": str(port),
        "API_HOST": "127.0.0.1",
        "PROMETHEUS_MULTIPROC_DIR": f"/tmp/bench-metrics-{port}",
    }
    args = [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf", app]
    proc = Process(app, args, full_env, ROOT / ".run" / "logs" / f"bench-{port}.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(f"{app} /readyz", lambda: requests.get(f"{base}/readyz", timeout=2).status_code == 200, 60, proc)
        yield base
    finally:
        proc.stop(60)


def rps(r: WrkResult) -> float:
    return r.rps


def row(name: str, r: WrkResult, per_request: int, target: str, spread: str) -> str:
    readings = r.rps * per_request
    errors = r.non_2xx + r.socket_errors
    latency = f"{r.p50_ms:.1f} | {r.p99_ms:.1f}"
    return f"| {name} | {r.rps:,.0f} | {readings:,.0f} ({spread}) | {latency} | {errors} | {target} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="per measured run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario; the median is reported")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--api-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the API runs, e.g. API_WORKERS=3 or RDKAFKA_LINGER_MS=2 (repeatable)",
    )
    args = parser.parse_args()

    broker = os.environ.get("BENCH_KAFKA_BROKER", "127.0.0.1:9092")
    topic = f"bench-service-{uuid.uuid4().hex[:8]}"
    env = {"KAFKA_BROKER": broker, "TOPIC_NAME": topic, "DLQ_TOPIC": f"{topic}.dlq", "ALERTS_TOPIC": f"{topic}.alerts"}
    env.update(item.split("=", 1) for item in args.api_env)
    batch_lua = BATCH_LUA % {"size": args.batch_size}
    results: list[str] = []

    def run(name: str, base: str, lua: str, path: str, per_request: int, target: str) -> None:
        print(f"[bench.service] {name}: {args.repeats} x {args.seconds}s, {args.connections} connections", flush=True)
        wrk(base + path, lua, 3, args.connections)  # warm-up: connections, metadata, producer id
        runs = sorted((wrk(base + path, lua, args.seconds, args.connections) for _ in range(args.repeats)), key=rps)
        for r in runs:
            print(f"  {r.rps:,.0f} req/s, p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms", flush=True)
        median = runs[len(runs) // 2]
        spread = f"{runs[0].rps * per_request:,.0f} to {runs[-1].rps * per_request:,.0f}"
        results.append(row(name, median, per_request, target, spread))
        print(results[-1], flush=True)

    with serve("service.wsgi:app", 5071, env) as base:
        run("API, delivered, single", base, single_reading_lua(), "/sensor", 1, "3,000 req/s")
        run(
            f"API, delivered, batch of {args.batch_size}",
            base,
            batch_lua,
            "/sensor/batch",
            args.batch_size,
            "100,000 readings/s",
        )
    with serve("service.wsgi:app", 5072, {**env, "ACK_MODE": "enqueued"}) as base:
        run("API, enqueued, single", base, single_reading_lua(), "/sensor", 1, "")
        run(f"API, enqueued, batch of {args.batch_size}", base, batch_lua, "/sensor/batch", args.batch_size, "")
    with serve("bench.bare_app:app", 5073, env) as base:
        run("bare Falcon + msgspec, no Kafka, single", base, single_reading_lua(), "/sensor", 1, "(baseline)")
        run(
            f"bare Falcon + msgspec, no Kafka, batch of {args.batch_size}",
            base,
            batch_lua,
            "/sensor/batch",
            args.batch_size,
            "(baseline)",
        )

    flags = (
        f"--seconds {args.seconds} --repeats {args.repeats} --connections {args.connections} "
        f"--batch-size {args.batch_size}"
    ) + "".join(f" --api-env {item}" for item in args.api_env)
    command = f"make bench  (python -m bench.service {flags})"
    table = "\n".join(
        [
            f"Measured {now()} on {machine()}; command: `{command}`; load generator wrk "
            f"(1 thread, {args.connections} connections, closed loop) on the same machine; "
            f"API settings: defaults (API_WORKERS=2, API_THREADS=16) plus {', '.join(args.api_env) or 'nothing'}; "
            "broker on the same machine.",
            "",
            f"Each row is the median of {args.repeats} runs (by requests/s) after a 3 s warm-up; the range "
            "of readings/s over the runs is in brackets. Errors are non-2xx answers (503 = back-pressure).",
            "",
            "| scenario | requests/s | readings/s (range) | p50 ms | p99 ms | errors | target |",
            "|---|---:|---:|---:|---:|---:|---|",
            *results,
        ]
    )
    write_section("Service (HTTP API -> Kafka)", table)
    print(table)


if __name__ == "__main__":
    main()
