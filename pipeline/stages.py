"""The pipeline's latency budget, stage by stage: one histogram, exported by the API for its
stages and by the pool for the later ones (docs/contract.md, "Metrics").

receipt_to_produce  API: request received -> produce() called (body read, decode, validation)
produce_to_ack      API: produce() of a request's first reading -> its last delivery report
append_to_fetch     pool, per record: the broker's LogAppendTime -> the poll that returned it
fetch_to_store      pool, per batch: poll returned -> sink write done (batch wait, decode, write)
store_to_commit     pool, per batch: write done -> offsets committed (DLQ/alert flush, commit)

NOTE: nothing is registered at import: `stage_histogram()` imports prometheus-client and
registers the histogram at its first call, from service/metrics.py or consumer_pool/metrics.py,
after the process's metrics folder was set (pipeline/metrics_folder.py).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Histogram

STAGE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.2, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
STAGES = ("receipt_to_produce", "produce_to_ack", "append_to_fetch", "fetch_to_store", "store_to_commit")


@cache
def stage_histogram() -> Histogram:
    """The stage histogram of this process, registered at the first call."""
    from prometheus_client import Histogram

    return Histogram("sensor_pipeline_stage_seconds", "Latency of one pipeline stage", ["stage"], buckets=STAGE_BUCKETS)
