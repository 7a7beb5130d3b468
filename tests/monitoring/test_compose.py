"""docker-compose.yml and the Dockerfile, checked statically (no Docker engine here).

The compose file is validated against the Compose Specification JSON schema as vendored
by check-jsonschema (pinned in requirements.txt; works offline), then checked for what the
schema cannot know: the services docs/contract.md names, pinned images, healthchecks and start
order, the Kafka listeners, and that Prometheus and Grafana point at what compose runs.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from importlib import metadata, resources
from typing import Any

import jsonschema
import msgspec
import pytest
from dotenv import dotenv_values

from harness.process import ROOT
from pipeline.settings import ApiSettings, KafkaSettings, PoolSettings, Settings
from tests.monitoring.files import (
    COMPOSE,
    DASHBOARD_PROVIDERS,
    DATASOURCES,
    DOCKERFILE,
    DOCKERIGNORE,
    PROMETHEUS_CONFIG,
    load_yaml,
)

CONTRACT_SERVICES = {"kafka", "kafka-ui", "api", "consumer-pool", "timescaledb", "prometheus", "grafana"}
LONG_RUNNING = CONTRACT_SERVICES  # every service but the one-shot topic init


def compose_schema() -> dict[str, Any]:
    path = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


def validate(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_file_matches_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    assert validate(compose) == []


MISTAKES = {
    "services/api/depends_on": lambda c: c["services"]["api"]["depends_on"]["kafka-init"].update(
        condition="service_ready"
    ),
    "services/kafka/healthcheck": lambda c: c["services"]["kafka"]["healthcheck"].update(intervall="5s"),
    "services/grafana/ports": lambda c: c["services"]["grafana"].update(ports="3000:3000"),
    "services/prometheus": lambda c: c["services"]["prometheus"].update(restart_policy="always"),
    "volumes/kafka-data": lambda c: c["volumes"].update({"kafka-data": "x"}),
}


@pytest.mark.parametrize("where", MISTAKES)
def test_schema_validation_catches_mistakes(compose: dict[str, Any], where: str) -> None:
    """The check is not vacuous: a typical mistake is reported where it is."""
    broken = copy.deepcopy(compose)
    MISTAKES[where](broken)
    errors = validate(broken)
    assert any(e.startswith(where) for e in errors), errors


def test_services_are_the_ones_design_names(services: dict[str, Any]) -> None:
    assert set(services) == CONTRACT_SERVICES | {"kafka-init"}
    assert not any("zookeeper" in name or "zookeeper" in str(s.get("image", "")) for name, s in services.items())


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: image {image!r} has no pinned tag"
        assert re.search(r"\d", tag), f"{name}: tag {tag!r} names no version"
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert re.fullmatch(r"timescale/timescaledb:[\d.]+-pg1[56]", services["timescaledb"]["image"])
    assert services["kafka-ui"]["image"].split(":")[0] in {"provectuslabs/kafka-ui", "kafbat/kafka-ui"}


def test_long_running_services_have_healthchecks(services: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    assert services["kafka-init"].get("restart") == "no"


def test_start_order_uses_conditions(services: dict[str, Any]) -> None:
    def deps(name: str) -> dict[str, str]:
        depends = services[name].get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        return {dep: spec["condition"] for dep, spec in depends.items()}

    assert deps("kafka-init") == {"kafka": "service_healthy"}
    assert deps("api") == {"kafka-init": "service_completed_successfully", "timescaledb": "service_healthy"}
    assert deps("consumer-pool") == {"kafka-init": "service_completed_successfully", "timescaledb": "service_healthy"}
    assert deps("kafka-ui")["kafka"] == "service_healthy"
    assert deps("prometheus")["api"] == "service_healthy"
    assert deps("grafana") == {"prometheus": "service_healthy", "timescaledb": "service_healthy"}
    # No cycles: a topological order exists.
    order: list[str] = []
    pending = dict(services)
    while pending:
        ready = [n for n, s in pending.items() if set(s.get("depends_on", {})) <= set(order)]
        assert ready, f"depends_on cycle among {sorted(pending)}"
        order.extend(ready)
        for n in ready:
            del pending[n]


def test_kafka_has_a_listener_for_containers_and_one_for_the_host(services: dict[str, Any]) -> None:
    env = env_of(services["kafka"])
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["INTERNAL"] == "kafka:19092"
    assert advertised["EXTERNAL"].startswith("localhost:")
    assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert any(p.endswith(":9092") for p in services["kafka"]["ports"])
    for name in ("api", "consumer-pool"):
        assert env_of(services[name])["KAFKA_BROKER"] == "kafka:19092"
    assert env_of(services["kafka-ui"])["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == "kafka:19092"
    assert "kafka:19092" in " ".join(services["kafka-init"]["command"])


def test_python_services_share_one_image(services: dict[str, Any]) -> None:
    api, pool = services["api"], services["consumer-pool"]
    assert api["build"] == pool["build"] and api["build"]["dockerfile"] == "Dockerfile"
    assert api["command"] == ["python", "-m", "service"]
    assert pool["command"] == ["python", "-m", "consumer_pool"]
    env = env_of(pool)
    assert env["SINK"] == "${SINK:-postgres}"
    assert "@timescaledb:5432/" in env["DATABASE_URL"]
    # SINK=sqlite: one file in a volume both containers mount (the API reads it, writes acks).
    for service in (api, pool):
        assert env_of(service)["SQLITE_PATH"] == "/app/data/readings.db"
        assert "pipeline-data:/app/data" in service["volumes"]


def test_env_variables_have_defaults() -> None:
    """Every ${VAR} has a default, so the stack starts without a .env file."""
    text = COMPOSE.read_text()
    refs = re.findall(r"(?<!\$)\$\{([^}]+)\}", text)
    assert refs, "no ${VAR} references: .env would not be honoured"
    for ref in refs:
        assert ":-" in ref, f"${{{ref}}} has no default"
    used = {ref.split(":-")[0] for ref in refs}
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.M))
    seed = {"TOPIC_NAME", "API_PORT", "ACK_MODE", "CONSUMER_WORKERS", "CONSUMER_METRICS_PORT", "API_KEYS"}
    assert seed <= used
    assert seed <= documented


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and $$, enough for this file."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(3) or ""
        return variables.get(name) or default

    return re.sub(r"\$\$|\$\{(\w+)(:-([^}]*))?\}", one, value)


@pytest.mark.parametrize("dotenv", ["no .env", ".env from .env.example", ".env with SINK=sqlite"])
def test_container_environment_is_valid_configuration(services: dict[str, Any], dotenv: str) -> None:
    """The api and consumer-pool environments, interpolated as compose does, are settings
    the components accept (the same parser they use), with or without a .env file."""
    variables = {} if dotenv == "no .env" else {k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items()}
    if dotenv.endswith("SINK=sqlite"):
        variables["SINK"] = "sqlite"
    parsed = {}
    for name in ("api", "consumer-pool"):
        env = {k: interpolate(v, variables) for k, v in env_of(services[name]).items()}
        parsed[name] = Settings.from_env(env, dotenv=False)
        level = env.get("LOG_LEVEL", "INFO")
        assert isinstance(logging.getLevelName(level), int), f"{name}: LOG_LEVEL {level!r} is not a logging level"
    api, pool = parsed["api"], parsed["consumer-pool"]
    assert api.kafka.kafka_broker == pool.kafka.kafka_broker == "kafka:19092"
    assert api.kafka.topic_name == pool.kafka.topic_name
    assert (api.api.api_host, api.api.api_port) == ("0.0.0.0", 5000)
    assert pool.pool.consumer_metrics_port == 9108
    assert pool.pool.sink == ("sqlite" if dotenv.endswith("SINK=sqlite") else "postgres")
    assert pool.pool.database_url.startswith("postgresql://")
    # The API reads the store the pool writes (GET /sensors, /alerts) and the pool's metrics
    # (GET /pipeline) across the compose network, not at 127.0.0.1 inside its own container.
    assert (api.pool.sink, api.pool.database_url, api.pool.sqlite_path) == (
        pool.pool.sink,
        pool.pool.database_url,
        pool.pool.sqlite_path,
    )
    assert "@timescaledb:5432/" in api.pool.database_url
    assert api.api.pool_metrics_url == f"http://consumer-pool:{pool.pool.consumer_metrics_port}/metrics"


# Who reads which settings section: the API opens the pool's store read-only (service/asgi.py).
READERS = {"api": ("kafka", "api", "store"), "consumer-pool": ("kafka", "pool")}
STORE = {"SINK", "SQLITE_PATH", "DATABASE_URL"}
# Fixed by docker-compose.yml, whatever .env says, and why (docs/docker.md).
FIXED = {
    "KAFKA_BROKER": "containers reach Kafka at kafka:19092",
    "API_HOST": "the API listens on every address of its container",
    "API_PORT": "5000 inside; API_PORT is the host port",
    "CONSUMER_METRICS_PORT": "9108 inside; CONSUMER_METRICS_PORT is the host port",
    "POOL_METRICS_URL": "the pool's container",
    "SQLITE_PATH": "the pipeline-data volume both containers mount",
    "DATABASE_URL": "the timescaledb service",
}
# Declared settings that compose does not pass, and why.
NOT_PASSED = {
    "PROMETHEUS_MULTIPROC_DIR": "prometheus-client's own variable; the image's temp folder",
}
# Declared settings .env.example leaves out, and why.
NOT_IN_EXAMPLE = {"PROMETHEUS_MULTIPROC_DIR": "prometheus-client's own variable (docs/contract.md)"}


def declared(section: str) -> set[str]:
    if section == "store":
        return STORE
    struct = {"kafka": KafkaSettings, "api": ApiSettings, "pool": PoolSettings}[section]
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    return {f.name.upper() for f in info.fields if f.name != "rdkafka"}


def test_every_variable_of_env_example_reaches_the_container_that_reads_it(services: dict[str, Any]) -> None:
    """.env.example, the declared settings (pipeline/settings.py) and the compose environment
    agree: each setting is in .env.example, and each reaches every container that reads it as
    ${VAR:-...} (so .env sets it), unless compose fixes it or leaves it out for a stated reason."""
    example = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    settings = {"LOG_LEVEL"} | set().union(*(declared(s) for s in ("kafka", "api", "pool")))
    assert settings - example == set(NOT_IN_EXAMPLE), "settings missing from .env.example"
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE.read_text()))
    assert example - settings <= used, (
        f"in .env.example but neither a setting nor used by compose: {example - settings - used}"
    )
    for name, sections in READERS.items():
        env = env_of(services[name])
        for var in {"LOG_LEVEL"} | set().union(*(declared(s) for s in sections)):
            if var in NOT_PASSED:
                assert var not in env, f"{name}: {var} is passed after all; drop it from NOT_PASSED"
            elif var in FIXED:
                assert var in env and "${" + var not in env[var], f"{name}: {var} should be fixed ({FIXED[var]})"
            else:
                assert var in env, f"{name} reads {var}, but compose does not pass it"
                assert env[var].startswith("${" + var + ":-"), f"{name}: {var}={env[var]!r} ignores .env"


def test_prometheus_scrapes_what_compose_runs(services: dict[str, Any]) -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]] for job in config["scrape_configs"]
    }
    api_port = env_of(services["api"])["API_PORT"]
    pool_port = env_of(services["consumer-pool"])["CONSUMER_METRICS_PORT"]
    assert targets["sensor-api"] == [f"api:{api_port}"]
    assert targets["sensor-consumer-pool"] == [f"consumer-pool:{pool_port}"]
    assert any(p.endswith(f":{api_port}") for p in services["api"]["ports"])
    assert any(p.endswith(f":{pool_port}") for p in services["consumer-pool"]["ports"])
    mount = next(v for v in services["prometheus"]["volumes"] if v.startswith("./monitoring/prometheus:"))
    assert mount.split(":")[1] == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


def test_grafana_is_provisioned_from_the_repository(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"] if v.startswith("./")}
    assert mounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    assert [p["options"]["path"] for p in providers] == [mounts["./monitoring/grafana/dashboards"]]
    sources = {d["uid"]: d for d in load_yaml(DATASOURCES)["datasources"]}
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    assert sources["timescaledb"]["url"] == "timescaledb:5432"
    assert sources["timescaledb"]["jsonData"]["database"] == "$POSTGRES_DB"
    env = env_of(grafana)
    for var in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert env[var] == env_of(services["timescaledb"])[var], var


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    used = {
        v.split(":")[0]
        for s in services.values()
        for v in s.get("volumes", [])
        if isinstance(v, str) and not v.startswith((".", "/"))
    }
    assert (
        used
        == set(compose["volumes"])
        == {
            "pipeline-data",
            "kafka-data",
            "timescaledb-data",
            "prometheus-data",
            "grafana-data",
        }
    )


# --- Dockerfile -------------------------------------------------------------------------


def dockerfile_lines() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def runtime_requirements() -> list[str]:
    """What the image installs: the lock file(s) its `pip install -r` lines name."""
    locks = [m.group(1) for line in dockerfile_lines() if (m := re.search(r"pip install -r (\S+)", line))]
    assert locks, "the Dockerfile installs no requirements file"
    copied = {line.split()[-1]: line.split()[-2] for line in dockerfile_lines() if line.startswith("COPY ")}
    names: list[str] = []
    for lock in locks:
        assert not lock.startswith("-"), lock
        lines = (ROOT / copied[lock]).read_text().splitlines()
        assert not any(line.startswith("-r") for line in lines), "the image's lock must not include another file"
        names += [
            re.split(r"[=<>\[ ;]", line)[0].lower() for line in lines if line.strip() and not line.startswith("#")
        ]
    return names


def test_dockerfile_is_slim_non_root_with_healthcheck() -> None:
    lines = dockerfile_lines()
    arg = next(line for line in lines if line.startswith("ARG PYTHON_IMAGE="))
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:3\.11(\.\d+)?-slim(-\w+)?", arg)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    assert lines[-1].startswith("CMD ")


def test_image_installs_the_runtime_dependencies_only() -> None:
    runtime = set(runtime_requirements())
    assert {"falcon", "gunicorn", "msgspec", "confluent-kafka", "prometheus-client", "psycopg"} <= runtime
    assert not runtime & {"pytest", "locust", "ruff", "check-jsonschema"}


def test_image_has_every_package_the_code_imports() -> None:
    """A third-party import in pipeline/, store/, service/ or consumer_pool/ must be a runtime requirement."""
    runtime = {name.replace("_", "-") for name in runtime_requirements()}
    dists = metadata.packages_distributions()
    imported: set[str] = set()
    for folder in ("pipeline", "store", "service", "consumer_pool"):
        for path in (ROOT / folder).rglob("*.py"):
            imported |= set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", path.read_text(), re.M))
    third_party = {
        dist.lower().replace("_", "-")
        for module in imported
        for dist in dists.get(module, [])
        if module not in {"pipeline", "store", "service", "consumer_pool"}
    }
    first_party = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() or p.suffix == ".py"}
    images = {"pipeline", "store", "service", "consumer_pool"}
    assert imported & first_party <= images, "the image has only pipeline/, store/, service/ and consumer_pool/"
    assert third_party, "found no third-party imports at all"
    # NOTE: requirements-ray.txt is an optional extra (CONSUMER_BACKEND=ray), kept out of the image.
    optional = {
        re.split(r"[=<>\[ ]", line)[0].lower()
        for line in (ROOT / "requirements-ray.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    missing = third_party - runtime - optional
    assert not missing, f"imported but not installed in the image: {sorted(missing)}"


def test_dockerignore_sends_only_what_the_image_copies() -> None:
    rules = [line for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = {
        line.split()[-2].rstrip("/") for line in dockerfile_lines() if line.startswith("COPY ") and "--from" not in line
    }
    assert copied <= allowed, copied - allowed
