"""What differs between SQLite and PostgreSQL in the statements both run, in one place.

Shared statements are written once with `?` placeholders; `Dialect.sql` gives each driver
its own. Time columns differ: SQLite keeps `ts` as fixed-width UTC text
(pipeline.reading.utc_text, so text order is time order) and `minute` as the text of
`SQLITE_MINUTE`; PostgreSQL keeps both as TIMESTAMPTZ. `bound` turns a time into what the
column compares with, and `ts_text` / `minute_text` turn a column's value back into the
API's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from pipeline.reading import utc_text

Bucket = Literal["1m", "5m", "1h", "1d"]
BUCKETS: tuple[Bucket, ...] = ("1m", "5m", "1h", "1d")

# The minute a SQLite `ts` text falls in (`2025-11-17T14:20:00Z`), as the trigger that keeps
# `readings_1m` writes it; the buckets below cut the same text.
SQLITE_MINUTE = "substr({ts}, 1, 16) || ':00Z'"
MINUTE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_SQLITE_BUCKETS: Mapping[Bucket, str] = {
    "1m": "minute",
    "5m": "substr(minute, 1, 14) || printf('%02d', CAST(substr(minute, 15, 2) AS INTEGER) / 5 * 5) || ':00Z'",
    "1h": "substr(minute, 1, 13) || ':00:00Z'",
    "1d": "substr(minute, 1, 10) || 'T00:00:00Z'",
}
_PG_BUCKETS: Mapping[Bucket, str] = {
    "1m": "minute",
    "5m": "date_bin('5 minutes', minute, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
    "1h": "date_trunc('hour', minute)",
    "1d": "date_trunc('day', minute)",
}


@dataclass(frozen=True)
class Dialect:
    name: str
    buckets: Mapping[Bucket, str]  # aggregate buckets rolled up from the one-minute rows
    cast: str  # how a cursor's text becomes a bucket start in SQL
    text_times: bool  # time columns hold UTC text (SQLite), not TIMESTAMPTZ
    like: str  # a case-insensitive LIKE: SQLite's LIKE is (for ASCII), PostgreSQL's ILIKE
    # SQLite: `sensor_ids`, an FTS5 trigram index of the ids, narrows a substring search of 3
    # characters or more (PostgreSQL's ILIKE uses pg_trgm's index itself)
    trigram_ids: bool = False

    def sql(self, text: str) -> str:
        """A statement written with `?` placeholders, in this driver's paramstyle."""
        if self.text_times:
            return text
        # NOTE: psycopg's paramstyle is `%s`, so a literal `%` (LIKE 'x%') is doubled.
        return text.replace("%", "%%").replace("?", "%s")

    def bound(self, moment: datetime) -> object:
        """A time bound as the `ts` and `minute` columns compare."""
        return utc_text(moment) if self.text_times else moment


def ts_text(value: str | datetime) -> str:
    """A `ts` column's value as the API's text."""
    return value if isinstance(value, str) else utc_text(value)


def minute_text(value: str | datetime) -> str:
    """An aggregate bucket's start as RFC 3339 UTC text (`2025-11-17T14:20:00Z`)."""
    if isinstance(value, str):
        return value
    return value.astimezone(timezone.utc).strftime(MINUTE_FORMAT)


SQLITE = Dialect("sqlite", _SQLITE_BUCKETS, "", text_times=True, like="LIKE", trigram_ids=True)
POSTGRES = Dialect("postgres", _PG_BUCKETS, "::timestamptz", text_times=False, like="ILIKE")
