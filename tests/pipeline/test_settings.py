"""Configuration is declared once, converted from the environment, and refuses values the
pipeline cannot run with, naming the variable."""

from __future__ import annotations

import argparse

import pytest

from pipeline.settings import ConfigError, KafkaSettings, PoolSettings, Settings, apply_flags, cli_flags


def test_defaults_are_those_of_the_contract() -> None:
    s = Settings.from_env({})
    assert (s.kafka.kafka_broker, s.kafka.topic_name, s.api.api_port) == ("localhost:9092", "sensor_data", 5000)
    assert (s.api.ack_mode, s.api.ack_timeout_ms, s.api.api_workers) == ("delivered", 5000, 2)
    assert (s.pool.sink, s.pool.consumer_workers, s.kafka.topic_partitions) == ("sqlite", 2, 6)
    assert s.api.api_keys == frozenset()


def test_values_come_from_the_environment() -> None:
    s = Settings.from_env({"API_PORT": "8000", "ACK_MODE": "enqueued", "API_KEYS": " k1, k2 ,,", "SINK": "postgres"})
    assert (s.api.api_port, s.api.ack_mode, s.pool.sink) == (8000, "enqueued", "postgres")
    assert s.api.api_keys == {"k1", "k2"}


def test_empty_values_keep_the_defaults() -> None:
    assert Settings.from_env({"API_PORT": " ", "SINK": "", "CONSUMER_ECHO": ""}) == Settings.from_env({})


@pytest.mark.parametrize(("text", "value"), [("yes", True), ("ON", True), ("1", True), ("off", False), ("0", False)])
def test_booleans_accept_the_usual_spellings(text: str, value: bool) -> None:
    assert Settings.from_env({"CONSUMER_ECHO": text}).pool.consumer_echo is value


def test_log_level_is_case_insensitive() -> None:
    assert Settings.from_env({"LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert Settings.from_env({}).log_level == "INFO"


def test_rdkafka_variables_become_librdkafka_settings() -> None:
    s = Settings.from_env(
        {"RDKAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RDKAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_BROKER": "b:9093"}
    )
    assert s.kafka.common() == {
        "bootstrap.servers": "b:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
    }


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"API_PORT": "http"}, "API_PORT must be an integer, got 'http'"),
        ({"API_WORKERS": "0"}, "API_WORKERS must be >= 1, got 0"),
        ({"ACK_MODE": "maybe"}, "ACK_MODE must be one of delivered, enqueued; got 'maybe'"),
        ({"SINK": "mongo"}, "SINK must be one of console, sqlite, postgres"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of DEBUG"),
        ({"CONSUMER_ECHO": "maybe"}, "CONSUMER_ECHO must be true or false"),
        ({"CONSUMER_BATCH_WAIT_MS": "-1"}, "CONSUMER_BATCH_WAIT_MS must be >= 0"),
        ({"CONSUMER_BACKEND": "dask"}, "CONSUMER_BACKEND must be one of multiprocessing, ray; got 'dask'"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Settings.from_env(env)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    cli_flags(p, PoolSettings)
    return p


def test_pool_flags_are_derived_from_the_settings_fields() -> None:
    text = parser().format_help()
    assert "--workers" in text and "(CONSUMER_WORKERS)" in text
    assert "{console,sqlite,postgres}" in text
    assert "--echo, --no-echo" in text


def test_flags_override_the_environment_and_are_validated_alike() -> None:
    base = Settings.from_env({"CONSUMER_WORKERS": "4", "CONSUMER_ECHO": "true"})
    got = apply_flags(base, parser().parse_args(["--workers", "3", "--no-echo", "--sink", "console"]))
    assert (got.pool.consumer_workers, got.pool.consumer_echo, got.pool.sink) == (3, False, "console")
    assert apply_flags(base, parser().parse_args([])) == base
    with pytest.raises(ConfigError, match="CONSUMER_WORKERS must be >= 1"):
        apply_flags(base, parser().parse_args(["--workers", "0"]))


def test_the_backend_comes_from_the_environment_or_the_flag() -> None:
    base = Settings.from_env({"CONSUMER_BACKEND": "ray", "RAY_ADDRESS": "head:6379"}, dotenv=False)
    assert (base.pool.consumer_backend, base.pool.ray_address) == ("ray", "head:6379")
    assert "{multiprocessing,ray}" in parser().format_help()
    got = apply_flags(base, parser().parse_args(["--backend", "multiprocessing"]))
    assert got.pool.consumer_backend == "multiprocessing"


@pytest.mark.parametrize(
    "env",
    [
        {"RDKAFKA_ACKS": "1"},
        {"RDKAFKA_ENABLE_IDEMPOTENCE": "false"},
        {"RDKAFKA_ENABLE_IDEMPOTENCE": "false", "RDKAFKA_ACKS": "1"},
        {"RDKAFKA_REQUEST_REQUIRED_ACKS": "0"},
        {"RDKAFKA_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION": "100"},
        {"RDKAFKA_MESSAGE_SEND_MAX_RETRIES": "0"},
        {"RDKAFKA_RETRIES": "0"},
        {"RDKAFKA_ENABLE_AUTO_COMMIT": "true"},
        {"RDKAFKA_AUTO_OFFSET_RESET": "latest"},
    ],
)
def test_what_a_2xx_means_cannot_be_overridden(env: dict[str, str]) -> None:
    """An RDKAFKA_* variable that would weaken an acknowledgement is refused at load, by name."""
    with pytest.raises(ConfigError, match=f"^{sorted(env)[0]} cannot be set"):
        Settings.from_env({**env, "RDKAFKA_LINGER_MS": "1"})


def test_pinned_settings_survive_in_every_client_config() -> None:
    """The clients' configurations keep acks=all, idempotence and manual commits whatever else
    RDKAFKA_* sets, and a KafkaSettings built in code cannot carry a pinned key either."""
    from pipeline.kafka_config import consumer_config, dlq_producer_config, producer_config

    kafka = Settings.from_env({"RDKAFKA_LINGER_MS": "7", "RDKAFKA_SECURITY_PROTOCOL": "SSL"}).kafka
    for config in (producer_config(kafka), dlq_producer_config(kafka)):
        assert (config["acks"], config["enable.idempotence"], config["linger.ms"]) == ("all", True, "7")
    consumer = consumer_config(kafka, "g")
    assert (consumer["enable.auto.commit"], consumer["auto.offset.reset"]) == (False, "earliest")
    with pytest.raises(ConfigError, match=r"enable\.idempotence cannot be overridden"):
        KafkaSettings(rdkafka={"enable.idempotence": "false"})
