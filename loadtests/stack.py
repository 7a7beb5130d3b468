"""The pipeline under test for the gate and the bench: its own API and pool on the running Kafka.

`own_stack()` starts `python -m service` and `python -m consumer_pool` on free ports with a fresh
topic, consumer group and SQLite file (so a run never mixes with `make up` or another test),
starts Kafka with deploy/local/kafka.sh only when no broker answers, and stops exactly what it
started, even when the body raises.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from confluent_kafka.admin import AdminClient, NewTopic
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent


class StackError(RuntimeError):
    """The pipeline could not be started (a component exited or never became ready)."""


@dataclass(frozen=True)
class Endpoints:
    """Where the pipeline under test lives; the gate needs nothing else."""

    api_url: str
    pool_metrics_url: str
    kafka_broker: str
    topic: str
    sqlite_path: str | None = None
    database_url: str | None = None
    consumer_group: str | None = None
    workers: int | None = None  # pool workers expected in the group; None: do not check


def group_settled(broker: str, group: str, topic: str, workers: int | None) -> bool:
    """The pool's group is STABLE, has all its workers, and every partition of `topic` is owned.

    NOTE: a worker that joins late triggers a rebalance that stalls consumption for a second
    or more; a measured run that starts before that would charge it to the e2e latency.
    """
    from confluent_kafka import ConsumerGroupState

    admin = AdminClient({"bootstrap.servers": broker})
    described = admin.describe_consumer_groups([group], request_timeout=5)[group].result()
    if described.state != ConsumerGroupState.STABLE:
        return False
    if workers is not None and len(described.members) != workers:
        return False
    owned = {
        tp.partition
        for member in described.members
        for tp in (member.assignment.topic_partitions if member.assignment else [])
        if tp.topic == topic
    }
    partitions = admin.list_topics(topic, timeout=5).topics[topic].partitions
    return owned == set(partitions)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child in its own session (so its workers are signalled too), output in a log file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                args,
                cwd=ROOT,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 2000) -> str:
        return self.log()[-chars:]

    def signal(self, sig: int) -> None:
        """Signal the main process only (e.g. SIGTERM to gunicorn's master)."""
        if self.alive():
            os.kill(self.popen.pid, sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM the group (a graceful drain), then SIGKILL whatever is left."""
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.popen.wait(10)


def broker_answers(broker: str, timeout: float = 5.0) -> bool:
    try:
        AdminClient({"bootstrap.servers": broker}).list_topics(timeout=timeout)
    except Exception:
        return False
    return True


def wait_until(what: str, check, timeout: float, proc: Process | None = None, interval: float = 0.2) -> None:
    """Poll `check()` until truthy; StackError naming `what` (and the process log) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise StackError(f"{proc.name} exited with {proc.popen.returncode} before {what}:\n{proc.log_tail()}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(interval)
    tail = f":\n{proc.log_tail()}" if proc else ""
    raise StackError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")


def _http_ok(url: str) -> bool:
    return requests.get(url, timeout=2).status_code == 200


@contextmanager
def kafka(broker: str) -> Iterator[str]:
    """Use the broker if it answers; otherwise start the local one and stop it afterwards."""
    if broker_answers(broker):
        yield broker
        return
    script = str(ROOT / "deploy/local/kafka.sh")
    subprocess.run([script, "start"], check=True)
    try:
        yield broker
    finally:
        subprocess.run([script, "stop"], check=False)


def _delete_group(admin: AdminClient, group: str) -> None:
    """Best effort: a leftover empty group only costs the broker a little memory."""
    try:
        admin.delete_consumer_groups([group], request_timeout=10)[group].result(15)
    except Exception as e:
        print(f"[stack] could not delete consumer group {group}: {e}", file=sys.stderr)


@contextmanager
def own_stack(
    run_id: str,
    workdir: Path,
    broker: str = "127.0.0.1:9092",
    extra_env: Mapping[str, str] | None = None,
    with_pool: bool = True,
) -> Iterator[Endpoints]:
    """API + pool on a fresh topic/group/SQLite file; everything started here is stopped here."""
    workdir.mkdir(parents=True, exist_ok=True)
    topic = f"gate-{run_id}"
    with kafka(broker):
        admin = AdminClient({"bootstrap.servers": broker})
        for future in admin.create_topics([NewTopic(topic, 6, 1)]).values():
            future.result(30)
        # NOTE: .env as the components would read it, so the worker count we expect matches.
        base = {**dotenv_values(ROOT / ".env"), **os.environ}
        base = {k: v or "" for k, v in base.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "CONSUMER_METRICS_DIR")}
        env = {
            **base,
            "KAFKA_BROKER": broker,
            "TOPIC_NAME": topic,
            "TOPIC_PARTITIONS": "6",
            "DLQ_TOPIC": f"{topic}.dlq",
            "ALERTS_TOPIC": f"{topic}.alerts",
            "CONSUMER_GROUP": f"gate-{run_id}",
            "API_HOST": "127.0.0.1",
            "API_PORT": str(free_port()),
            "CONSUMER_METRICS_PORT": str(free_port()),
            "SINK": "sqlite",
            "API_KEYS": "",  # a key set in .env would turn every request into a 401
            "SQLITE_PATH": str(workdir / "readings.db"),
            **(extra_env or {}),
        }
        api_url = f"http://127.0.0.1:{env['API_PORT']}"
        metrics_url = f"http://127.0.0.1:{env['CONSUMER_METRICS_PORT']}/metrics"
        started: list[Process] = []
        try:
            if with_pool:
                pool_env = {
                    **env,
                    "CONSUMER_METRICS_DIR": str(workdir / "pool-metrics"),
                }
                started.append(
                    Process(
                        "consumer pool",
                        [sys.executable, "-m", "consumer_pool"],
                        pool_env,
                        workdir / "pool.log",
                    )
                )
            api_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "api-metrics")}
            api = Process("API", [sys.executable, "-m", "service"], api_env, workdir / "api.log")
            started.append(api)
            wait_until(f"{api_url}/readyz", lambda: _http_ok(f"{api_url}/readyz"), 60, api)
            if with_pool:
                pool = started[0]
                wait_until(
                    "the pool's `Listening to topic`",
                    lambda: "Listening to topic" in pool.log_tail(100_000),
                    60,
                    pool,
                )
                wait_until(metrics_url, lambda: _http_ok(metrics_url), 30, pool)
            yield Endpoints(
                api_url,
                metrics_url,
                broker,
                topic,
                sqlite_path=env["SQLITE_PATH"],
                consumer_group=env["CONSUMER_GROUP"],
                workers=int(env.get("CONSUMER_WORKERS") or 2),
            )
        finally:
            # NOTE: the API first, so nothing new reaches the topic while the pool drains.
            for proc in reversed(started):
                proc.stop()
            admin.delete_topics([topic, f"{topic}.dlq", f"{topic}.alerts"])
            _delete_group(admin, env["CONSUMER_GROUP"])
            # The logs stay for the report; the run's data and metrics files go.
            for path in workdir.glob("readings.db*"):
                path.unlink(missing_ok=True)
            for folder in ("api-metrics", "pool-metrics"):
                shutil.rmtree(workdir / folder, ignore_errors=True)
