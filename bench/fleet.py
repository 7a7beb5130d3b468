"""`python -m bench.fleet`: GET /sensors' fleet queries on 100,000 sensors, both stores.

Seeds 100,000 sensors (every one with a `temperature` series, every other one a `humidity`
one too: 150,000 series; ten locations; arrivals spread over the last two hours, so a tenth
is silent for more than 5 minutes ... ) through each store's own writer (the pool's write
path, so its triggers / upsert keep `latest` and `sensors`), then times each query of
docs/contract.md's "Fleet queries" through the store's reader (the read API's query, without
HTTP), sequentially, and reports p50 / p99 per query and store. The target is p99 <= 50 ms.

Env: BENCH_DATABASE_URL (set by deploy/local/bench.sh). Results replace the "Fleet queries"
section of BENCHMARKS.md (skip with --no-write).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from bench.common import machine, now, write_section
from harness.db import throwaway_database
from pipeline.reading import Reading
from pipeline.record import Record
from store import Page, Reader, SensorQuery, open_reader, open_writer

HEADING = "Fleet queries (GET /sensors on 100,000 sensors)"
SENSORS = 100_000
LOCATIONS = 10
TARGET_MS = 50.0
NOTES = """How: a page is one statement over table `sensors` (one row per sensor: its id and when its
newest reading arrived, indexed by id and by (arrival, id)) joined to `latest`; sorts and
`silent_for` walk an index in the page's order and stop after `limit` sensors, so a deep
page costs what the first does (keyset). `type` / `location` are per-sensor lookups in
`latest`'s primary key. A substring (`q`) cannot use a B-tree. SQLite first counts (up
to 2,001) the ids holding it in its FTS5 trigram table `sensor_ids`: at most 2,000, the
table narrows the query; more, the ordered scan of `sensors` fills a page at once.
PostgreSQL has a pg_trgm GIN index (the extension is in Debian's server package) and its
planner picks between it and the ordered scan; a substring held by a tenth of the fleet
(`site4`: 10,000 ids) is where it does worst (a bounded count first, as on SQLite, cost
more than it saved there). SQLite keeps no planner statistics, so `silent_for` by id also
counts first and takes the arrival index when few sensors are silent. PostgreSQL was
ANALYZEd after the bulk load (autovacuum does it in service). The box is shared (two cores,
other jobs running): p99s are noisy; rerun with `python -m bench.fleet`."""


def sensor_id(i: int) -> str:
    return f"site{i % 97:02d}-f{i:06d}"


def seed(kind: str, path: str, url: str, sensors: int) -> float:
    """Write the fleet through the store's writer; returns seconds taken."""
    writer = open_writer(kind, path, url)
    writer.setup()
    started = time.perf_counter()
    arrived_now = time.time_ns()
    batch: list[Record] = []
    at = datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc)
    for i in range(sensors):
        # spread arrivals over two hours: sensor i arrived (i % 7200) seconds ago
        ingested = arrived_now - (i * 7919 % 7200) * 1_000_000_000
        location = f"loc-{i % LOCATIONS}"
        batch.append(Record.of(Reading(sensor_id(i), at, "temperature", float(i), "C", location), ingested))
        if i % 2 == 0:
            batch.append(Record.of(Reading(sensor_id(i), at, "humidity", 40.0, "%", location), ingested))
        if len(batch) >= 5000:
            writer.write(batch)
            batch = []
    if batch:
        writer.write(batch)
    writer.close()
    if kind == "postgres":  # what autovacuum does soon after a bulk load: the planner's statistics
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE sensors")
            conn.execute("ANALYZE latest")
    return time.perf_counter() - started


def cutoff(seconds: int) -> int:
    return time.time_ns() - seconds * 1_000_000_000


