"""The pipeline under test for the gate and the benches: its own API and pool on the running Kafka.

`own_stack()` starts `python -m service` and `python -m consumer_pool` on free ports with a fresh
topic, consumer group and SQLite file (so a run never mixes with `make up` or another test),
starts Kafka with deploy/local/kafka.sh only when no broker answers, and stops exactly what it
started, even when the body raises.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from harness.isolation import Isolation, inherited
from harness.kafka import broker_answers
from harness.poll import ProcessExited, wait_http, wait_until
from harness.process import PYTHON, ROOT, pinned, spawn


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
    api_pid: int | None = None  # process groups of the API and the pool (CPU accounting)
    pool_pid: int | None = None


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
    iso = Isolation.fresh(broker, "gate", run_id, sqlite_path=str(workdir / "readings.db"))
    with kafka(broker):
        iso.create()
        # NOTE: .env as the components would read it, so the worker count we expect matches;
        # the children get exactly this environment (no inherited multiprocess folders).
        env = pinned(
            {
                **inherited({**dotenv_values(ROOT / ".env"), **os.environ}),
                **iso.env(),
                "SINK": "sqlite",
                "API_KEYS": "",  # a key set in .env would turn every request into a 401
                **(extra_env or {}),
            }
        )
        api_url = f"http://127.0.0.1:{env['API_PORT']}"
        metrics_url = f"http://127.0.0.1:{env['CONSUMER_METRICS_PORT']}/metrics"
        try:
            # NOTE: ExitStack unwinds in reverse: the API stops first, so nothing new reaches
            # the topic while the pool drains.
            with ExitStack() as started:
                pool = None
                if with_pool:
                    pool_env = {**env, "CONSUMER_METRICS_DIR": str(workdir / "pool-metrics")}
                    pool = started.enter_context(
                        spawn(
                            [PYTHON, "-m", "consumer_pool"],
                            pool_env,
                            workdir / "pool.log",
                            "consumer pool",
                            inherit=False,
                        )
                    )
                api_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "api-metrics")}
                api = started.enter_context(
                    spawn([PYTHON, "-m", "service"], api_env, workdir / "api.log", "API", inherit=False)
                )
                try:
                    wait_http(f"{api_url}/readyz", 60, proc=api)
                    if pool is not None:
                        listening = lambda: "Listening to topic" in pool.log_tail(100_000)  # noqa: E731
                        wait_until("the pool's `Listening to topic`", listening, 60, pool)
                        wait_http(metrics_url, 30, proc=pool)
                except (ProcessExited, TimeoutError) as e:
                    raise StackError(str(e)) from e
                yield Endpoints(
                    api_url,
                    metrics_url,
                    broker,
                    iso.topic,
                    sqlite_path=env["SQLITE_PATH"],
                    consumer_group=env["CONSUMER_GROUP"],
                    workers=int(env.get("CONSUMER_WORKERS") or 2),
                    api_pid=api.pid,
                    pool_pid=pool.pid if pool is not None else None,
                )
        finally:
            iso.delete(with_group=True)
            # The logs stay for the report; the run's data and metrics files go.
            for path in workdir.glob("readings.db*"):
                path.unlink(missing_ok=True)
            for folder in ("api-metrics", "pool-metrics"):
                shutil.rmtree(workdir / folder, ignore_errors=True)
