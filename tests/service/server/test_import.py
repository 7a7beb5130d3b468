"""Importing the API's modules starts nothing (like Falcon's `asgi.py`): no thread, no socket,
no metric. The worker builds its producer, tail and store at the ASGI lifespan's startup, and
registers its metrics then, after gunicorn's master set the metrics folder.

Each import runs in a fresh interpreter pointed at the real broker, so a Kafka client created
at import would show as librdkafka's threads and sockets (counted by the kernel, /proc/self).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from harness.process import ROOT

PROBE = """
import importlib, json, os, sys, time

def threads():
    return len(os.listdir("/proc/self/task"))

def sockets():
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            found += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return found

before = threads(), sockets()
importlib.import_module(sys.argv[1])
time.sleep(1.0)  # what a thread started at import would do in that time: connect
registered = []
if "prometheus_client" in sys.modules:
    from prometheus_client import REGISTRY
    registered = sorted(n for n in REGISTRY._names_to_collectors if n.startswith("sensor_"))
print(json.dumps({
    "threads": threads() - before[0],
    "sockets": sockets() - before[1],
    "prometheus_client": "prometheus_client" in sys.modules,
    "registered": registered,
}))
"""


def probe(module: str, env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", ["service.server.asgi", "service.app", "pipeline.stages"])
def test_importing_starts_no_thread_opens_no_socket_registers_no_metric(
    module: str, pipeline_env: dict[str, str]
) -> None:
    env = {**os.environ, **pipeline_env}
    env.pop("PROMETHEUS_MULTIPROC_DIR")  # as in a process that has not chosen its folder yet
    assert probe(module, env) == {"threads": 0, "sockets": 0, "prometheus_client": False, "registered": []}


def test_the_probe_sees_a_kafka_client(pipeline_env: dict[str, str], tmp_path) -> None:
    """The check can fail: a producer built at import shows as threads, sockets and metrics."""
    (tmp_path / "eager.py").write_text(
        "from pipeline.settings import Settings\n"
        "from service.ingest.producer import ReadingProducer\n"
        "settings = Settings.from_env()\n"
        "PRODUCER = ReadingProducer(settings.kafka, settings.api)\n"
    )
    env = {**os.environ, **pipeline_env, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    env.pop("PROMETHEUS_MULTIPROC_DIR")
    seen = probe("eager", env)
    assert seen["threads"] > 0 and seen["sockets"] > 0 and seen["registered"], seen
