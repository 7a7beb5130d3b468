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
_SUMMARY = "SELECT first_seq, last_seq, received, duplicates FROM seq_ledger WHERE sensor_id = ? AND type = ?"
# The stored ranges a run [lo, hi] of new seqs overlaps or touches.
_TOUCHING = "SELECT first, last FROM seq_ranges WHERE sensor_id = ? AND type = ? AND first <= ? AND last >= ?"
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
        self._ensure, self._touching, self._delete, self._insert, self._update = (
            sql(_ENSURE),
            sql(_TOUCHING),
            sql(_DELETE),
            sql(_INSERT),
            sql(_UPDATE),
        )
        # NOTE: PostgreSQL runs concurrent writers (a rebalance can overlap two owners of a
        # partition); the summary row is locked before the ranges are read. SQLite's BEGIN
        # IMMEDIATE already serialises writers.
        self._summary = sql(_SUMMARY + ("" if dialect.text_times else " FOR UPDATE"))

    def apply(self, cur: Any, new: Iterable[tuple[str, str, int]]) -> None:
        """`new`: (sensor_id, type, seq) of each reading this transaction inserted."""
        by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
        for sensor_id, type_, seq in new:
            by_key[(sensor_id, type_)].append(seq)
        for key in sorted(by_key):  # one lock order, so concurrent writers cannot deadlock
            self._apply_key(cur, key, by_key[key])

    def _apply_key(self, cur: Any, key: tuple[str, str], seqs: list[int]) -> None:
        cur.execute(self._ensure, key)
        first_seq, last_seq, received, duplicates = cur.execute(self._summary, key).fetchone()
        touched: dict[int, int] = {}
        for lo, hi in runs(seqs):
            for first, last in cur.execute(self._touching, (*key, min(hi + 1, SEQ_MAX), lo - 1)).fetchall():
                touched[int(first)] = int(last)
        result = merge(list(touched.items()), seqs)
        for first in touched:
            cur.execute(self._delete, (*key, first))
        for first, last in result.ranges:
            cur.execute(self._insert, (*key, first, last))
        low, high = min(seqs), max(seqs)
        first_seq = low if first_seq is None else min(int(first_seq), low)
        last_seq = high if last_seq is None else max(int(last_seq), high)
        received = int(received) + result.added
        missing_now = last_seq - first_seq + 1 - received
        cur.execute(
            self._update, (first_seq, last_seq, received, missing_now, int(duplicates) + result.duplicates, *key)
        )
