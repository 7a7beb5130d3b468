"""Configuration, read once from the environment (and `.env`) into one frozen object.

Both the API and the consumer pool use this object; nothing else reads `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from dotenv import load_dotenv

AckMode = Literal["delivered", "enqueued"]
SinkName = Literal["console", "sqlite", "postgres"]


class ConfigError(ValueError):
    """An environment variable has a value the pipeline cannot run with."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from e
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip() or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def rdkafka_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """RDKAFKA_SECURITY_PROTOCOL=SASL_SSL -> {"security.protocol": "SASL_SSL"}."""
    return {
        key[len("RDKAFKA_") :].lower().replace("_", "."): value
        for key, value in env.items()
        if key.startswith("RDKAFKA_") and len(key) > len("RDKAFKA_")
    }


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_broker: str = "localhost:9092"
    topic_name: str = "sensor_data"
    api_port: int = 5000
    api_host: str = "0.0.0.0"
    api_workers: int = 2
    api_threads: int = 16
    ack_mode: AckMode = "delivered"
    ack_timeout_ms: int = 5000
    max_body_bytes: int = 1_048_576
    max_batch: int = 10_000
    api_keys: frozenset[str] = frozenset()
    topic_partitions: int = 6
    dlq_topic: str = "sensor_data.dlq"
    alerts_topic: str = "sensor_alerts"
    alert_rules: str = ""
    consumer_group: str = "sensor-pipeline"
    consumer_workers: int = 2
    sink: SinkName = "sqlite"
    sqlite_path: str = "data/readings.db"
    database_url: str = ""
    consumer_metrics_port: int = 9108
    consumer_metrics_dir: str = ""
    consumer_batch_size: int = 5000
    consumer_batch_wait_ms: int = 5
    consumer_echo: bool = False
    log_level: str = "INFO"
    rdkafka: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
        """Build settings from `env` (default: the process environment plus `.env`)."""
        if env is None:
            if dotenv:
                load_dotenv(override=False)
            env = os.environ
        d = cls()  # the defaults (slots dataclasses have no class-level defaults)
        keys = frozenset(k.strip() for k in env.get("API_KEYS", "").split(",") if k.strip())
        return cls(
            kafka_broker=env.get("KAFKA_BROKER", "").strip() or d.kafka_broker,
            topic_name=env.get("TOPIC_NAME", "").strip() or d.topic_name,
            api_port=_int(env, "API_PORT", d.api_port, 1),
            api_host=env.get("API_HOST", "").strip() or d.api_host,
            api_workers=_int(env, "API_WORKERS", d.api_workers, 1),
            api_threads=_int(env, "API_THREADS", d.api_threads, 1),
            ack_mode=_choice(env, "ACK_MODE", d.ack_mode, ("delivered", "enqueued")),  # type: ignore[arg-type]
            ack_timeout_ms=_int(env, "ACK_TIMEOUT_MS", d.ack_timeout_ms, 1),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", d.max_body_bytes, 1),
            max_batch=_int(env, "MAX_BATCH", d.max_batch, 1),
            api_keys=keys,
            topic_partitions=_int(env, "TOPIC_PARTITIONS", d.topic_partitions, 1),
            dlq_topic=env.get("DLQ_TOPIC", "").strip() or d.dlq_topic,
            alerts_topic=env.get("ALERTS_TOPIC", "").strip() or d.alerts_topic,
            alert_rules=env.get("ALERT_RULES", "").strip(),
            consumer_group=env.get("CONSUMER_GROUP", "").strip() or d.consumer_group,
            consumer_workers=_int(env, "CONSUMER_WORKERS", d.consumer_workers, 1),
            sink=_choice(env, "SINK", d.sink, ("console", "sqlite", "postgres")),  # type: ignore[arg-type]
            sqlite_path=env.get("SQLITE_PATH", "").strip() or d.sqlite_path,
            database_url=env.get("DATABASE_URL", "").strip(),
            consumer_metrics_port=_int(env, "CONSUMER_METRICS_PORT", d.consumer_metrics_port, 1),
            consumer_metrics_dir=env.get("CONSUMER_METRICS_DIR", "").strip(),
            consumer_batch_size=_int(env, "CONSUMER_BATCH_SIZE", d.consumer_batch_size, 1),
            consumer_batch_wait_ms=_int(env, "CONSUMER_BATCH_WAIT_MS", d.consumer_batch_wait_ms, 0),
            consumer_echo=_bool(env, "CONSUMER_ECHO", d.consumer_echo),
            log_level=_choice(
                {"LOG_LEVEL": env.get("LOG_LEVEL", "").strip().upper()},
                "LOG_LEVEL",
                d.log_level,
                ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
            ),
            rdkafka=rdkafka_overrides(env),
        )

    def kafka_common(self) -> dict[str, str]:
        """librdkafka settings shared by every client: bootstrap plus RDKAFKA_* overrides."""
        return {"bootstrap.servers": self.kafka_broker, **self.rdkafka}
