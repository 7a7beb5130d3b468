"""Deterministic readings for tests: the seed's reading, and the i-th of a synthetic fleet.

Deterministic so a test can compute what the store must hold (rows, per-minute aggregates,
alerts) from the same function that produced the input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

SEED_READING: dict[str, object] = {
    "sensor_id": "sensor01",
    "timestamp": "2025-11-17T14:20:00Z",
    "type": "temperature",
    "value": 25.3,
    "unit": "C",
    "location": "lab",
}


def reading(i: int, prefix: str = "s", sensors: int = 5, value: float | None = None) -> dict[str, object]:
    """The i-th test reading: `sensors` sensors, one reading per sensor per second."""
    second = i // sensors
    return {
        "sensor_id": f"{prefix}{i % sensors}",
        "timestamp": f"2025-11-17T14:{(second // 60) % 60:02d}:{second % 60:02d}Z",
        "type": "temperature",
        "value": float(i % 50) if value is None else value,
        "unit": "C",
        "location": "lab",
    }


def encoded(readings: Sequence[Mapping[str, object]]) -> list[tuple[bytes, bytes]]:
    """(key, value) records as the API writes them: keyed by sensor_id, the reading as JSON."""
    return [(str(r["sensor_id"]).encode(), msgspec.json.encode(r)) for r in readings]


def numbered(i: int, prefix: str, sensors: int = 16) -> dict[str, object]:
    """Reading number i of a run, distinct from every other (no (sensor, ts) key is reused, so
    the store cannot fold two into one) and carrying i as its value, so a stored row or a Kafka
    record says which reading it is."""
    second = i // sensors
    day, rest = divmod(second, 86_400)
    return {
        "sensor_id": f"{prefix}-{i % sensors}",
        "timestamp": f"2025-{1 + day // 28:02d}-{1 + day % 28:02d}T"
        f"{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}Z",
        "type": "temperature",
        "value": float(i),
        "unit": "C",
        "location": "lab",
    }
