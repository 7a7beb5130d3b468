"""`python -m bench.rollups`: what the hourly and daily rollups buy and cost (make bench).

1. Aggregates: `GET /sensors/agg-target/aggregates?type=temperature&bucket=1h|1d` over 30 days
   of one sensor (a reading every 10 s) in a store holding `--rows` readings (default 10
   million: the target sensor plus 2,000 others over the same days), on SQLite and on
   PostgreSQL, written through the stores' own writers (so the rollups are kept as in
   production); the API alone (no pool), timed from one sequential client: p50, p99, max.
2. Store throughput before and after: the pool (CONSUMER_WORKERS) drains one pre-filled topic
   into a fresh SQLite file and a fresh PostgreSQL database, in interleaved rounds, with this
   tree's code ("after") and with the code of `--baseline` (default: the first parent of the
   commit that added the rollups) checked out in a temporary git worktree ("before").
Results replace the "Rollups" section of BENCHMARKS.md (skip with --no-write).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import requests

from bench.common import machine, now, write_section
from bench.pool import prefill
from harness.db import throwaway_database
from harness.isolation import Isolation
from harness.poll import wait_until
from harness.process import PYTHON, ROOT, spawn
from harness.prometheus import metric, scrape
from harness.stack import Endpoints, own_stack
from loadtests.readings import new_run_id
from pipeline.reading import Reading
from pipeline.record import Record
from store import Bucket, Writer, open_reader, open_writer, reads
from store.probe import Probe

HEADING = "Rollups (1h and 1d aggregates over months; the pool's store throughput)"
DB_DIR = ROOT / ".cache" / "bench-rollups"
START = datetime(2025, 10, 1, tzinfo=timezone.utc)
DAYS = 30
TARGET = "agg-target"
ROLLUP_COMMIT_SUBJECT = "store: hourly and daily rollups"


BUCKETS_TIMED: tuple[Bucket, ...] = ("1d", "1h")
QUERY_ALONE = (
    "\n\nThe store's query alone (`Reader.aggregates` in the bench process, no HTTP), against the roll-up of"
    " `readings_1m` that answered 1h and 1d before the rollups, interleaved request by request on the same store:\n\n"
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# --- 1. aggregates ----------------------------------------------------------------------


def fill(writer: Writer, rows: int) -> float:
    """The target sensor: a temperature every 10 s for 30 days; the rest of `rows` over 2,000
    other sensors and the same days. Batches of 50,000 through the writer. Returns seconds."""
    own = DAYS * 86_400 // 10
    others = max(0, rows - own)
    step = DAYS * 86_400 / max(1, others / 2_000)
    started, written, batch = time.monotonic(), 0, list[Record]()

    def flush() -> None:
        nonlocal written, batch
        written += writer.write(batch).stored
        batch = []
        if written % 1_000_000 < 50_000:
            print(f"  {written:,} rows ({time.monotonic() - started:.0f} s)", flush=True)

    for n in range(own):
        batch.append(Record.of(Reading(TARGET, START + timedelta(seconds=10 * n), "temperature", 20 + n % 100 / 10), 0))
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
    return time.monotonic() - started


def sqlite_fixture(rows: int) -> Path:
    """Built once into .cache/bench-rollups/ (kept between runs)."""
    path = DB_DIR / f"readings-{rows}.db"
    if path.exists():
        return path
    DB_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".building")
    for leftover in tmp.parent.glob(tmp.name + "*"):
        leftover.unlink()
    writer = open_writer("sqlite", str(tmp), "")
    writer.setup()
    seconds = fill(writer, rows)
    writer.close()
    tmp.rename(path)
    print(f"  SQLite fixture: {rows:,} rows in {seconds:.0f} s", flush=True)
    return path


def postgres_fixture(url: str, rows: int) -> None:
    writer = open_writer("postgres", "", url)
    writer.setup()
    seconds = fill(writer, rows)
    writer.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print(f"  PostgreSQL fixture: {rows:,} rows in {seconds:.0f} s", flush=True)


def time_buckets(stack: Endpoints, requests_per_case: int) -> list[tuple[str, int, float, float, float]]:
    session = requests.Session()
    window = {"from": START.isoformat(), "to": (START + timedelta(days=DAYS)).isoformat()}
    out = []
    for bucket in ("1d", "1h"):
        url = f"{stack.api_url}/sensors/{TARGET}/aggregates"
        params = {**window, "bucket": bucket, "type": "temperature"}
        body = session.get(url, params=params, timeout=30).json()  # warm-up
        timings = []
        for _ in range(requests_per_case):
            t0 = time.perf_counter()
            resp = session.get(url, params=params, timeout=30)
            timings.append((time.perf_counter() - t0) * 1000)
            resp.raise_for_status()
        row = (bucket, len(body["items"]), percentile(timings, 0.5), percentile(timings, 0.99), max(timings))
        print(
            f"  {bucket}: {row[1]} buckets, p50 {row[2]:.1f} ms, p99 {row[3]:.1f} ms, max {row[4]:.1f} ms", flush=True
        )
        out.append(row)
    return out


def query_times(kind: str, path: str, url: str, count: int) -> list[str]:
    """The store's query alone (Reader.aggregates in this process, no HTTP), rollups against
    the roll-up of readings_1m that answered before them, interleaved request by request."""

    async def run() -> list[str]:
        reader = open_reader(kind, path, url)
        assert reader is not None
        d, end = reader.dialect, START + timedelta(days=DAYS)
        try:
            out = []
            for bucket in BUCKETS_TIMED:
                old_sql, _ = reads.aggregates_sql(d.buckets, bucket, "temperature", None, d.cast)
                old_args = [TARGET, d.bound(START), d.bound(end), "temperature", 10_001]
                new, old = [], []
                for _ in range(count + 1):
                    t0 = time.perf_counter()
                    page = await reader.aggregates(TARGET, "temperature", START, end, bucket, 10_000, None)
                    t1 = time.perf_counter()
                    rows = await reader._query(old_sql, old_args)
                    t2 = time.perf_counter()
                    assert len(page.items) == len(rows)
                    new.append((t1 - t0) * 1000)
                    old.append((t2 - t1) * 1000)
                new, old = new[1:], old[1:]  # the first is a warm-up
                out.append(
                    f"| {kind} | {bucket} | {percentile(new, 0.5):.1f} | {percentile(new, 0.99):.1f} |"
                    f" {percentile(old, 0.5):.1f} | {percentile(old, 0.99):.1f} |"
                )
                print(out[-1], flush=True)
            return out
        finally:
            await reader.close()

    return asyncio.run(run())


def aggregates(args: argparse.Namespace, broker: str, base_url: str, workdir: Path) -> str:
    lines = [
        "| store | bucket | buckets returned | p50 ms | p99 ms | max ms | target p99 ≤ 20 ms |",
        "|---|---|---|---|---|---|---|",
    ]

    alone = [
        "| store | bucket | rollups p50 ms | rollups p99 ms | readings_1m roll-up (before) p50 ms | before p99 ms |",
        "|---|---|---|---|---|---|",
    ]

    def add(store: str, rows: list[tuple[str, int, float, float, float]]) -> None:
        for bucket, n, p50, p99, top in rows:
            lines.append(
                f"| {store} | {bucket} | {n} | {p50:.1f} | {p99:.1f} | {top:.1f} |"
                f" {'met' if p99 <= 20 else '**missed**'} |"
            )

    if "sqlite" in args.stores:
        print(f"aggregates: SQLite, {args.rows:,} rows", flush=True)
        db = sqlite_fixture(args.rows)
        with own_stack(new_run_id(), workdir / "sqlite", broker, {"SQLITE_PATH": str(db)}, with_pool=False) as s:
            add("SQLite", time_buckets(s, args.requests))
        alone.extend(query_times("sqlite", str(db), "", args.requests))
    if "postgres" not in args.stores:
        return "\n".join(lines) + QUERY_ALONE + "\n".join(alone)
    print(f"aggregates: PostgreSQL, {args.rows:,} rows", flush=True)
    with throwaway_database(base_url, "bench_rollups") as url:
        postgres_fixture(url, args.rows)
        env = {"SINK": "postgres", "DATABASE_URL": url}
        with own_stack(new_run_id(), workdir / "postgres", broker, env, with_pool=False) as s:
            add("PostgreSQL", time_buckets(s, args.requests))
        alone.extend(query_times("postgres", "", url, args.requests))
    return "\n".join(lines) + QUERY_ALONE + "\n".join(alone)


# --- 2. the pool's store throughput, before and after -----------------------------------


def baseline_ref(given: str | None) -> str:
    if given:
        return given
    out = subprocess.run(
        ["git", "log", "--format=%H", f"--grep=^{ROLLUP_COMMIT_SUBJECT}", "-n1"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not out:
        raise SystemExit("no rollup commit in this history: give --baseline REF")
    return f"{out}^"


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bench-rollups-base-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=ROOT, check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)
        shutil.rmtree(path, ignore_errors=True)


def drain(code: Path | None, sink: str, env: dict[str, str], count: int, probe: Probe, log: Path) -> float:
    """Readings/s from the first to the last row stored; `code` runs another tree's pool
    (-P: not this tree's modules first; PYTHONPATH: that tree's; workers are spawned with it)."""
    port = int(env["CONSUMER_METRICS_PORT"])
    argv = [PYTHON, "-m", "consumer_pool"] if code is None else [PYTHON, "-P", "-m", "consumer_pool"]
    extra = {} if code is None else {"PYTHONPATH": str(code)}
    with spawn(argv, {**env, **extra, "SINK": sink}, log, name=f"pool {sink}", stop_timeout=60) as proc:
        stored = lambda: metric(scrape(port), "sensor_consumer_readings_total", result="stored")  # noqa: E731
        wait_until(f"{count} readings stored", lambda: stored() >= count, 600, proc, interval=0.25)
    first, last = probe.span()
    assert first is not None and last is not None, f"{sink}: the pool stored nothing"
    return count / ((last - first) / 1e9)


def throughput(args: argparse.Namespace, broker: str, base_url: str, work: Path) -> str:
    ref = baseline_ref(args.baseline)
    run = uuid.uuid4().hex[:8]
    iso = Isolation.fresh(broker, "bench-rollups", run, sqlite_path=str(work / "unused.db"))
    env = {
        **iso.env(),
        "CONSUMER_WORKERS": str(args.workers),
        "CONSUMER_METRICS_DIR": str(work / "metrics"),
        "CONSUMER_ECHO": "false",
        "ALERT_RULES": "",
        "LOG_LEVEL": "WARNING",
    }
    logs = ROOT / ".run" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, str], list[float]] = {}
    iso.create()
    try:
        print(f"[bench] pre-filling {iso.topic} with {args.records:,} readings", flush=True)
        prefill(broker, iso.topic, args.records)
        with worktree(ref) as base:
            for i in range(args.rounds):
                order = [("before", base), ("after", None)] if i % 2 == 0 else [("after", None), ("before", base)]
                for name, code in order:
                    for sink in ("sqlite", "postgres"):
                        n = len(results.setdefault((name, sink), []))
                        group_env = {**env, **iso.with_group(f"bench-rollups-{run}-{name}-{sink}-{n}").env()}
                        if sink == "sqlite":
                            db = str(work / f"{name}-{n}.db")
                            rate = drain(code, sink, {**group_env, "SQLITE_PATH": db}, args.records,
                                         Probe(sqlite_path=db), logs / "bench-rollups-pool.log")  # fmt: skip
                        else:
                            with throwaway_database(base_url, "bench_rollups_pool") as url:
                                rate = drain(code, sink, {**group_env, "DATABASE_URL": url}, args.records,
                                             Probe(database_url=url), logs / "bench-rollups-pool.log")  # fmt: skip
                        results[(name, sink)].append(rate)
                        print(f"  round {i + 1} {name} {sink}: {rate:,.0f} readings/s", flush=True)
    finally:
        iso.delete(with_group=False)
    lines = [
        f"Before = `{ref}` (`git rev-parse`: {rev(ref)[:10]}) in a temporary worktree; after = this tree.",
        "",
        "| store | before readings/s (median) | after readings/s (median) | cost | runs before | runs after |",
        "|---|---|---|---|---|---|",
    ]
    for sink, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        b, a = results[("before", sink)], results[("after", sink)]
        mb, ma = statistics.median(b), statistics.median(a)
        lines.append(
            f"| {label} | {mb:,.0f} | {ma:,.0f} | {1 - ma / mb:+.1%} |"
            f" {', '.join(f'{x:,.0f}' for x in b)} | {', '.join(f'{x:,.0f}' for x in a)} |"
        )
    return "\n".join(lines)


# One writer alone, in a process of its own running one tree's code: 5,000-reading batches as
# the pool's (1,000 sensors, one reading per sensor and second), into a fresh store.
WRITER_ALONE = """
import sys, time
from datetime import datetime, timedelta, timezone
from pipeline.reading import Reading
from pipeline.record import Record
from store import open_writer
kind, where, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
w = open_writer(kind, where if kind == "sqlite" else "", where if kind == "postgres" else "")
w.setup()
t0 = datetime(2025, 11, 17, tzinfo=timezone.utc)
batches = [[Record.of(Reading(f"bench{i % 1000:04d}", t0 + timedelta(seconds=i // 1000), "temperature",
                              20 + i % 200 / 10, unit="C", location="bench"), 0)
            for i in range(b, b + 5000)] for b in range(0, count, 5000)]
cpu, wall = time.process_time(), time.perf_counter()
for batch in batches:
    w.write(batch)
print(count / (time.perf_counter() - wall), time.process_time() - cpu)
"""


def writer_alone(args: argparse.Namespace, base_url: str, work: Path) -> str:
    """The store's write alone, before and after, interleaved: readings/s and this process's
    CPU (for SQLite that is all the work; PostgreSQL's own CPU is in its server)."""
    ref = baseline_ref(args.baseline)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with worktree(ref) as base:
        for i in range(args.rounds):
            order = [("before", base), ("after", ROOT)] if i % 2 == 0 else [("after", ROOT), ("before", base)]
            for name, code in order:
                for kind in ("sqlite", "postgres"):
                    n = len(results.setdefault((name, kind), []))
                    with ExitStack() as stack:
                        if kind == "sqlite":
                            where = str(work / f"alone-{name}-{n}.db")
                        else:
                            where = stack.enter_context(throwaway_database(base_url, "bench_rollups_alone"))
                        out = subprocess.run(
                            [PYTHON, "-P", "-c", WRITER_ALONE, kind, where, str(args.records)],
                            env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True, check=True,
                        ).stdout.split()  # fmt: skip
                    rate, cpu = float(out[0]), float(out[1])
                    results[(name, kind)].append((rate, cpu))
                    print(
                        f"  writer alone, round {i + 1} {name} {kind}: {rate:,.0f} readings/s, {cpu:.2f} CPU s",
                        flush=True,
                    )
    lines = [
        "| store | before readings/s (median) | after (median) | cost | before CPU µs/reading | after CPU µs/reading |"
        " runs before | runs after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        b, a = results[("before", kind)], results[("after", kind)]
        mb, ma = statistics.median(r for r, _ in b), statistics.median(r for r, _ in a)
        cb = statistics.median(c for _, c in b) * 1e6 / args.records
        ca = statistics.median(c for _, c in a) * 1e6 / args.records
        lines.append(
            f"| {label} | {mb:,.0f} | {ma:,.0f} | {1 - ma / mb:+.1%} | {cb:.1f} | {ca:.1f} |"
            f" {', '.join(f'{r:,.0f}' for r, _ in b)} | {', '.join(f'{r:,.0f}' for r, _ in a)} |"
        )
    return "\n".join(lines)


def rev(ref: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000, help="readings in the aggregates fixture")
    p.add_argument("--requests", type=int, default=200, help="requests per store and bucket")
    p.add_argument("--records", type=int, default=int(os.environ.get("BENCH_POOL_RECORDS", "300000")))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=int(os.environ.get("CONSUMER_WORKERS", "2")))
    p.add_argument("--baseline", help="git ref of the code before the rollups")
    p.add_argument("--only", choices=["aggregates", "throughput", "writer"])
    p.add_argument("--stores", default="sqlite,postgres", help="the aggregates' stores (comma-separated)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    broker = os.environ.get("BENCH_KAFKA_BROKER", "127.0.0.1:9092")
    base_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:55432/sensors")
    sections = []
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="bench-rollups-"))
        stack.callback(shutil.rmtree, work, True)
        if args.only in (None, "aggregates"):
            sections.append(
                f"**Aggregates.** `GET /sensors/{TARGET}/aggregates?type=temperature` over 30 days (a reading every"
                f" 10 s: 259,200 readings, 720 hourly and 30 daily rollup rows) in a store holding {args.rows:,}"
                f" readings; {args.requests} sequential requests per store and bucket from one Python client,"
                " after one warm-up, the API alone (no pool). Command: `python -m bench.rollups --only aggregates"
                f" --rows {args.rows}`.\n\n" + aggregates(args, broker, base_url, work)
            )
        if args.only in (None, "writer"):
            sections.append(
                f"**The store's write alone, before and after.** One writer in a process of its own (the before"
                f" tree's code or this one's) writes {args.records:,} readings in 5,000-reading batches into a fresh"
                f" store; {args.rounds} interleaved rounds. Command: `python -m bench.rollups --only writer"
                f" --records {args.records} --rounds {args.rounds}`.\n\n" + writer_alone(args, base_url, work)
            )
        if args.only in (None, "throughput"):
            sections.append(
                f"**Store throughput before and after.** The pool ({args.workers} workers) drains one pre-filled"
                f" topic of {args.records:,} readings (1,000 sensors) into a fresh SQLite file and a fresh PostgreSQL"
                f" database; {args.rounds} interleaved rounds (before/after order alternating); readings/s from the"
                " first to the last row's `stored_at_ns`. Command: `python -m bench.rollups --only throughput"
                f" --records {args.records} --rounds {args.rounds}`.\n\n" + throughput(args, broker, base_url, work)
            )
    body = f"\nMeasured {now()} on {machine()}.\n\n" + "\n\n".join(sections) + "\n"
    print(body)
    if not args.no_write:
        write_section(HEADING, body)


if __name__ == "__main__":
    main()
