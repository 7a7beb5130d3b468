"""Synthetic sensor fleets for the load tests: realistic values, unique storage keys, bad payloads.

Pure Python (no Locust import) so the generator is unit-tested and reused by the gate's
warm-up and by the benchmark.

Every reading of one run carries the run id as its sensor_id prefix (`<run_id>-...`), so the
gate can count this run's readings in Kafka and in the store and ignore everything else.
The sink dedupes on (sensor_id, type, timestamp); a fleet never repeats that key (each
fleet has its own id, and its timestamps strictly increase by at least 1 µs), so the row
count must equal the number of acknowledged readings.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

# type -> (unit, typical low, typical high, random-walk step)
SENSOR_TYPES: dict[str, tuple[str, float, float, float]] = {
    "temperature": ("C", 18.0, 30.0, 0.2),
    "humidity": ("%", 30.0, 70.0, 0.5),
    "pressure": ("hPa", 985.0, 1035.0, 0.3),
    "co2": ("ppm", 400.0, 1400.0, 10.0),
    "pm25": ("ug/m3", 2.0, 60.0, 1.0),
    "light": ("lx", 50.0, 900.0, 15.0),
    "vibration": ("mm/s", 0.1, 8.0, 0.2),
    "voltage": ("V", 224.0, 236.0, 0.3),
}
LOCATIONS = [f"plant-{p}/line-{n}" for p in (1, 2, 3) for n in range(1, 5)] + [
    "lab",
    "warehouse",
    "roof",
]


def new_run_id() -> str:
    """Short, sensor_id-safe id that marks one run's readings."""
    return "lt" + uuid.uuid4().hex[:8]


def rfc3339_us(epoch_us: int) -> str:
    """UTC RFC 3339 with microseconds and `Z`, the form the API stores unchanged."""
    dt = datetime.fromtimestamp(epoch_us // 1_000_000, tz=timezone.utc)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{epoch_us % 1_000_000:06d}Z"


@dataclass
class SimulatedSensor:
    """One device: a fixed id, type, unit and place, and a value that drifts like a real one."""

    sensor_id: str
    type: str
    unit: str
    location: str
    value: float
    low: float
    high: float
    step: float

    def next_value(self, rng: random.Random) -> float:
        """Bounded random walk: consecutive readings look like a real signal, not noise."""
        self.value += rng.uniform(-self.step, self.step)
        self.value = min(max(self.value, self.low), self.high)
        return round(self.value, 2)


@dataclass
class Fleet:
    """The sensors one simulated client (a Locust user) owns, with a strictly rising clock."""

    run_id: str
    size: int = 5
    seed: int | None = None
    fleet_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    rng: random.Random = field(init=False)
    sensors: list[SimulatedSensor] = field(init=False)
    _last_us: int = field(init=False, default=0)
    _next: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        types = list(SENSOR_TYPES)
        self.sensors = []
        for k in range(self.size):
            kind = types[(k + self.rng.randrange(len(types))) % len(types)]
            unit, low, high, step = SENSOR_TYPES[kind]
            self.sensors.append(
                SimulatedSensor(
                    sensor_id=f"{self.run_id}-{self.fleet_id}-{k:03d}",
                    type=kind,
                    unit=unit,
                    location=self.rng.choice(LOCATIONS),
                    value=self.rng.uniform(low, high),
                    low=low,
                    high=high,
                    step=step,
                )
            )

    def _timestamp(self) -> str:
        # NOTE: strictly increasing per fleet, so (sensor_id, type, ts) never repeats even
        # when two readings are made within the same microsecond.
        now_us = time.time_ns() // 1000
        self._last_us = max(now_us, self._last_us + 1)
        return rfc3339_us(self._last_us)

    def reading(self) -> dict[str, object]:
        """The next reading, round-robin over the fleet's sensors."""
        sensor = self.sensors[self._next % len(self.sensors)]
        self._next += 1
        return {
            "sensor_id": sensor.sensor_id,
            "timestamp": self._timestamp(),
            "type": sensor.type,
            "value": sensor.next_value(self.rng),
            "unit": sensor.unit,
            "location": sensor.location,
        }

    def batch(self, n: int) -> list[dict[str, object]]:
        return [self.reading() for _ in range(n)]


Identity = tuple[str, str, int]  # (sensor_id, type, timestamp in µs since the epoch)


def identity(sensor_id: object, kind: object, timestamp: object) -> Identity:
    """What tells one reading from every other (the store's key), whatever the timestamp's
    spelling (the client's `.000000Z`, the API's normalised `Z`)."""
    dt = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    seconds = int(dt.replace(microsecond=0).timestamp())
    return (str(sensor_id), str(kind), seconds * 1_000_000 + dt.microsecond)


def identity_of(reading: dict[str, object]) -> Identity:
    return identity(reading["sensor_id"], reading["type"], reading["timestamp"])


def to_json(reading: dict[str, object] | list[dict[str, object]]) -> bytes:
    return json.dumps(reading, separators=(",", ":")).encode()


def to_ndjson(readings: list[dict[str, object]]) -> bytes:
    return b"\n".join(to_json(r) for r in readings) + b"\n"


@dataclass(frozen=True)
class BadPayload:
    """A request the API must refuse, and the status it must refuse it with."""

    name: str
    body: bytes
    content_type: str
    status: int


def bad_payloads(good: dict[str, object]) -> list[BadPayload]:
    """Typical client mistakes built from a valid reading; none of them may be stored."""
    ts_no_zone = str(good["timestamp"]).rstrip("Z")
    missing = {k: v for k, v in good.items() if k != "value"}
    return [
        BadPayload("malformed json", to_json(good)[:-1], "application/json", 400),
        BadPayload("missing value", to_json(missing), "application/json", 422),
        BadPayload(
            "value not a number",
            to_json({**good, "value": "hot"}),
            "application/json",
            422,
        ),
        BadPayload(
            "timestamp without zone",
            to_json({**good, "timestamp": ts_no_zone}),
            "application/json",
            422,
        ),
        BadPayload(
            "bad sensor_id",
            to_json({**good, "sensor_id": f"{good['sensor_id']} x"}),
            "application/json",
            422,
        ),
        BadPayload("unknown field", to_json({**good, "colour": "red"}), "application/json", 422),
        BadPayload("wrong content type", to_json(good), "text/plain", 415),
    ]
