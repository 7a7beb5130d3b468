"""The fault suite's cluster (three nodes in network namespaces) and its scenario runner.

`make chaos` runs every scenario (CHAOS_ALL=1); `make test` runs the ones marked `chaos_ci`.
The namespaces are named CHAOS_NET_PREFIX-nN (default s13) on CHAOS_SUBNET (10.213.0); they
are made for the scenarios and removed afterwards, even when a scenario fails.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.chaos import REPORTS, Pipeline, Verdict, check
from harness.cluster import Cluster, cluster
from harness.netns import usable
from harness.openloop import OpenLoop
from harness.process import unique

# NOTE: pytestmark in a conftest marks nothing; the test modules carry the integration mark.

RATE = 50  # readings/s, open loop (2 shared cores also run 3 brokers, the API and the pool)
WARM_UP_S = 5
TAIL_S = 15  # load goes on this long after the fault healed


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("CHAOS_ALL") == "1":
        return
    for item in items:
        if item.get_closest_marker("chaos") and not item.get_closest_marker("chaos_ci"):
            item.add_marker(pytest.mark.skip(reason="full fault suite: make chaos (CHAOS_ALL=1)"))


# NOTE: module scope: the three brokers go as soon as the scenarios are done, not at the end of
# `make test`, whose other tests would otherwise share two cores with them.
@pytest.fixture(scope="module")
def kafka_cluster() -> Iterator[Cluster]:
    why = usable()
    assert why is None, f"the fault suite needs network namespaces as root: {why}"
    prefix = os.environ.get("CHAOS_NET_PREFIX", "s13")
    subnet = os.environ.get("CHAOS_SUBNET", "10.213.0")
    # NOTE: not under pytest's tmp_path: another pytest run on the machine prunes old ones.
    run_dir = Path(tempfile.mkdtemp(prefix="chaos-cluster-"))
    try:
        with cluster(prefix, subnet, run_dir) as kafka:
            yield kafka
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    assert not kafka.net.leftovers(), f"namespaces or links left behind: {kafka.net.leftovers()}"


Fault = Callable[[Pipeline, OpenLoop], str | None]  # returns notes for the report, if any


@pytest.fixture
def scenario(kafka_cluster: Cluster, request: pytest.FixtureRequest) -> Callable[..., Verdict]:
    """Run one fault under open-loop load and return the verdict on the run's own readings.

    `fault(pipeline, load)` injects the fault and returns once it has healed; the load goes
    on for TAIL_S after that.
    """

    def run(fault: Fault, rate: float = RATE, pools: int = 1, extra_env: dict[str, str] | None = None) -> Verdict:
        name = request.node.name.removeprefix("test_")
        # The logs stay in reports/chaos/<scenario>/ for RELIABILITY.md and for a failure.
        workdir = REPORTS / name
        shutil.rmtree(workdir, ignore_errors=True)
        pipeline = Pipeline(kafka_cluster.bootstrap, unique(name.replace("_", "")[:12]), workdir, extra_env)
        try:
            for _ in range(pools):
                pipeline.start_pool()
            pipeline.start_api()
            with OpenLoop(pipeline.api_url, pipeline.run_id, workdir / "outcomes.jsonl", rate) as load:
                time.sleep(WARM_UP_S)
                notes = fault(pipeline, load) or ""
                healed = load.elapsed()
                time.sleep(TAIL_S)
                outcomes = load.stop()
            ended = time.monotonic()
            command = f"CHAOS_ALL=1 .venv/bin/python -m pytest tests/chaos -k {request.node.name}"
            verdict = check(name, pipeline, outcomes, healed, ended, command, notes)
        finally:
            try:
                kafka_cluster.wait_healthy(pipeline.topic)
            finally:
                pipeline.stop()
                for path in workdir.glob("readings.db*"):
                    path.unlink()
                for path in workdir.glob("*-metrics-*"):
                    shutil.rmtree(path, ignore_errors=True)
        return verdict

    return run
