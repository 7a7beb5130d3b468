"""The worker loop against the real broker and stores: undecodable records go to the DLQ
without blocking their partition, replays store nothing twice, aggregates and alerts stay
right after a replay, and the e2e latency histogram is filled."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import msgspec
import psycopg
import pytest

from harness.db import pg_count, pg_rows, sqlite_count, sqlite_rows
from harness.kafka import committed, headers_of, payload, produce, read_topic
from harness.poll import wait_until
from harness.prometheus import metric, scrape
from harness.readings import encoded, reading
from pipeline.alerts import advance, parse_rules
from pipeline.reading import decode_reading
from pipeline.record import Record
from tests.consumer_pool.conftest import PoolFactory

pytestmark = pytest.mark.timeout(240)


def test_garbage_goes_to_the_dlq_while_the_rest_flow_and_e2e_is_observed(
    start_pool: PoolFactory, pool_env: dict[str, str], kafka_broker: str, topic: str
) -> None:
    # Same key => same partition: the bad records sit between good ones of one partition.
    good = [reading(i, sensors=1) for i in range(200)]
    bad = [(b"s0", b"{not json"), (b"s0", msgspec.json.encode({**good[0], "value": "hot"}))]
    produced_ns = time.time_ns()  # every reading's e2e starts after this (its record timestamp)
    sent = produce(kafka_broker, topic, [*encoded(good[:100]), *bad, *encoded(good[100:])])
    assert len({r.partition for r in sent}) == 1
    pool = start_pool("--workers", "2")
    db = pool_env["SQLITE_PATH"]

    wait_until("the good readings", lambda: sqlite_count(db) == 200, 60, pool)
    dead = read_topic(kafka_broker, pool_env["DLQ_TOPIC"], expected=2)
    assert sorted(payload(m) for m in dead) == sorted(v for _, v in bad)
    for m in dead:
        headers = headers_of(m)
        assert headers["error"]
        assert headers["original_topic"].decode() == topic
        assert int(headers["original_offset"]) in {100, 101}
        assert "ingested_at_ns" in headers

    port = int(pool_env["CONSUMER_METRICS_PORT"])
    # NOTE: rows are visible before the counters move (they are updated after the commit).
    samples = wait_until(
        "metrics",
        lambda: (
            s
            if metric(s := scrape(port), "sensor_consumer_readings_total", result="dlq") == 2
            and metric(s, "sensor_consumer_readings_total", result="stored") == 200
            else None
        ),
        30,
        pool,
    )
    # Each reading's e2e ran from its record's timestamp (taken after produced_ns) to its store,
    # before this scrape: their sum is bounded by 200 times that span (a unit or clock error is not).
    span_s = (time.time_ns() - produced_ns) / 1e9 + 0.001  # the record timestamp is in whole ms
    assert metric(samples, "sensor_pipeline_e2e_latency_seconds_count") == 200
    assert 0 < metric(samples, "sensor_pipeline_e2e_latency_seconds_sum") <= 200 * span_s
    assert metric(samples, "sensor_pipeline_e2e_latency_seconds_bucket", le="5.0") == 200
    assert metric(samples, "sensor_consumer_batch_size_count") >= 1
    assert metric(samples, "sensor_consumer_batch_size_sum") == 202
    assert metric(samples, "sensor_sink_write_duration_seconds_count", sink="sqlite") >= 1
    wait_until(
        "lag", lambda: ("sensor_consumer_lag", (("partition", str(sent[0].partition)),)) in scrape(port), 30, pool
    )


def expected_aggregates(readings: list[dict]) -> dict[tuple[str, str, str], tuple[int, float, float, float]]:
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in readings:
        groups[(r["sensor_id"], r["type"], r["timestamp"][:16] + ":00Z")].append(r["value"])
    return {k: (len(v), min(v), max(v), statistics.fmean(v)) for k, v in groups.items()}


@pytest.mark.parametrize("sink", ["sqlite", "postgres"])
def test_replay_stores_once_and_keeps_aggregates_and_alerts_right(
    sink: str,
    start_pool: PoolFactory,
    pool_env: dict[str, str],
    kafka_broker: str,
    topic: str,
    database_url: str,
    request: pytest.FixtureRequest,
) -> None:
    readings = [reading(i, sensors=3) for i in range(900)]  # 3 sensors x 300 s => 5 minutes each
    duplicates = readings[:50]  # the API retried these: they are in the topic twice
    produce(kafka_broker, topic, encoded(readings + duplicates))
    if sink == "postgres":
        url = request.getfixturevalue("pg_url")
        extra = {"SINK": "postgres", "DATABASE_URL": url}
        count = lambda: pg_count(url)  # noqa: E731
        aggregates = lambda: {  # noqa: E731
            (s, t, m.strftime("%Y-%m-%dT%H:%M:00Z")): (c, lo, hi, avg)
            for s, t, m, c, lo, hi, avg in pg_rows(
                url, "SELECT sensor_id, type, minute, count, min, max, avg FROM readings_1m"
            )
        }
    else:
        db = pool_env["SQLITE_PATH"]
        extra = {}
        count = lambda: sqlite_count(db)  # noqa: E731
        aggregates = lambda: {  # noqa: E731
            (s, t, m): (c, lo, hi, avg)
            for s, t, m, c, lo, hi, avg in sqlite_rows(
                db, "SELECT sensor_id, type, minute, count, min, max, avg FROM readings_1m"
            )
        }
    rules = {"ALERT_RULES": "temperature>47,temperature<=0.5"}
    port = int(pool_env["CONSUMER_METRICS_PORT"])

    first = start_pool("--workers", "2", **extra, **rules)
    wait_until("the first pass", lambda: count() == 900, 90, first)
    wait_until(
        "dups", lambda: metric(scrape(port), "sensor_consumer_readings_total", result="duplicate") == 50, 30, first
    )
    assert first.stop() == 0

    # A new group id reads the whole topic again: a full replay.
    again = start_pool("--workers", "2", CONSUMER_GROUP=pool_env["CONSUMER_GROUP"] + "-replay", **extra, **rules)
    wait_until(
        "replay", lambda: metric(scrape(port), "sensor_consumer_readings_total", result="duplicate") == 950, 90, again
    )
    assert metric(scrape(port), "sensor_consumer_readings_total", result="stored") == 0
    assert again.stop() == 0

    assert count() == 900
    expected = expected_aggregates(readings)
    got = aggregates()
    assert got.keys() == expected.keys()
    for key, (c, lo, hi, avg) in expected.items():
        assert got[key][:3] == (c, lo, hi), key
        assert got[key][3] == pytest.approx(avg), key

    # The alert lifecycle ran once, on the first pass's new rows: each raise and clear was
    # produced once (at least once: a crash could repeat one, never alter it), the replay none.
    lifecycle = advance(
        parse_rules(rules["ALERT_RULES"]),
        [Record.of(decode_reading(msgspec.json.encode(r)), 0) for r in readings],
        {},
        {},
    )
    assert lifecycle.changed  # the readings do cross the thresholds
    records = read_topic(kafka_broker, pool_env["ALERTS_TOPIC"], expected=len(lifecycle.changed))
    events = {((r.key() or b"").decode(), msgspec.json.decode(payload(r))["state"]) for r in records}
    assert events == {(row.id, row.state) for row in lifecycle.changed}
    assert len(records) == len(lifecycle.changed)


def test_sink_outage_is_retried_without_committing(
    start_pool: PoolFactory, pool_env: dict[str, str], kafka_broker: str, topic: str, pg_url: str
) -> None:
    group, port = pool_env["CONSUMER_GROUP"], int(pool_env["CONSUMER_METRICS_PORT"])
    pool = start_pool("--workers", "2", SINK="postgres", DATABASE_URL=pg_url)
    produce(kafka_broker, topic, encoded([reading(i, sensors=10) for i in range(100)]))
    wait_until("the first rows", lambda: pg_count(pg_url) == 100, 60, pool)
    wait_until(
        "commits", lambda: sum(max(o, 0) for o in committed(kafka_broker, group, topic).values()) == 100, 30, pool
    )

    # The store refuses writes. NOTE: not a table rename: psycopg prepares a statement run five
    # times, and a prepared INSERT keeps writing into the renamed table (it holds the table's OID).
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE readings ADD CONSTRAINT outage CHECK (false) NOT VALID")
    produce(kafka_broker, topic, encoded([reading(i, sensors=10) for i in range(100, 200)]))
    wait_until("retries", lambda: metric(scrape(port), "sensor_consumer_sink_errors_total") >= 3, 60, pool)
    assert sum(max(o, 0) for o in committed(kafka_broker, group, topic).values()) == 100

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE readings DROP CONSTRAINT outage")
    wait_until("the rows held back by the outage", lambda: pg_count(pg_url) == 200, 60, pool)
    wait_until(
        "commits", lambda: sum(max(o, 0) for o in committed(kafka_broker, group, topic).values()) == 200, 30, pool
    )
    assert "retrying in" in pool.log()