QUERIES: list[tuple[str, Callable[[], SensorQuery], int]] = [
    ("first page by id (limit 100)", lambda: SensorQuery(), 0),
    ("deep page by id (page 500)", lambda: SensorQuery(), 500),
    ("q=f054321 (one sensor)", lambda: SensorQuery(q="f054321"), 0),
    ("q=4321 (10 sensors)", lambda: SensorQuery(q="4321"), 0),
    ("q=site4 (common)", lambda: SensorQuery(q="site4"), 0),
    ("q=nomatch", lambda: SensorQuery(q="nomatch"), 0),
    ("type=humidity", lambda: SensorQuery(type="humidity"), 0),
    ("location=loc-7", lambda: SensorQuery(location="loc-7"), 0),
    ("sort=last_seen", lambda: SensorQuery(sort="last_seen"), 0),
    ("sort=last_seen, deep page (page 500)", lambda: SensorQuery(sort="last_seen"), 500),
    ("silent_for=5m", lambda: SensorQuery(silent_before_ns=cutoff(300)), 0),
    ("silent_for=5m, sort=last_seen", lambda: SensorQuery(sort="last_seen", silent_before_ns=cutoff(300)), 0),
    ("silent_for=3h (none)", lambda: SensorQuery(silent_before_ns=cutoff(3 * 3600)), 0),
    ("type=humidity, sort=last_seen", lambda: SensorQuery(type="humidity", sort="last_seen"), 0),
    ("q=4321, sort=last_seen", lambda: SensorQuery(q="4321", sort="last_seen"), 0),
]


async def timed(reader: Reader, rounds: int, limit: int) -> list[tuple[str, int, float, float]]:
    results = []
    for name, make, pages in QUERIES:
        query = make()
        cursor = None
        for _ in range(pages):  # walk to the deep page once; then time that page
            page = await reader.sensors(limit, cursor, query)
            cursor = page.next_cursor
        times: list[float] = []
        page = Page([], None)
        for _ in range(rounds):
            started = time.perf_counter()
            page = await reader.sensors(limit, cursor, query)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        results.append(
            (name, len(page.items), times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))])
        )
    return results


def measure(kind: str, path: str, url: str, rounds: int, limit: int) -> list[tuple[str, int, float, float]]:
    async def run() -> list[tuple[str, int, float, float]]:
        reader = open_reader(kind, path, url)
        assert reader is not None
        try:
            return await timed(reader, rounds, limit)
        finally:
            await reader.close()

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=SENSORS)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    base_url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:55432/sensors")
    table: dict[str, list[tuple[str, int, float, float]]] = {}
    seeded: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        for kind in args.stores.split(","):
            if kind == "sqlite":
                path = str(Path(tmp) / "fleet.db")
                seeded[kind] = seed(kind, path, "", args.sensors)
                table[kind] = measure(kind, path, "", args.rounds, args.limit)
            else:
                with throwaway_database(base_url, "bench_fleet") as url:
                    seeded[kind] = seed(kind, "", url, args.sensors)
                    table[kind] = measure(kind, "", url, args.rounds, args.limit)
            print(f"[fleet] {kind}: seeded {args.sensors} sensors in {seeded[kind]:.1f} s")
    kinds = list(table)
    lines = [
        f"`make bench` (`python -m bench.fleet --sensors {args.sensors} --rounds {args.rounds}`), {now()}, "
        f"{machine()}. {args.sensors:,} sensors ({args.sensors * 3 // 2:,} series) written through each "
        f"store's writer ({', '.join(f'{k} {seeded[k]:.0f} s' for k in kinds)}); each query run {args.rounds} "
        f"times in a row through the store's reader (the read API's query, no HTTP), limit {args.limit}. "
        f"Target: p99 <= {TARGET_MS:.0f} ms.",
        "",
        "| query | items | " + " | ".join(f"{k} p50 / p99 ms" for k in kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for i, (name, items, _, _) in enumerate(table[kinds[0]]):
        cells = []
        for k in kinds:
            _, _, p50, p99 = table[k][i]
            cells.append(f"{p50:.1f} / {p99:.1f}{'' if p99 <= TARGET_MS else ' (over)'}")
        lines.append(f"| {name} | {items} | " + " | ".join(cells) + " |")
    body = "\n".join(lines) + "\n\n" + NOTES
    print(body)
    if not args.no_write:
        write_section(HEADING, body)


if __name__ == "__main__":
    main()
