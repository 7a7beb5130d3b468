"""The multiprocess metrics folder of a process tree: chosen and put in the environment here.

prometheus-client picks its mode (one process, or a folder shared by every process) when it is
first imported, from PROMETHEUS_MULTIPROC_DIR. So the parent (gunicorn's master, the pool's
supervisor) calls `use()` before anything imports the client, and the workers inherit the
variable. The API and the pool keep separate folders (docs/contract.md, "Metrics").
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from pipeline.settings import ApiSettings, PoolSettings

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def api_folder(api: ApiSettings) -> str:
    """PROMETHEUS_MULTIPROC_DIR, or a temp folder keyed by the API's port."""
    return api.prometheus_multiproc_dir or os.path.join(tempfile.gettempdir(), f"sensor-api-metrics-{api.api_port}")


def pool_folder(pool: PoolSettings) -> str:
    """CONSUMER_METRICS_DIR, or a temp folder keyed by the pool's metrics port."""
    return pool.consumer_metrics_dir or os.path.join(
        tempfile.gettempdir(), f"sensor-pool-metrics-{pool.consumer_metrics_port}"
    )


def use(folder: str) -> None:
    """Point prometheus-client at `folder`; raises RuntimeError if the client was imported with
    another one already (its metrics would go elsewhere, silently)."""
    if "prometheus_client" in sys.modules and os.environ.get(VARIABLE) != folder:
        raise RuntimeError(f"prometheus_client was imported before {VARIABLE} was set to {folder}")
    os.environ[VARIABLE] = folder


def clear(folder: str) -> None:
    """Start a run with an empty folder (the dead processes' files of a previous run go)."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
