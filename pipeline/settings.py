"""Configuration, declared once: typed sections converted from the environment (and `.env`).

Each field is one environment variable, its name upper-cased (`api_port` <- API_PORT); the
type, default and bounds are declared here and nowhere else. `msgspec.convert` does the
conversion (msgspec is already the wire-format library, so this adds no dependency, and it
converts and validates a 20-field mapping in microseconds). Its error is turned into a message
that names the variable (`ACK_MODE must be one of delivered, enqueued; got 'maybe'`).
Fields carrying `extra={"cli": "--flag"}` also become command-line flags of the pool
(`cli_flags` / `apply_flags`), so a flag is never declared twice. The variables are listed in
docs/contract.md.
"""

from __future__ import annotations

import argparse
import os
import typing
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from dotenv import load_dotenv

AckMode = Literal["delivered", "enqueued"]
SinkName = Literal["console", "sqlite", "postgres"]
Backend = Literal["multiprocessing", "ray"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]

_LITERALS = (AckMode, SinkName, LogLevel, Backend)

RDKAFKA_PREFIX = "RDKAFKA_"

# librdkafka settings an RDKAFKA_* variable may not change, because each decides what a 2xx
# means (docs/contract.md, "What a 2xx means is pinned"): the reason is the error's text.
PINNED_RDKAFKA: dict[str, str] = {
    "acks": "a 2xx means every in-sync replica has the reading (acks=all)",
    "request.required.acks": "a 2xx means every in-sync replica has the reading (acks=all)",
    "enable.idempotence": "the producer's retries must neither duplicate nor reorder (enable.idempotence=true)",
    "max.in.flight.requests.per.connection": "idempotence bounds in-flight requests; the built-in value is kept",
    "max.in.flight": "idempotence bounds in-flight requests; the built-in value is kept",
    "message.send.max.retries": "a transient broker error is retried, not turned into a loss",
    "retries": "a transient broker error is retried, not turned into a loss",
    "enable.auto.commit": "the pool commits an offset only after the reading is stored",
    "auto.offset.reset": "a new consumer group starts at the earliest record, so nothing acknowledged is skipped",
}


class ConfigError(ValueError):
    """An environment variable (or flag) has a value the pipeline cannot run with."""


class KafkaSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every Kafka client of the pipeline shares: where the broker is, the topic names."""

    kafka_broker: str = "localhost:9092"
    topic_name: str = "sensor_data"
    topic_partitions: Positive = 6
    dlq_topic: str = "sensor_data.dlq"
    alerts_topic: str = "sensor_alerts"
    # RDKAFKA_SECURITY_PROTOCOL=SASL_SSL -> {"security.protocol": "SASL_SSL"}; filled by `load`.
    rdkafka: dict[str, str] = {}

    def __post_init__(self) -> None:
        # NOTE: `load` names the variable; this catches settings built in code (tests, benches).
        pinned = sorted(self.rdkafka.keys() & PINNED_RDKAFKA.keys())
        if pinned:
            raise ConfigError(f"librdkafka's {pinned[0]} cannot be overridden: {PINNED_RDKAFKA[pinned[0]]}")

    def common(self) -> dict[str, str]:
        """librdkafka settings shared by every client: bootstrap plus RDKAFKA_* overrides."""
        return {"bootstrap.servers": self.kafka_broker, **self.rdkafka}


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The ingest API (service/)."""

    api_port: Positive = 5000
    api_host: str = "0.0.0.0"
    api_workers: Positive = 2
    ack_mode: AckMode = "delivered"
    ack_timeout_ms: Positive = 5000
    max_body_bytes: Positive = 1_048_576
    max_batch: Positive = 10_000
    # API_KEYS=k1,k2 (comma-separated; empty: no authentication)
    api_keys: frozenset[str] = frozenset()
    # Slow and idle clients (per gunicorn worker): a request's headers must arrive within
    # API_HEADER_TIMEOUT_MS of its first byte (or of the connection), its body within
    # API_BODY_TIMEOUT_MS, else 408 and the connection is closed; an idle keep-alive
    # connection is closed after API_KEEPALIVE_MS; past API_MAX_CONNECTIONS, 503.
    api_header_timeout_ms: Positive = 10_000
    api_body_timeout_ms: Positive = 30_000
    api_keepalive_ms: Positive = 75_000  # longer than common clients' idle expiry (docs/contract.md)
    api_max_connections: Positive = 4096
    # Load shedding: while a worker's event loop runs more than this behind, or a POST waited
    # longer than this for its turn, it is answered 503 + Retry-After at once.
    api_shed_after_ms: Positive = 250
    # prometheus-client's own variable; empty: a temp folder keyed by API_PORT
    prometheus_multiproc_dir: str = ""
    # The pool's /metrics, read by GET /pipeline; empty: 127.0.0.1 on CONSUMER_METRICS_PORT.
    pool_metrics_url: str = ""
    # Ingest hardening (issue 14): a request's headers past this many bytes get 431 and close.
    api_max_header_bytes: Positive = 65_536
    # Per-device tokens: `<token> <sensor id or prefix*> ...` per line (service/ingest/device_tokens.py)
    device_tokens_file: str = ""
    # Per token, key or client address, per worker: POSTs a second (0: no limit), and the burst
    # (0: RATE_LIMIT_RPS rounded up, at least 1); past it, 429 + Retry-After.
    rate_limit_rps: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    rate_limit_burst: NonNegative = 0
    # TLS for clients (gunicorn's certfile / keyfile); empty: plain HTTP
    api_tls_cert: str = ""
    api_tls_key: str = ""
    max_future_skew_s: Annotated[
        NonNegativeFloat,
        msgspec.Meta(description="a reading stamped more than this many seconds after the API's clock gets 422"),
    ] = 300.0

    def not_after(self, received_ns: int) -> datetime:
        """The clock-skew guard's bound for a request received at `received_ns` (docs/contract.md)."""
        try:
            return datetime.fromtimestamp(received_ns / 1e9 + self.max_future_skew_s, timezone.utc)
        except (OverflowError, OSError, ValueError):  # a skew past year 9999: no bound
            return datetime.max.replace(tzinfo=timezone.utc)


class PoolSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The consumer pool (consumer_pool/)."""

    consumer_group: str = "sensor-pipeline"
    consumer_workers: Annotated[Positive, msgspec.Meta(description="worker processes", extra={"cli": "--workers"})] = 2
    sink: Annotated[SinkName, msgspec.Meta(description="where readings go", extra={"cli": "--sink"})] = "sqlite"
    sqlite_path: str = "data/readings.db"
    database_url: str = ""
    consumer_metrics_port: Positive = 9108
    consumer_metrics_dir: str = ""
    consumer_batch_size: Positive = 5000
    consumer_batch_wait_ms: NonNegative = 5
    # Offsets are committed asynchronously at most this often (always after the write).
    consumer_commit_interval_ms: NonNegative = 100
    consumer_echo: Annotated[bool, msgspec.Meta(description="also print each reading", extra={"cli": "--echo"})] = False
    alert_rules: str = ""
    retention_raw_days: NonNegativeFloat = 0.0
    retention_agg_days: NonNegativeFloat = 0.0
    # Where the workers run: processes of this supervisor, or actors on a Ray cluster
    # (consumer_pool/ray_backend.py); RAY_ADDRESS empty: a local Ray started for the run.
    consumer_backend: Annotated[
        Backend, msgspec.Meta(description="where the workers run", extra={"cli": "--backend"})
    ] = "multiprocessing"
    ray_address: str = ""
    # Webhook notifications of alerts (docs/contract.md, "Webhook notifications"): every raise,
    # clear and acknowledgement is POSTed to each URL, signed with ALERT_WEBHOOK_SECRET, through
    # the store's outbox, retried with backoff capped at ALERT_WEBHOOK_BACKOFF_CAP_S until sent
    # or ALERT_WEBHOOK_GIVE_UP_S old.
    alert_webhook_urls: Annotated[
        frozenset[str], msgspec.Meta(description="comma-separated URLs notified of every alert raise, clear and ack")
    ] = frozenset()
    alert_webhook_secret: Annotated[
        str, msgspec.Meta(description="HMAC-SHA256 key of the X-Signature-256 header (required with URLs)")
    ] = ""
    alert_webhook_timeout_ms: Annotated[Positive, msgspec.Meta(description="one delivery attempt's timeout")] = 5000
    alert_webhook_backoff_cap_s: Annotated[
        float, msgspec.Meta(gt=0, description="longest wait between two attempts of one delivery")
    ] = 30.0
    alert_webhook_give_up_s: Annotated[
        Positive, msgspec.Meta(description="a delivery still failing this long after its event is marked failed")
    ] = 86_400

    def __post_init__(self) -> None:
        for url in self.alert_webhook_urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"ALERT_WEBHOOK_URLS: {url!r} is not an http:// or https:// URL")
        if self.alert_webhook_urls and not self.alert_webhook_secret:
            raise ConfigError("ALERT_WEBHOOK_SECRET must be set when ALERT_WEBHOOK_URLS is")

    def webhooks(self) -> tuple[str, ...]:
        """ALERT_WEBHOOK_URLS in a stable order."""
        return tuple(sorted(self.alert_webhook_urls))


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a process of the pipeline is configured with, read once at start-up."""

    kafka: KafkaSettings = KafkaSettings()
    api: ApiSettings = ApiSettings()
    pool: PoolSettings = PoolSettings()
    log_level: LogLevel = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
        """Settings from `env` (default: the process environment, plus `.env` if present)."""
        if env is None:
            if dotenv:
                load_dotenv(override=False)
            env = os.environ
        return load(env)


StructT = TypeVar("StructT", bound=msgspec.Struct)

SECTIONS: dict[str, type[msgspec.Struct]] = {"kafka": KafkaSettings, "api": ApiSettings, "pool": PoolSettings}


def _fields(struct: type[msgspec.Struct]) -> tuple[msgspec.inspect.Field, ...]:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType), struct
    return info.fields


def _plain(field_type: msgspec.inspect.Type) -> msgspec.inspect.Type:
    kind = field_type.type if isinstance(field_type, msgspec.inspect.Metadata) else field_type
    if isinstance(kind, msgspec.inspect.LiteralType):
        # NOTE: msgspec sorts a Literal's values; keep the declared order for messages and --help.
        declared = next(a for a in _LITERALS if set(typing.get_args(a)) == set(kind.values))
        return msgspec.inspect.LiteralType(typing.get_args(declared))
    return kind


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _raw(field: msgspec.inspect.Field, text: str) -> object:
    """The environment's text, shaped for msgspec's lax conversion (None: use the default)."""
    text = text.strip()
    if not text:
        return None
    kind = _plain(field.type)
    if isinstance(kind, msgspec.inspect.FrozenSetType):
        return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(kind, msgspec.inspect.BoolType):
        lowered = text.lower()
        return True if lowered in _TRUE else False if lowered in _FALSE else text
    if field.name == "log_level":
        return text.upper()
    return text


def _message(field: msgspec.inspect.Field, value: object) -> str:
    """What is wrong with `value` for `field`, in the pipeline's words."""
    name, kind = field.name.upper(), _plain(field.type)
    if isinstance(kind, msgspec.inspect.LiteralType):
        return f"{name} must be one of {', '.join(map(str, kind.values))}; got {value!r}"
    if isinstance(kind, msgspec.inspect.BoolType):
        return f"{name} must be true or false, got {value!r}"
    if isinstance(kind, msgspec.inspect.IntType):
        try:
            number = int(str(value))
        except ValueError:
            return f"{name} must be an integer, got {value!r}"
        return f"{name} must be >= {kind.ge}, got {number}"
    return f"{name} has an invalid value {value!r}"


