"""Fixtures for the live monitoring test: a real Prometheus (Debian's binary) on a free port
with its own storage, the consumer pool storing into a database of its own, and a topic
whose size limit makes the broker reject every record (real Kafka delivery errors)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from harness.kafka import create_topic, delete_topics
from harness.poll import wait_http, wait_until
from harness.process import PYTHON, Process, free_port, spawn, unique
from tests.monitoring.files import ALERT_RULES, PROMETHEUS_CONFIG, load_yaml

PrometheusFactory = Callable[[dict[str, list[str]]], str]


@pytest.fixture
def rejecting_topic(kafka_broker: str) -> Iterator[str]:
    """A topic that accepts no record: max.message.bytes is below any record batch, so the
    broker answers MSG_SIZE_TOO_LARGE and the API counts a delivery error and answers 503."""
    name = create_topic(kafka_broker, unique("test-rejecting"), 1, config={"max.message.bytes": "64"})
    yield name
    delete_topics(kafka_broker, name)


@pytest.fixture
def start_pool(pipeline_env: dict[str, str], pg_url: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Start `python -m consumer_pool` (SINK=postgres); returns its metrics URL."""
    with ExitStack() as stack:

        def start() -> str:
            env = {
                **pipeline_env,
                "SINK": "postgres",
                "DATABASE_URL": pg_url,
                "CONSUMER_WORKERS": "2",
                "CONSUMER_METRICS_DIR": str(tmp_path / "pool-metrics"),
            }
            proc: Process = stack.enter_context(spawn([PYTHON, "-m", "consumer_pool"], env, tmp_path / "pool.log"))
            url = f"http://127.0.0.1:{env['CONSUMER_METRICS_PORT']}/metrics"
            wait_http(url, 90, proc=proc)
            listening = f"Listening to topic: {env['TOPIC_NAME']}"
            wait_until("the pool to start", lambda: listening in proc.log(), 60, proc)
            return url

        yield start


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[PrometheusFactory]:
    """Start Debian's `prometheus` with monitoring/prometheus/prometheus.yml and alerts.yml,
    the scrape targets replaced by the given ones ({job_name: ["host:port", ...]}), a
    1-second scrape and evaluation interval, its own port and storage; stopped afterwards."""
    exe = shutil.which("prometheus")
    assert exe, "prometheus not found: apt-get install prometheus (.ci/run does)"
    with ExitStack() as stack:

        def start(targets: dict[str, list[str]]) -> str:
            port = free_port()
            config = load_yaml(PROMETHEUS_CONFIG)
            config["global"]["scrape_interval"] = "1s"
            config["global"]["evaluation_interval"] = "1s"
            config["rule_files"] = [str(ALERT_RULES)]
            jobs = {job["job_name"]: job for job in config["scrape_configs"]}
            targets = {**targets, "prometheus": [f"127.0.0.1:{port}"]}
            assert set(targets) == set(jobs), f"jobs in prometheus.yml: {sorted(jobs)}"
            for name, job in jobs.items():
                labels = job["static_configs"][0].get("labels", {})
                job["static_configs"] = [{"targets": targets[name], "labels": labels}]
            folder = tmp_path / "prometheus"
            folder.mkdir()
            (folder / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
            args = [
                exe,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ]
            proc = stack.enter_context(spawn(args, {}, tmp_path / "prometheus.log"))
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/-/ready", 60, proc=proc)
            return base

        yield start
