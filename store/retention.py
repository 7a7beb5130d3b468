"""Retention's statements: delete old rows sensor by sensor, in small steps.

The pool decides when a step runs; a step here prunes the next few sensors of a sweep, each
in its own short transaction, at most PRUNE_STEP_ROWS per sensor and table, so ingest never
waits long behind a DELETE (index `readings_by_sensor_ts`).
Cutoffs are UTC text (pipeline.reading.utc_text); PostgreSQL casts them to TIMESTAMPTZ.
"""

from __future__ import annotations

PRUNE_STEP_ROWS = 2000

SENSORS_AFTER = "SELECT DISTINCT sensor_id FROM latest WHERE sensor_id > ? ORDER BY sensor_id LIMIT ?"
PRUNE_RAW = (
    "DELETE FROM readings WHERE (sensor_id, type, ts) IN"
    " (SELECT sensor_id, type, ts FROM readings WHERE sensor_id = ? AND ts < ? LIMIT ?)"
)
PRUNE_AGG = (
    "DELETE FROM readings_1m WHERE (sensor_id, type, minute) IN"
    " (SELECT sensor_id, type, minute FROM readings_1m WHERE sensor_id = ? AND minute < ? LIMIT ?)"
)
