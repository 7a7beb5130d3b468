"""The fault suite's cluster (three nodes in network namespaces) and its scenario runner.

`make chaos` runs every scenario (CHAOS_ALL=1); `make test` runs the ones marked `chaos_ci`.
The namespaces are named CHAOS_NET_PREFIX-nN (default s13) on CHAOS_SUBNET (10.213.0); they
are made for the session and removed afterwards, even when a scenario fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.chaos import Pipeline, Verdict, check
from harness.cluster import Cluster, cluster
from harness.netns import usable
from harness.openloop import OpenLoop
from harness.process import unique

pytestmark = pytest.mark.integration

RATE = 100  # readings/s, open loop
WARM_UP_S = 5
TAIL_S = 15  # load goes on this long after the fault healed


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("CHAOS_ALL") == "1":
        return
    for item in items:
        if item.get_closest_marker("chaos") and not item.get_closest_marker("chaos_ci"):
            item.add_marker(pytest.mark.skip(reason="full fault suite: make chaos (CHAOS_ALL=1)"))


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    why = usable()
    assert why is None, f"the fault suite needs network namespaces as root: {why}"
    prefix = os.environ.get("CHAOS_NET_PREFIX", "s13")
    subnet = os.environ.get("CHAOS_SUBNET", "10.213.0")
    with cluster(prefix, subnet, tmp_path_factory.mktemp("cluster")) as kafka:
        yield kafka
    assert not kafka.net.leftovers(), f"namespaces or links left behind: {kafka.net.leftovers()}"


Fault = Callable[[Pipeline, OpenLoop], None]


@pytest.fixture
def scenario(kafka_cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., Verdict]:
    """Run one fault under open-loop load and return the verdict on the run's own readings.

    `fault(pipeline, load)` injects the fault and returns once it has healed; the load goes
    on for TAIL_S after that.
    """

    def run(fault: Fault, rate: float = RATE, pools: int = 1, extra_env: dict[str, str] | None = None) -> Verdict:
        name = request.node.name.removeprefix("test_")
        pipeline = Pipeline(kafka_cluster.bootstrap, unique(name.replace("_", "")[:12]), tmp_path, extra_env)
        try:
            for _ in range(pools):
                pipeline.start_pool()
            pipeline.start_api()
            with OpenLoop(pipeline.api_url, pipeline.run_id, rate) as load:
                time.sleep(WARM_UP_S)
                fault(pipeline, load)
                healed = load.elapsed()
                time.sleep(TAIL_S)
                outcomes = load.stop()
            ended = time.monotonic()
            command = f"CHAOS_ALL=1 .venv/bin/python -m pytest tests/chaos -k {request.node.name}"
            verdict = check(name, pipeline, outcomes, healed, ended, command)
        finally:
            try:
                kafka_cluster.wait_healthy(pipeline.topic)
            finally:
                pipeline.stop()
        return verdict

    return run
