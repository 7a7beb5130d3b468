"""harness.isolation: every run gets its own topics, group and ports, the environment binds
the API and the pool to exactly those (as pipeline.settings reads them), and cleanup deletes
only its own topics."""

from __future__ import annotations

from harness.isolation import Isolation, inherited
from harness.kafka import admin
from harness.poll import wait_until
from pipeline.settings import Settings


def test_two_runs_never_share_a_topic_group_or_port() -> None:
    a, b = Isolation.fresh("b:9092", "t"), Isolation.fresh("b:9092", "t")
    assert {a.topic, a.group}.isdisjoint({b.topic, b.group})
    assert a.api_port != a.metrics_port
    assert {a.api_port, a.metrics_port}.isdisjoint({b.api_port, b.metrics_port})


def test_the_environment_is_what_the_components_read() -> None:
    iso = Isolation.fresh("127.0.0.1:1", "gate", "r1", sqlite_path="/tmp/x.db")
    settings = Settings.from_env(iso.env(), dotenv=False)
    assert (iso.topic, iso.group) == ("gate-r1", "gate-r1")
    assert settings.kafka.kafka_broker == "127.0.0.1:1"
    assert settings.kafka.topic_name == "gate-r1"
    assert settings.kafka.dlq_topic == "gate-r1.dlq"
    assert settings.kafka.alerts_topic == "gate-r1.alerts"
    assert settings.pool.consumer_group == "gate-r1"
    assert settings.pool.consumer_metrics_port == iso.metrics_port
    assert settings.pool.sqlite_path == "/tmp/x.db"
    assert iso.api_url.endswith(f":{iso.api_port}") and iso.metrics_url.endswith(f":{iso.metrics_port}/metrics")


def test_another_group_keeps_the_topics_and_ports() -> None:
    iso = Isolation.fresh("b:9092", "bench")
    again = iso.with_group("second")
    assert again.group == "second" and again.topics == iso.topics and again.metrics_port == iso.metrics_port


def test_inherited_drops_the_callers_metrics_folders() -> None:
    env = inherited({"PROMETHEUS_MULTIPROC_DIR": "/a", "CONSUMER_METRICS_DIR": "/b", "PATH": "/bin", "X": None})
    assert env == {"PATH": "/bin", "X": ""}


def test_create_then_delete_on_the_real_broker(kafka_broker: str) -> None:
    iso = Isolation.fresh(kafka_broker, "test-isolation").create()
    try:
        # NOTE: a new topic reaches the metadata a moment after its creation is acknowledged.
        topic = wait_until(
            "the topic in the metadata", lambda: admin(kafka_broker).list_topics(timeout=10).topics.get(iso.topic), 30
        )
        assert len(topic.partitions) == 6
    finally:
        iso.delete()
    wait_until("the topic deleted", lambda: iso.topic not in admin(kafka_broker).list_topics(timeout=10).topics, 30)
