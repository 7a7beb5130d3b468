"""Configuration is read once, typed, and refuses values the pipeline cannot run with."""

from __future__ import annotations

import pytest

from service.settings import ConfigError, Settings


def test_defaults_are_those_of_the_design() -> None:
    s = Settings.from_env({})
    assert (s.kafka_broker, s.topic_name, s.api_port) == ("localhost:9092", "sensor_data", 5000)
    assert (s.ack_mode, s.ack_timeout_ms, s.api_workers, s.api_threads) == ("delivered", 5000, 2, 16)
    assert (s.sink, s.consumer_workers, s.topic_partitions) == ("sqlite", 2, 6)
    assert s.api_keys == frozenset()


def test_values_come_from_the_environment() -> None:
    s = Settings.from_env({"API_PORT": "8000", "ACK_MODE": "enqueued", "API_KEYS": " k1, k2 ,,", "SINK": "postgres"})
    assert (s.api_port, s.ack_mode, s.sink) == (8000, "enqueued", "postgres")
    assert s.api_keys == {"k1", "k2"}


def test_log_level_is_case_insensitive() -> None:
    assert Settings.from_env({"LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert Settings.from_env({}).log_level == "INFO"


def test_rdkafka_variables_become_librdkafka_settings() -> None:
    s = Settings.from_env(
        {"RDKAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RDKAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_BROKER": "b:9093"}
    )
    assert s.kafka_common() == {
        "bootstrap.servers": "b:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
    }


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"API_PORT": "http"}, "API_PORT must be an integer"),
        ({"API_WORKERS": "0"}, "API_WORKERS must be >= 1"),
        ({"ACK_MODE": "maybe"}, "ACK_MODE must be one of delivered, enqueued"),
        ({"SINK": "mongo"}, "SINK must be one of"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of DEBUG"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Settings.from_env(env)
