"""The fault suite: each scenario under open-loop load, the same invariants on its readings
(harness/chaos.py). RELIABILITY.md has the measured tables."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from harness.chaos import Pipeline, Verdict, kill9, pool_workers
from harness.cluster import Cluster
from harness.openloop import OpenLoop
from harness.poll import wait_until

pytestmark = pytest.mark.chaos

Scenario = Callable[..., Verdict]


def no_problems(verdict: Verdict) -> None:
    assert not verdict.problems(), "\n".join(verdict.problems())


@pytest.mark.chaos_ci
def test_leader_kill9_five_times(scenario: Scenario, kafka_cluster: Cluster) -> None:
    """The leader of partition 0 killed with -9, five times in a row, each time restarted."""

    def fault(p: Pipeline, load: OpenLoop) -> None:
        for _ in range(5):
            kafka_cluster.kill(kafka_cluster.leader(p.topic, 0))
            time.sleep(3)
            kafka_cluster.start()
            wait_until("all replicas back in sync", lambda: kafka_cluster.fully_replicated(p.topic), 90)

    no_problems(scenario(fault))


@pytest.mark.chaos_ci
def test_worker_paused_past_session_timeout(scenario: Scenario) -> None:
    """A pool worker SIGSTOPped 15 s (session timeout 10 s), then resumed: the zombie's
    partitions move, its late commit is refused, nothing is lost or stored twice."""

    def fault(p: Pipeline, load: OpenLoop) -> None:
        worker = pool_workers(p.pools[0])[0]
        os.kill(worker, signal.SIGSTOP)
        try:
            time.sleep(15)
        finally:
            os.kill(worker, signal.SIGCONT)

    no_problems(scenario(fault))


@pytest.mark.chaos_ci
def test_api_kill9_mid_stream(scenario: Scenario) -> None:
    """The API (gunicorn and its workers) killed with -9 under load, then started again."""

    def fault(p: Pipeline, load: OpenLoop) -> None:
        assert p.api is not None
        kill9(p.api)
        time.sleep(3)
        p.start_api()

    no_problems(scenario(fault))
