"""Alert rules in the real pool (issue 23): a silent sensor alerts once across workers and a
restart of the pool and clears when it talks again; a sensor hovering around its threshold with
`clear<` set raises one alert that clears once; ALERTS_TOPIC carries exactly those changes."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import datetime, timezone

import msgspec
import pytest

from harness.db import pg_rows, sqlite_rows
from harness.kafka import payload, produce, read_topic
from harness.poll import wait_until
from harness.readings import encoded
from tests.consumer_pool.conftest import PoolFactory

pytestmark = pytest.mark.timeout(240)

RULES = "temperature silent 3s,temperature>40 clear<38"


def now_reading(sensor: str, value: float) -> dict[str, object]:
    stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return {"sensor_id": sensor, "timestamp": stamp, "type": "temperature", "value": value, "unit": "C"}


def events(broker: str, topic: str) -> list[tuple[str, str, str, str]]:
    """(rule, sensor_id, id, state) of every ALERTS_TOPIC record so far, in order."""
    decoded = [msgspec.json.decode(payload(r)) for r in read_topic(broker, topic, expected=10_000, timeout=5)]
    return [(e["rule"], e["sensor_id"], e["id"], e["state"]) for e in decoded]


@pytest.mark.parametrize("sink", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def test_a_silent_sensor_alerts_once_and_clears_when_it_talks_again(
    sink: str,
    start_pool: PoolFactory,
    pool_env: dict[str, str],
    kafka_broker: str,
    topic: str,
    request: pytest.FixtureRequest,
) -> None:
    if sink == "postgres":
        url = request.getfixturevalue("pg_url")
        extra = {"SINK": "postgres", "DATABASE_URL": url}
        rows = lambda sql: pg_rows(url, sql)  # noqa: E731
    else:
        extra = {}
        rows = lambda sql: sqlite_rows(pool_env["SQLITE_PATH"], sql)  # noqa: E731
    alerts_topic = pool_env["ALERTS_TOPIC"]
    silent = "temperature silent 3s"

    pool = start_pool("--workers", "2", ALERT_RULES=RULES, **extra)
    # "hover" crosses 40 back and forth, never below 38 until its last reading: one alert.
    hovering = [40.5, 39.5, 40.2, 39.0, 41.0, 38.5, 40.1, 37.5]
    for value in hovering:
        produce(kafka_broker, topic, encoded([now_reading("hover", value)]))
    produce(kafka_broker, topic, encoded([now_reading("quiet", 20.0)]))

    def open_silences() -> list[tuple]:
        return rows(f"SELECT sensor_id FROM alerts WHERE rule = '{silent}' AND state = 'active' ORDER BY sensor_id")

    def cleared() -> list[tuple]:
        return rows(f"SELECT id FROM alerts WHERE rule = '{silent}' AND sensor_id = 'quiet' AND state = 'cleared'")

    wait_until("both sensors to be alerted as silent", lambda: open_silences() == [("hover",), ("quiet",)], 60, pool)
    assert pool.stop() == 0
    # A restarted pool sweeps the same silences (every 0.75 s here): nothing is raised twice.
    pool = start_pool("--workers", "2", ALERT_RULES=RULES, **extra)
    time.sleep(2.5)
    assert open_silences() == [("hover",), ("quiet",)]
    produce(kafka_broker, topic, encoded([now_reading("quiet", 21.0)]))  # it talks again
    wait_until("the silence of quiet to clear", lambda: ("hover",) in open_silences() and len(cleared()) == 1, 60, pool)
    assert pool.stop() == 0

    threshold = "temperature>40 clear<38"
    by_id: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for rule, sensor_id, alert, state in events(kafka_broker, alerts_topic):
        by_id[(rule, sensor_id, alert)].add(state)
    ids = Counter((rule, sensor_id) for rule, sensor_id, _ in by_id)
    (hover_threshold,) = [k for k in by_id if k[:2] == (threshold, "hover")]  # hovering: one alert,
    assert by_id[hover_threshold] == {"active", "cleared"}  # raised once and cleared once
    assert ids[(silent, "hover")] == 1  # silent since the start: one alert, across the restart
    assert ids[(threshold, "quiet")] == 0
    # quiet: alerted, cleared when it talked; it may have gone silent again (a new alert) since.
    (first_quiet,) = [k for k in by_id if k[:2] == (silent, "quiet") and k[2] == cleared()[0][0]]
    assert by_id[first_quiet] == {"active", "cleared"}
    assert ids[(silent, "quiet")] in (1, 2)
    assert rows("SELECT count(*) FROM alerts WHERE sensor_id = 'hover'") == [(2,)]
