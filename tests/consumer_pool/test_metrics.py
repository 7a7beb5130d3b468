"""observe_many gives exactly the series that one observe() per value gives (multiprocess mode)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from harness.process import ROOT

SCRIPT = textwrap.dedent(
    """
    from prometheus_client import CollectorRegistry, Histogram, generate_latest, multiprocess
    from consumer_pool.metrics import observe_many

    one = Histogram("one", "per value", buckets=(0.001, 0.01, 0.1, 1.0))
    many = Histogram("many", "in bulk", buckets=(0.001, 0.01, 0.1, 1.0))
    values = [0.0005, 0.001, 0.0011, 0.05, 0.1, 2.0, 7.0, 0.01, 0.0]
    for v in values:
        one.observe(v)
    observe_many(many, values)
    observe_many(many, [])
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    print(generate_latest(registry).decode())
    """
)


def test_observe_many_matches_observe(tmp_path: Path) -> None:
    # NOTE: a child process, so multiprocess mode is chosen before prometheus_client is imported.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    one = sorted(line[len("one") :] for line in lines if line.startswith("one_"))
    many = sorted(line[len("many") :] for line in lines if line.startswith("many_"))
    assert one == many
    assert '_bucket{le="0.001"} 3.0' in one
    assert "_count 9.0" in one
