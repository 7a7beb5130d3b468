"""The fault suite's cluster (three nodes in network namespaces) and its scenario runner.

`make chaos` runs every scenario (CHAOS_ALL=1); CHAOS_SCENARIOS=a,b runs those (test names
without `test_`). `make test` runs the ones marked `chaos_ci` plus ROTATING of the others,
chosen by the UTC day (a fixed rotation: every scenario runs within a few days); the choice
is printed with the CHAOS_SCENARIOS value that reproduces it.
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

from harness.chaos import REPORTS, TAIL_S, Pipeline, Verdict, check
from harness.cluster import Cluster, cluster
from harness.netns import usable
from harness.openloop import OpenLoop
from harness.process import unique

# NOTE: pytestmark in a conftest marks nothing; the test modules carry the integration mark.

RATE = 50  # readings/s, open loop (2 shared cores also run 3 brokers, the API and the pool)
WARM_UP_S = 5
ROTATING = 2  # scenarios not marked chaos_ci that `make test` runs each day


def rotation(names: list[str], day: int) -> list[str]:
    """The `ROTATING` scenarios of `names` (in file order) for UTC day number `day`."""
    if not names:
        return []
    start = (day * ROTATING) % len(names)
    return [names[(start + k) % len(names)] for k in range(min(ROTATING, len(names)))]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CHAOS_ALL") == "1":
        return
    scenarios = [item for item in items if item.get_closest_marker("chaos")]
    if not scenarios:
        return
    chosen = os.environ.get("CHAOS_SCENARIOS", "").strip()
    if chosen:
        wanted = {name.strip().removeprefix("test_") for name in chosen.split(",") if name.strip()}
        reason = "not in CHAOS_SCENARIOS"
    else:
        # NOTE: a check without load (no `scenario` fixture, e.g. netem's) costs seconds: always run.
        loaded = lambda i: "scenario" in getattr(i, "fixturenames", ())  # noqa: E731
        always = [i.name.removeprefix("test_") for i in scenarios if i.get_closest_marker("chaos_ci") or not loaded(i)]
        others = [i.name.removeprefix("test_") for i in scenarios if loaded(i) and not i.get_closest_marker("chaos_ci")]
        wanted = set(always) | set(rotation(others, int(time.time() // 86_400)))
        reason = "not in today's rotation (CHAOS_ALL=1: every scenario)"
        order = [i.name.removeprefix("test_") for i in scenarios if i.name.removeprefix("test_") in wanted]
        message = f"[chaos] today's scenarios; reproduce with CHAOS_SCENARIOS={','.join(order)}"
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(message)
    for item in scenarios:
        if item.name.removeprefix("test_") not in wanted:
            item.add_marker(pytest.mark.skip(reason=reason))


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
    on for TAIL_S (longer than the recovery bound) after that. The heal time and the sends
    are on one clock, time.monotonic().
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
                healed_at = time.monotonic()
                time.sleep(TAIL_S)
                outcomes = load.stop()
            ended = time.monotonic()
            command = f"CHAOS_SCENARIOS={name} .venv/bin/python -m pytest tests/chaos"
            verdict = check(name, pipeline, outcomes, load.sent, healed_at, ended, command, notes)
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