def _convert(struct: type[StructT], values: dict[str, object]) -> StructT:
    """msgspec.convert with its error turned into a ConfigError naming the variable."""
    try:
        return msgspec.convert(values, struct, strict=False)
    except msgspec.ValidationError as e:
        bad = str(e).rsplit("$.", 1)[-1].rstrip("`")
        field = next((f for f in _fields(struct) if f.name == bad), None)
        if field is None:
            raise ConfigError(str(e)) from e
        raise ConfigError(_message(field, values.get(bad))) from e


def rdkafka_names(env: Mapping[str, str]) -> dict[str, str]:
    """Each RDKAFKA_* variable of `env` and the librdkafka setting it names (`_` -> `.`)."""
    return {
        key: key[len(RDKAFKA_PREFIX) :].lower().replace("_", ".")
        for key in env
        if key.startswith(RDKAFKA_PREFIX) and len(key) > len(RDKAFKA_PREFIX)
    }


def load(env: Mapping[str, str]) -> Settings:
    """Convert an environment mapping into Settings; raises ConfigError naming the variable."""
    sections: dict[str, object] = {}
    for section, struct in SECTIONS.items():
        values = {f.name: _raw(f, env.get(f.name.upper(), "")) for f in _fields(struct) if f.name != "rdkafka"}
        sections[section] = _convert(struct, {k: v for k, v in values.items() if v is not None})
    rdkafka = {name: env[key] for key, name in rdkafka_names(env).items()}
    for key, name in sorted(rdkafka_names(env).items()):
        if name in PINNED_RDKAFKA:
            raise ConfigError(f"{key} cannot be set: {name} is pinned ({PINNED_RDKAFKA[name]})")
    kafka = sections["kafka"]
    assert isinstance(kafka, KafkaSettings)
    sections["kafka"] = msgspec.structs.replace(kafka, rdkafka=rdkafka)
    level = _raw(next(f for f in _fields(Settings) if f.name == "log_level"), env.get("LOG_LEVEL", ""))
    top = {"log_level": level} if level is not None else {}
    return msgspec.structs.replace(_convert(Settings, top), **sections)


# --- command-line flags derived from the same fields -----------------------------------


def cli_flags(parser: argparse.ArgumentParser, struct: type[msgspec.Struct] = PoolSettings) -> None:
    """Add a flag for every field of `struct` that declares one (`extra={"cli": ...}`)."""
    for field in _fields(struct):
        meta = field.type if isinstance(field.type, msgspec.inspect.Metadata) else None
        flag = (meta.extra or {}).get("cli") if meta else None
        if meta is None or not flag:
            continue
        kind = _plain(field.type)
        help_text = f"{(meta.extra_json_schema or {}).get('description', '')} ({field.name.upper()})".strip()
        options: dict[str, Any] = {"dest": field.name, "default": None, "help": help_text}
        if isinstance(kind, msgspec.inspect.BoolType):
            options["action"] = argparse.BooleanOptionalAction
        elif isinstance(kind, msgspec.inspect.LiteralType):
            options["choices"] = kind.values
        elif isinstance(kind, msgspec.inspect.IntType):
            options["type"] = int
        parser.add_argument(flag, **options)


def apply_flags(settings: Settings, args: argparse.Namespace, section: str = "pool") -> Settings:
    """Settings with the given flags applied, validated by the same rules as the environment."""
    current = getattr(settings, section)
    struct = type(current)
    given = {f.name: getattr(args, f.name) for f in _fields(struct) if getattr(args, f.name, None) is not None}
    if not given:
        return settings
    merged = {**msgspec.structs.asdict(current), **given}
    return msgspec.structs.replace(settings, **{section: _convert(struct, merged)})


__all__ = [
    "PINNED_RDKAFKA",
    "AckMode",
    "ApiSettings",
    "Backend",
    "ConfigError",
    "KafkaSettings",
    "PoolSettings",
    "Settings",
    "SinkName",
    "apply_flags",
    "cli_flags",
    "load",
]
