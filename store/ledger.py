"""The completeness ledger: per sensor and type, which `seq` numbers arrived (docs/contract.md,
"Completeness"). Shared by both backends; runs inside the store's write transaction on the
readings that transaction really inserted, so a replayed batch changes nothing and a reading
is counted once whatever the pool goes through (replays, rebalances, killed workers).

Representation: `seq_ranges` holds disjoint, non-adjacent closed ranges [first, last] per
sensor and type, merged on insert, so a device that counts up in order costs one row however
many readings it sends, a gap costs one more row however long it is, and an out-of-order
arrival costs a row only until the gap it left is filled. `seq_ledger` holds one summary row
per sensor and type (received, missing, first and last seq, duplicates), what the API's
summary and the pool's `sensor_readings_missing` gauge read without scanning the ranges.

A reading is a duplicate when its row is new (a new timestamp) but its seq is already in
the ranges (or appears twice among the batch's new rows); a replay of the same reading is
not new, so it is not a duplicate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any, NamedTuple

from pipeline.reading import SEQ_MAX
from pipeline.record import Record
from store.dialect import Dialect

Range = tuple[int, int]

SCHEMA = """
CREATE TABLE IF NOT EXISTS seq_ranges (
    sensor_id TEXT NOT NULL,
    type TEXT NOT NULL,
    first BIGINT NOT NULL,
    last BIGINT NOT NULL,
    PRIMARY KEY (sensor_id, type, first)
);
CREATE TABLE IF NOT EXISTS seq_ledger (
    sensor_id TEXT NOT NULL,
    type TEXT NOT NULL,
    first_seq BIGINT,
    last_seq BIGINT,
    received BIGINT NOT NULL,
    missing BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    PRIMARY KEY (sensor_id, type)
);
"""

_ENSURE = (
    "INSERT INTO seq_ledger (sensor_id, type, received, missing, duplicates) VALUES (?, ?, 0, 0, 0)"
    " ON CONFLICT (sensor_id, type) DO NOTHING"
)
# A chunk's summary rows, in key order (PostgreSQL locks them in that order).
_SUMMARIES = (
    "SELECT sensor_id, type, first_seq, last_seq, received, duplicates FROM seq_ledger"
    " WHERE (sensor_id, type) IN (VALUES {pairs}) ORDER BY sensor_id, type"
)
# The stored ranges each run [lo, hi] of new seqs overlaps or touches: (key, hi + 1, lo - 1).
_TOUCHING = (
    "SELECT r.sensor_id, r.type, r.first, r.last FROM seq_ranges r JOIN (VALUES {quads}) AS q"
    " ON r.sensor_id = q.column1 AND r.type = q.column2 AND r.first <= q.column3 AND r.last >= q.column4"
)
CHUNK = 500  # keys per statement: 2,000 parameters at most, under both drivers' limits
_DELETE = "DELETE FROM seq_ranges WHERE sensor_id = ? AND type = ? AND first = ?"
_INSERT = "INSERT INTO seq_ranges (sensor_id, type, first, last) VALUES (?, ?, ?, ?)"
_UPDATE = (
    "UPDATE seq_ledger SET first_seq = ?, last_seq = ?, received = ?, missing = ?, duplicates = ?"
    " WHERE sensor_id = ? AND type = ?"
)
# Reads (the API and the pool's gauge).
SUMMARY = "SELECT first_seq, last_seq, received, missing, duplicates FROM seq_ledger WHERE sensor_id = ? AND type = ?"
RANGES = "SELECT first, last FROM seq_ranges WHERE sensor_id = ? AND type = ? ORDER BY first DESC LIMIT ?"
# The API lists this many gaps at most (the newest); `missing_count` counts every missing seq.
MISSING_LISTED = 1000
MISSING_BY_TYPE = "SELECT type, CAST(sum(missing) AS BIGINT) FROM seq_ledger GROUP BY type"


def runs(seqs: Iterable[int]) -> list[Range]:
    """Distinct seqs as sorted, disjoint, non-adjacent ranges."""
    out: list[Range] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


class Merge(NamedTuple):
    ranges: list[Range]  # the stored ranges and the new seqs, merged
    added: int  # new seqs not received before
    duplicates: int  # new readings whose seq was already received (or came twice)


def _covered(ranges: Sequence[Range], seq: int) -> bool:
    """Whether `seq` is in one of `ranges` (sorted, disjoint)."""
    lo, hi = 0, len(ranges)
    while lo < hi:
        mid = (lo + hi) // 2
        if ranges[mid][1] < seq:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(ranges) and ranges[lo][0] <= seq


def merge(stored: Sequence[Range], seqs: Sequence[int]) -> Merge:
    """Merge the seqs of newly stored readings into stored ranges (sorted, disjoint)."""
    stored = sorted(stored)
    fresh = set(seqs)
    old = {s for s in fresh if _covered(stored, s)}
    added = len(fresh) - len(old)
    duplicates = len(seqs) - added  # every reading beyond the first of a seq not seen before
    merged: list[Range] = []
    for first, last in sorted([*stored, *runs(fresh - old)]):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return Merge(merged, added, duplicates)


def first_new(batch: Sequence[Record], is_new: Any) -> list[tuple[str, str, int]]:
    """(sensor_id, type, seq) of the batch's readings with a seq that `is_new(record)` says
    were inserted, the first of each (sensor_id, type, ts) only: a row is inserted once."""
    seen: set[tuple[str, str, str]] = set()
    out: list[tuple[str, str, int]] = []
    for r in batch:
        reading = r.reading
        if reading.seq is None:
            continue
        key = (reading.sensor_id, reading.type, r.ts)
        if key not in seen and is_new(r):
            out.append((reading.sensor_id, reading.type, int(reading.seq)))
        seen.add(key)
    return out


def missing(ranges: Sequence[Range]) -> list[Range]:
    """The gaps between sorted, disjoint, non-adjacent ranges."""
    return [(a[1] + 1, b[0] - 1) for a, b in pairwise(ranges)]


class Ledger:
    """Applies a write's new readings to the ledger, in the write's transaction."""

    def __init__(self, dialect: Dialect) -> None:
        sql = dialect.sql
        self._ensure, self._delete, self._insert, self._update = (
            sql(_ENSURE),
            sql(_DELETE),
            sql(_INSERT),
            sql(_UPDATE),
        )
        # NOTE: PostgreSQL runs concurrent writers (a rebalance can overlap two owners of a
        # partition); the summary rows are locked, in key order, before the ranges are read.
        # SQLite's BEGIN IMMEDIATE already serialises writers.
        self._summaries = sql(_SUMMARIES + ("" if dialect.text_times else " FOR UPDATE"))
        self._touching = sql(_TOUCHING)
        # `{pairs}`/`{quads}` are filled in after the rewrite: in the driver's own paramstyle.
        self._mark = "?" if dialect.text_times else "%s"

    def apply(self, cur: Any, new: Iterable[tuple[str, str, int]]) -> None:
        """`new`: (sensor_id, type, seq) of each reading this transaction inserted.

        PERF: a few statements per batch, not per sensor: PostgreSQL pipelines executemany,
        and the reads take every key of a chunk at once (VALUES lists, the same in both)."""
        by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
        for sensor_id, type_, seq in new:
            by_key[(sensor_id, type_)].append(seq)
        keys = sorted(by_key)  # one lock order, so concurrent writers cannot deadlock
        for at in range(0, len(keys), CHUNK):
            self._apply_keys(cur, {k: by_key[k] for k in keys[at : at + CHUNK]})

    def _apply_keys(self, cur: Any, by_key: dict[tuple[str, str], list[int]]) -> None:
        keys = list(by_key)
        cur.executemany(self._ensure, keys)
        m = self._mark
        pairs = ", ".join([f"({m}, {m})"] * len(keys))
        flat = [v for key in keys for v in key]
        summaries = {
            (row[0], row[1]): row[2:] for row in cur.execute(self._summaries.format(pairs=pairs), flat).fetchall()
        }
        wanted = [(*key, min(hi + 1, SEQ_MAX), lo - 1) for key in keys for lo, hi in runs(by_key[key])]
        touched: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        quads = ", ".join([f"({m}, {m}, {m}, {m})"] * len(wanted))
        for sensor_id, type_, first, last in cur.execute(
            self._touching.format(quads=quads), [v for w in wanted for v in w]
        ).fetchall():
            touched[(sensor_id, type_)][int(first)] = int(last)
        deletes, inserts, updates = [], [], []
        for key in keys:
            seqs = by_key[key]
            first_seq, last_seq, received, duplicates = summaries[key]
            stored = touched.get(key, {})
            result = merge(list(stored.items()), seqs)
            deletes += [(*key, first) for first in stored]
            inserts += [(*key, first, last) for first, last in result.ranges]
            low, high = min(seqs), max(seqs)
            first_seq = low if first_seq is None else min(int(first_seq), low)
            last_seq = high if last_seq is None else max(int(last_seq), high)
            received = int(received) + result.added
            missing_now = last_seq - first_seq + 1 - received
            updates.append((first_seq, last_seq, received, missing_now, int(duplicates) + result.duplicates, *key))
        if deletes:
            cur.executemany(self._delete, deletes)
        cur.executemany(self._insert, inserts)
        cur.executemany(self._update, updates)
