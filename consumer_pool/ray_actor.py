"""One pool worker as a Ray actor: the same `worker.boot` and `Worker.run` loop as a worker
process, one consumer of CONSUMER_GROUP per actor. Driven by consumer_pool/ray_backend.py.

Ray imports this module in the actor's process before `__init__` runs, so it imports nothing
of the pool at the top: prometheus-client takes the actor's own multiprocess folder from
PROMETHEUS_MULTIPROC_DIR (set by the actor's runtime_env) when consumer_pool.metrics is first
imported, and that folder must exist by then. The folder is on the actor's node; the driver
fetches its files (`snapshot`) and serves them with the rest of the pool's metrics.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time
import zlib
from typing import TYPE_CHECKING

from consumer_pool.errors import EXIT_OK, WORKER_BOOT_ERROR

if TYPE_CHECKING:
    from consumer_pool.worker import Worker
    from pipeline.settings import Settings

log = logging.getLogger("consumer_pool.worker")

# NOTE: run() holds one thread for the actor's life; stop() and snapshot() need the others.
MAX_CONCURRENCY = 3

Snapshot = tuple[int, float, dict[str, bytes]]  # pid, seconds since the last heartbeat, metric files


class WorkerActor:
    """A worker process's life in an actor: boot, consume until stop(), drain."""

    def __init__(self, settings: Settings, slot: int, metrics_folder: str) -> None:
        from consumer_pool import logs

        self.settings = settings
        self.slot = slot
        self.folder = metrics_folder
        self.worker: Worker | None = None
        self.stopping = False
        self.beat_at = time.monotonic()
        os.makedirs(metrics_folder, exist_ok=True)
        logs.configure(f"worker-{slot}", settings.log_level)
        # An earlier incarnation of this slot on this node is dead: its live gauges (lag) go,
        # its counters and histograms stay (they are the pool's totals, as with processes).
        for path in glob.glob(os.path.join(metrics_folder, "gauge_live*_*.db")):
            if not path.endswith(f"_{os.getpid()}.db"):
                os.remove(path)

    def run(self) -> int:
        """Boot and consume until stop(); returns what a worker process would exit with
        (EXIT_OK after a drain, WORKER_BOOT_ERROR). A crash ends the process (Ray restarts it)."""
        from confluent_kafka import KafkaException

        from consumer_pool import worker
        from consumer_pool.errors import BootError

        try:
            booted = worker.boot(self.settings, self.slot, self.beat)
        except (BootError, KafkaException, ValueError) as e:
            log.error("worker %d failed to boot: %s", self.slot, e)
            return WORKER_BOOT_ERROR
        except Exception:  # actor boundary: any failure before the loop is a boot failure
            log.exception("worker %d failed to boot", self.slot)
            return WORKER_BOOT_ERROR
        self.worker = booted
        if self.stopping:  # stop() came while booting
            booted.stop()
        log.info("worker %d booted (sink %s, pid %d)", self.slot, booted.sink.name, os.getpid())
        try:
            booted.run()
        except Exception:  # actor boundary: as a worker process, die; Ray restarts the process
            log.exception("worker %d crashed; its uncommitted batch will be replayed", self.slot)
            logging.shutdown()
            os._exit(1)
        return EXIT_OK

    def beat(self) -> None:
        self.beat_at = time.monotonic()

    def stop(self) -> None:
        """SIGTERM's counterpart: finish the batch in hand, commit, leave the group."""
        self.stopping = True
        if self.worker is not None:
            self.worker.stop()

    def snapshot(self) -> Snapshot:
        """This slot's prometheus multiprocess files, compressed (they are mostly zeros)."""
        files: dict[str, bytes] = {}
        for path in glob.glob(os.path.join(self.folder, "*.db")):
            try:
                with open(path, "rb") as f:
                    files[os.path.basename(path)] = zlib.compress(f.read(), 1)
            except FileNotFoundError:
                continue
        return os.getpid(), time.monotonic() - self.beat_at, files

    def close(self) -> Snapshot:
        """The last snapshot, then the node-local folder is removed (after a drain)."""
        last = self.snapshot()
        shutil.rmtree(self.folder, ignore_errors=True)
        return last
