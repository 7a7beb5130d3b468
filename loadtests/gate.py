"""`make loadtest-ci` / `python -m loadtests.gate`: the seed's acceptance criteria, enforced.

Starts its own API and pool on the running Kafka (fresh topic, group and SQLite file), warms
the pipeline up, runs Locust headless at a fixed offered load, then checks one run's numbers:
throughput (at least 0.95 of the offered load), failures, loss compared as identities (the
set of readings Locust's users got a 2xx for = the set in Kafka = the set stored), e2e
latency measured from outside (a probe's send -> its row readable in the store, on the
probe's own clock), the same from the pool's histogram and rows, and consumer catch-up.
Prints one table; exits 1 naming the failed criteria, 2 when the pipeline could not be run.
Locust's HTML report and CSV stay in reports/gate-<run_id>/ (git-ignored).

Every threshold and load parameter is a flag with a GATE_* environment default, e.g.
GATE_MAX_P99_MS=50 make loadtest-ci.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from harness.db import Store, StoreCount
from harness.kafka import end_offsets, group_settled, values_by_prefix
from harness.poll import wait_until
from harness.process import ROOT
from harness.prometheus import Histogram, scrape_histogram
from harness.stack import Endpoints, StackError, own_stack
from loadtests.criteria import Measurements, Thresholds, evaluate, render
from loadtests.readings import Fleet, Identity, identity, identity_of, new_run_id, to_json

E2E = "sensor_pipeline_e2e_latency_seconds"
LOCUST_NICENESS = 10
EXIT_FAILED, EXIT_ERROR = 1, 2


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtests.gate", description=__doc__.split("\n\n")[0])
    d = Thresholds()
    p.add_argument("--min-rps", type=float, default=float(_env("GATE_MIN_RPS", str(d.min_rps))))
    p.add_argument(
        "--min-offered-share",
        type=float,
        default=float(_env("GATE_MIN_OFFERED_SHARE", str(d.min_offered_share))),
        help="throughput must also reach this share of --offered-rps",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=int(_env("GATE_MAX_FAILURES", str(d.max_failures))),
    )
    p.add_argument(
        "--max-p99-ms",
        type=float,
        default=float(_env("GATE_MAX_P99_MS", str(d.max_p99_ms))),
    )
    p.add_argument(
        "--max-catchup-s",
        type=float,
        default=float(_env("GATE_MAX_CATCHUP_S", str(d.max_catchup_s))),
    )
    p.add_argument(
        "--offered-rps",
        type=float,
        default=float(_env("GATE_OFFERED_RPS", "200")),
        help="users x per-user rate",
    )
    p.add_argument("--users", type=int, default=int(_env("GATE_USERS", "40")))
    p.add_argument(
        "--run-time",
        type=float,
        default=float(_env("GATE_RUN_TIME", "25")),
        help="seconds of load",
    )
    p.add_argument(
        "--user-classes",
        default=_env("GATE_USER_CLASSES", "SensorUser BatchUser MixedUser"),
    )
    p.add_argument(
        "--kafka-broker",
        default=_env("GATE_KAFKA_BROKER", _env("TEST_KAFKA_BROKER", "127.0.0.1:9092")),
    )
    p.add_argument("--warmup-timeout", type=float, default=float(_env("GATE_WARMUP_TIMEOUT", "30")))
    p.add_argument("--reports", type=Path, default=ROOT / "reports")
    p.add_argument(
        "--without-pool",
        action="store_true",
        help="self-check: start the API but no consumer pool; the gate must then fail on loss",
    )
    external = p.add_argument_group("external stack (skip starting one; e.g. the one `make up` runs)")
    external.add_argument("--api-url")
    external.add_argument("--pool-metrics-url")
    external.add_argument("--topic")
    external.add_argument("--sqlite-path")
    external.add_argument("--database-url")
    external.add_argument("--consumer-group", help="checked to be settled before the load starts")
    return p.parse_args(argv)


def warm_up(endpoints: Endpoints, store: Store, run_id: str, timeout: float) -> float | None:
    """Wait for a settled consumer group, then readings over all partitions until stored.

    Returns how long that took, or None if not done within `timeout` (the gate then runs
    anyway and the criteria report what is wrong). The warm-up uses a prefix the run's
    counts ignore.
    """
    prefix = f"{run_id}w-"
    t0 = time.monotonic()

    def settled() -> bool:
        if not endpoints.consumer_group:
            return True
        return group_settled(endpoints.kafka_broker, endpoints.consumer_group, endpoints.topic, endpoints.workers)

    def stored() -> bool:
        return store.count(prefix).rows >= 30

    try:
        wait_until("the consumer group to settle", settled, timeout)
        with requests.Session() as http:
            for fleet in [Fleet(prefix.rstrip("-"), size=6) for _ in range(5)]:
                for reading in fleet.batch(6):
                    resp = http.post(
                        f"{endpoints.api_url}/sensor",
                        data=to_json(reading),
                        headers={"Content-Type": "application/json"},
                        timeout=10,
                    )
                    if resp.status_code != 202:
                        raise StackError(f"warm-up reading refused: HTTP {resp.status_code} {resp.text[:200]}")
        wait_until("the warm-up readings to be stored", stored, max(1.0, timeout - (time.monotonic() - t0)))
        wait_until("the consumer group to stay settled", settled, 10)
    except (StackError, TimeoutError) as e:
        print(f"[gate] warm-up: {e}", flush=True)
        return None
    return time.monotonic() - t0


@dataclass(frozen=True)
class Load:
    """A fixed offered load: `users` Locust users, each at offered_rps/users requests per second."""

    offered_rps: float
    users: int
    run_time: float
    user_classes: str = "SensorUser BatchUser MixedUser"
    processes: int = 1


class Prober(threading.Thread):
    """e2e latency from outside the pipeline: one reading at a time (its own prefix, so the
    run's identities ignore it), from its send on this process's monotonic clock until its
    row is readable (committed) in the store, polled every POLL_S."""

    POLL_S = 0.002

    def __init__(self, api_url: str, store: Store, prefix: str, every_s: float = 0.2, patience_s: float = 10) -> None:
        super().__init__(name="e2e-prober", daemon=True)
        self.api_url, self.store, self.every_s, self.patience_s = api_url, store, every_s, patience_s
        self.fleet = Fleet(prefix, size=4)
        self.latencies_ms: list[float] = []
        self.unseen = 0  # acknowledged, never readable within patience_s
        self.refused = 0  # not acknowledged (the load's failures criterion covers those)
        self.done = threading.Event()

    def run(self) -> None:
        try:
            with requests.Session() as http:
                while not self.done.is_set():
                    started = time.monotonic()
                    self.probe(http)
                    self.done.wait(max(0.0, self.every_s - (time.monotonic() - started)))
        finally:
            self.store.close()  # NOTE: in this thread, which opened it (sqlite3 requires it)

    def probe(self, http: requests.Session) -> None:
        reading = self.fleet.reading()
        sent = time.monotonic()
        try:
            resp = http.post(
                f"{self.api_url}/sensor",
                data=to_json(reading),
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
        except requests.RequestException:
            self.refused += 1
            return
        if resp.status_code != 202:
            self.refused += 1
            return
        key = (str(reading["sensor_id"]), str(reading["type"]), str(reading["timestamp"]))
        while time.monotonic() - sent < self.patience_s:
            if self.store.has(*key):
                self.latencies_ms.append((time.monotonic() - sent) * 1000)
                return
            time.sleep(self.POLL_S)
        self.unseen += 1

    def stop(self) -> None:
        self.done.set()
        self.join(self.patience_s + 15)


def acked_identities(path: Path) -> list[Identity]:
    """The identities Locust's users recorded for their 2xx answers (every process's file)."""
    files = [path, *sorted(path.parent.glob(path.name + ".*"))]
    rows: list[Identity] = []
    for file in files:
        if file.exists():
            for line in file.read_text().splitlines():
                sensor_id, kind, us = json.loads(line)
                rows.append((str(sensor_id), str(kind), int(us)))
    return rows


def run_locust(load: Load, api_url: str, run_id: str, out: Path, tag: str = "gate") -> dict[str, Any]:
    """Locust headless for a fixed time; returns the summary the locustfile writes at exit."""
    summary_path = out / "summary.json"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests/locustfile.py"),
        "--headless", "--only-summary", "-u", str(load.users), "-r", str(load.users),
        "--run-time", f"{load.run_time:g}s", "--stop-timeout", "10", "--host", api_url,
        "--csv", str(out / "locust"), "--html", str(out / "locust.html"),
        *(["--processes", str(load.processes)] if load.processes > 1 else []),
        *load.user_classes.split(),
    ]  # fmt: skip
    env = {
        **os.environ,
        "LOADTEST_RUN_ID": run_id,
        "LOADTEST_USER_RATE": f"{load.offered_rps / load.users:g}",
        "LOADTEST_SUMMARY": str(summary_path),
        "LOADTEST_ACKED": str(out / "acked.jsonl"),
    }
    print(f"[{tag}] nice -n {LOCUST_NICENESS} " + " ".join(cmd[2:]), flush=True)
    # NOTE: --stop-timeout lets in-flight requests finish: a request cut off after the API
    # acknowledged it would be in Kafka without Locust having seen its 2xx.
    # NOTE: Locust runs at a lower CPU priority: on a small machine the load generator would
    # otherwise take CPU from the pipeline it measures, and its own scheduling would show up
    # in the pipeline's latency. The e2e criteria are measured by the pipeline (API receipt ->
    # stored), so Locust's own slower clock only shows in its client-side HTTP figures.
    subprocess.run(
        cmd, cwd=ROOT, env=env, check=False, timeout=load.run_time + 120, preexec_fn=lambda: os.nice(LOCUST_NICENESS)
    )
    if not summary_path.exists():
        raise StackError("Locust exited without writing its summary (see its output above)")
    return json.loads(summary_path.read_text())


def wait_for_store(
    store: Store, prefix: str, expected: int, last_ok: float | None, patience: float
) -> tuple[int, float | None]:
    """Poll the store until every acknowledged reading is in; returns (rows, catch-up seconds).

    Catch-up is the pool's own `stored_at_ns` of the last row minus Locust's last 2xx, so the
    polling interval does not count; None when the rows never all arrived within `patience`.
    """

    def all_stored() -> StoreCount | None:
        counted = store.count(prefix)
        return counted if counted.rows >= expected > 0 else None

    try:
        counted = wait_until(f"{expected} rows stored", all_stored, patience, interval=0.1)
    except TimeoutError:
        counted = store.count(prefix)
    if counted.rows < expected or expected == 0 or last_ok is None or counted.last_stored_ns is None:
        return counted.rows, None
    return counted.rows, max(0.0, counted.last_stored_ns / 1e9 - last_ok)


def _ms(h: Histogram | None, q: float) -> float | None:
    return None if h is None else h.quantile(q) * 1000


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank quantile of sorted values; None when there are none."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def gate(args: argparse.Namespace) -> int:
    run_id = new_run_id()
    out = args.reports / f"gate-{run_id}"
    out.mkdir(parents=True, exist_ok=True)
    thresholds = Thresholds(
        args.min_rps, args.min_offered_share, args.max_failures, args.max_p99_ms, args.max_catchup_s
    )
    where = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    offered = f"{args.offered_rps:g} req/s offered by {args.users} users for {args.run_time:g} s"
    print(f"[gate] run {run_id}: {offered}; reports in {where}", flush=True)
    if args.api_url:
        if not (args.topic and args.pool_metrics_url and (args.sqlite_path or args.database_url)):
            print(
                "[gate] --api-url needs --topic, --pool-metrics-url and --sqlite-path or --database-url",
                file=sys.stderr,
            )
            return EXIT_ERROR
        stack: AbstractContextManager[Endpoints] = nullcontext(
            Endpoints(
                args.api_url,
                args.pool_metrics_url,
                args.kafka_broker,
                args.topic,
                args.sqlite_path,
                args.database_url,
                args.consumer_group,
            )
        )
    else:
        stack = own_stack(run_id, out / "stack", args.kafka_broker, with_pool=not args.without_pool)

    t_start = time.monotonic()
    with stack as endpoints:
        started = f"{time.monotonic() - t_start:.1f} s"
        where = f"API {endpoints.api_url}, pool metrics {endpoints.pool_metrics_url}, topic {endpoints.topic}"
        print(f"[gate] pipeline: {where} ({started})", flush=True)
        store = Store(endpoints.sqlite_path, endpoints.database_url)
        took = warm_up(endpoints, store, run_id, args.warmup_timeout)
        warm = f"stored after {took:.1f} s" if took is not None else f"NOT stored in {args.warmup_timeout:g} s"
        print(f"[gate] warm-up: {warm}", flush=True)
        since = end_offsets(endpoints.kafka_broker, endpoints.topic)
        before = scrape_histogram(endpoints.pool_metrics_url, E2E)
        load = Load(args.offered_rps, args.users, args.run_time, args.user_classes)
        prober = Prober(endpoints.api_url, Store(endpoints.sqlite_path, endpoints.database_url), f"{run_id}p")
        prober.start()
        try:
            summary = run_locust(load, endpoints.api_url, run_id, out)
        finally:
            prober.stop()
        prefix = f"{run_id}-"
        acked = int(summary["acked_readings"])
        last_ok = summary.get("last_ok_time")
        patience = args.max_catchup_s + 5.0  # past the limit, to report how late it was
        stored, catchup = wait_for_store(store, prefix, acked, last_ok, patience)
        acked_ids = Counter(acked_identities(out / "acked.jsonl"))
        stored_ids = Counter(identity(*key) for key in store.keys(prefix))
        kafka_ids = Counter(
            identity_of(json.loads(v)) for v in values_by_prefix(endpoints.kafka_broker, endpoints.topic, since, prefix)
        )
        after = scrape_histogram(endpoints.pool_metrics_url, E2E)
        rows_ms = store.e2e_ms(prefix)
    outside = sorted(prober.latencies_ms)
    window = after - before if after is not None and before is not None else after
    m = Measurements(
        offered_rps=args.offered_rps,
        achieved_rps=float(summary["rps"]),
        requests=int(summary["requests"]),
        failures=int(summary["failures"]),
        acked=acked,
        in_kafka=sum(kafka_ids.values()),
        stored=stored,
        e2e_count=None if window is None else window.count,
        e2e_p50_ms=_ms(window, 0.50),
        e2e_p95_ms=_ms(window, 0.95),
        e2e_p99_ms=_ms(window, 0.99),
        catchup_s=catchup,
        acked_ids=len(acked_ids),
        lost=len(acked_ids.keys() - stored_ids.keys()),
        unacked_stored=len(stored_ids.keys() - acked_ids.keys()),
        kafka_missing=len(acked_ids.keys() - kafka_ids.keys()),
        kafka_unacked=len(kafka_ids.keys() - acked_ids.keys()),
        kafka_twice=sum(n - 1 for n in kafka_ids.values()),
        outside_count=len(outside),
        outside_p50_ms=percentile(outside, 0.50),
        outside_p99_ms=percentile(outside, 0.99),
        outside_max_ms=outside[-1] if outside else None,
        outside_unseen=prober.unseen,
        e2e_rows_count=len(rows_ms),
        e2e_rows_p50_ms=percentile(rows_ms, 0.50),
        e2e_rows_p99_ms=percentile(rows_ms, 0.99),
        e2e_rows_max_ms=rows_ms[-1] if rows_ms else None,
    )
    verdicts = evaluate(m, thresholds)
    table = render(verdicts)
    (out / "gate.txt").write_text(table + "\n")
    (out / "measurements.json").write_text(json.dumps(m.__dict__, indent=2))
    print(
        f"\n[gate] acceptance criteria (seed section 8), run {run_id}, {time.monotonic() - t_start:.0f} s\n{table}",
        flush=True,
    )
    for reason, n in dict(summary.get("errors") or {}).items():
        print(f"[gate] Locust error x{n}: {reason}")
    return 0 if all(v.ok for v in verdicts) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # NOTE: SIGTERM (CI cancelling, a test's clean-up) must unwind through the `finally`
    # blocks that stop the API and the pool, which live in their own sessions.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        return gate(args)
    except (StackError, TimeoutError, subprocess.TimeoutExpired) as e:
        print(
            f"\n[gate] GATE ERROR: the pipeline could not be measured: {e}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
