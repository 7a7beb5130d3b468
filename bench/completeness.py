"""`python -m bench.completeness`: what the completeness ledger (store/ledger.py) costs a write.

The store's writer alone (no Kafka), on SQLite and PostgreSQL: batches of 1,000 readings of
100 sensors (10 readings each per batch, one second apart), written as the pool writes them,
in three runs on a fresh database each: readings without `seq`; with `seq` in order; with
`seq` and every 10th reading lost (a gap per sensor every 10 readings, so the ledger holds a
range per gap: 20,000 ranges by the end of the default 200 batches). Reported: readings/s and the batch write's
p50/p99, each run against the no-seq one. Target: the in-order run keeps >= 50% of the
no-seq throughput (one summary row and one range row touched per sensor and batch).
Env: BENCH_DATABASE_URL (set by deploy/local/bench.sh). Results replace the "Completeness
ledger" section of BENCHMARKS.md (skip with --no-write).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

from bench.common import machine, now, write_section
from harness.db import throwaway_database
from pipeline.reading import Reading
from pipeline.record import Record
from store import Writer
from store.postgres import PostgresWriter
from store.sqlite import SqliteWriter

HEADING = "Completeness ledger (the write's cost)"
SENSORS = 100
PER_BATCH = 1000
START = datetime(2025, 11, 17, tzinfo=timezone.utc)
TARGET = 0.5


def batches(count: int, seq: str) -> list[list[Record]]:
    """`count` batches; seq: `none`, `in order`, or `gaps` (every 10th reading not sent)."""
    out = []
    for b in range(count):
        batch = []
        for k in range(PER_BATCH):
            n = b * PER_BATCH // SENSORS + k // SENSORS  # this sensor's n-th reading
            if seq == "gaps" and n % 10 == 9:
                continue
            reading = Reading(
                f"ledger-{k % SENSORS:03d}",
                START + timedelta(seconds=n),
                "temperature",
                20.0,
                seq=None if seq == "none" else n,
            )
            batch.append(Record.of(reading, 1))
        out.append(batch)
    return out


def run(make: Callable[[], Writer], data: list[list[Record]]) -> tuple[float, float, float]:
    """(readings/s, p50 ms, p99 ms) of writing `data` batch by batch."""
    writer = make()
    writer.setup()
    times = []
    try:
        for batch in data:
            t0 = time.perf_counter()
            writer.write(batch)
            times.append(time.perf_counter() - t0)
    finally:
        writer.close()
    ordered = sorted(times)
    total = sum(len(b) for b in data)
    return total / sum(times), ordered[len(ordered) // 2] * 1000, ordered[int(len(ordered) * 0.99)] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    base_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:55432/sensors")
    rows = []
    for store in ("sqlite", "postgres"):
        baseline = 0.0
        for seq in ("none", "in order", "gaps"):
            data = batches(args.batches, seq)
            if store == "sqlite":
                with tempfile.TemporaryDirectory() as folder:
                    rate, p50, p99 = run(partial(SqliteWriter, str(Path(folder) / "r.db")), data)
            else:
                with throwaway_database(base_url, "bench_ledger") as url:
                    rate, p50, p99 = run(partial(PostgresWriter, url), data)
            baseline = baseline or rate
            share = rate / baseline
            verdict = "—" if seq == "none" else (f"{TARGET:.0%}: {'met' if share >= TARGET else 'missed'}")
            rows.append(f"| {store} | {seq} | {rate:,.0f} | {share:.0%} | {p50:.1f} | {p99:.1f} | {verdict} |")
            print(rows[-1], flush=True)
    body = "\n".join(
        [
            f"`make bench` (bench/completeness.py), {now()}, {machine()}: the store's writer alone, "
            f"{args.batches} batches of {PER_BATCH:,} readings of {SENSORS} sensors; `gaps` loses every "
            f"10th reading, so the ledger ends with {args.batches * PER_BATCH // 10:,} ranges. The target is that a "
            f"run with seq keeps >= {TARGET:.0%} of the no-seq throughput; the two cores are shared with the "
            "broker and the database, so rerun before reading much into one miss.",
            "",
            "| store | seq | readings/s | of no-seq | batch p50 ms | batch p99 ms | target |",
            "|---|---|---:|---:|---:|---:|---|",
            *rows,
        ]
    )
    if not args.no_write:
        write_section(HEADING, body)


if __name__ == "__main__":
    main()
