"""CONSUMER_BACKEND=ray: the pool's workers as Ray actors (consumer_pool/ray_actor.py), so the
pool runs on a Ray cluster. This driver supervises them as consumer_pool/supervisor.py
supervises worker processes, with the same rules and exit codes:

- Ray restarts a dead actor's process (`max_restarts`); the driver lets the new incarnation
  rejoin the group after the supervisor's jittered backoff and counts it in
  sensor_consumer_worker_restarts_total. An actor with no heartbeat for WORKER_TIMEOUT_S is
  killed, and so restarted.
- A worker that cannot boot stops the pool (WORKER_BOOT_ERROR) instead of a restart loop.
- SIGTERM/SIGINT drains every actor (finish the batch, commit, leave the group) within
  GRACEFUL_TIMEOUT_S, then kills; a second signal kills at once.
- Metrics are served by the driver: each actor keeps prometheus-client multiprocess files in
  a folder on its own node; about once a second the driver fetches them and writes them into
  the pool's folder under a name of their slot and pid, so the same MultiProcessCollector
  serves the same names (consumer_pool/metrics.py) as with processes.

RAY_ADDRESS empty starts a local Ray for the run (no dashboard, ports chosen by Ray, its own
temp folder, stopped at exit); otherwise the driver connects to that cluster.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
import zlib
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# NOTE: Ray reads this at import. Its default folds lines that differ only in numbers
# ("worker 0 booted" / "worker 1 booted") into one; each worker's lines must reach the log.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from consumer_pool import metrics
from consumer_pool.errors import EXIT_OK, WORKER_BOOT_ERROR
from consumer_pool.ray_actor import MAX_CONCURRENCY, Snapshot, WorkerActor
from consumer_pool.supervisor import (
    GRACEFUL_TIMEOUT_S,
    SIGNALS,
    WORKER_TIMEOUT_S,
    schedule_restart,
)
from pipeline.settings import Settings

log = logging.getLogger("consumer_pool.supervisor")

MAX_RESTARTS = -1  # Ray restarts a dead actor's process without limit; the driver paces it
METRICS_INTERVAL_S = 1.0
SNAPSHOT_TIMEOUT_S = 5.0  # a drained actor's last snapshot
# The actors pass only settings and metric files; Ray's default is 30 % of the machine's memory.
LOCAL_OBJECT_STORE_BYTES = 100 * 2**20


@dataclass
class ActorSlot:
    """One worker position: its actor, the run() call in flight and its restart history."""

    index: int
    actor: Any
    running: Any = None  # ObjectRef of run(), None while waiting to restart
    probe: Any = None  # ObjectRef of a snapshot() asked of a restarting actor: is it up?
    pending: Any = None  # ObjectRef of the metrics snapshot() in flight
    seen: float = 0.0  # when the actor last answered a snapshot()
    pid: int = 0  # the actor's process, from its last snapshot
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    closed: bool = False  # its last metrics fetched and its folder removed (after a drain)


class RayPool:
    """Keeps CONSUMER_WORKERS actors consuming until told to stop."""

    def __init__(self, settings: Settings, metrics_folder: str) -> None:
        self.settings = settings
        self.folder = metrics_folder
        self.run_id = uuid.uuid4().hex[:12]
        self.signals: deque[int] = deque()
        self.local_temp_dir: str | None = None
        self.slots: list[ActorSlot] = []
        self._metrics_due = 0.0

    # --- Ray -------------------------------------------------------------------------

    def start_ray(self) -> None:
        address = self.settings.pool.ray_address or "local"
        _check_reachable(address)
        options: dict[str, Any] = {"include_dashboard": False, "configure_logging": False, "log_to_driver": True}
        if address == "local":
            self.local_temp_dir = tempfile.mkdtemp(prefix="ray-pool-")
            options.update(
                num_cpus=max(os.cpu_count() or 1, self.settings.pool.consumer_workers),
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                _temp_dir=self.local_temp_dir,
                _node_ip_address="127.0.0.1",
            )
        # NOTE: Ray's own processes use prometheus-client too; a local Ray must not inherit
        # the pool's folder, or its metrics would be served as the pool's.
        with _unset_env("PROMETHEUS_MULTIPROC_DIR"):
            ray.init(address=address, **options)
        log.info(
            "ray: %s (%s), %d actors",
            "local Ray started" if self.local_temp_dir else f"connected to {address}",
            f"temp dir {self.local_temp_dir}" if self.local_temp_dir else ray.get_runtime_context().gcs_address,
            self.settings.pool.consumer_workers,
        )

    def stop_ray(self) -> None:
        """Kill the actors (a drained one has removed its metrics folder; the others are asked
        to, best effort), stop or leave Ray, remove what a local Ray left on this machine."""
        unclosed = [s.actor.close.remote() for s in self.slots if not s.closed]
        if unclosed:
            ray.wait(unclosed, num_returns=len(unclosed), timeout=SNAPSHOT_TIMEOUT_S)
        for slot in self.slots:
            ray.kill(slot.actor, no_restart=True)
        ray.shutdown()
        if self.local_temp_dir:
            shutil.rmtree(self.local_temp_dir, ignore_errors=True)
            for slot in self.slots:
                shutil.rmtree(self.actor_folder(slot.index), ignore_errors=True)

    def actor_folder(self, index: int) -> str:
        """The actor's own multiprocess folder, on its node (the driver's temp dir path)."""
        return os.path.join(tempfile.gettempdir(), f"sensor-pool-actor-{self.run_id}-{index}")

    def create_actor(self, index: int) -> Any:
        folder = self.actor_folder(index)
        return (
            ray.remote(WorkerActor)
            .options(
                name=f"consumer-worker-{index}-{self.run_id}",
                max_restarts=MAX_RESTARTS,
                max_task_retries=0,
                max_concurrency=MAX_CONCURRENCY,
                num_cpus=1,
                scheduling_strategy="SPREAD",
                runtime_env={"env_vars": {"PROMETHEUS_MULTIPROC_DIR": folder}},
            )
            .remote(self.settings, index, folder)
        )

    # --- signals ---------------------------------------------------------------------

    def install_signals(self) -> None:
        for sig in SIGNALS:
            signal.signal(sig, lambda signum, frame: self.signals.append(signum))

    # --- main loop -------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until a signal or a boot failure; returns the process exit code."""
        try:
            self.start_ray()
        except (ConnectionError, RuntimeError, ValueError) as e:  # what ray.init raises for a bad address
            log.error("cannot start or reach Ray (RAY_ADDRESS=%r): %s", self.settings.pool.ray_address, e)
            ray.shutdown()
            return WORKER_BOOT_ERROR
        # NOTE: after ray.init, which installs its own SIGTERM handler in the driver.
        self.install_signals()
        try:
            self.slots = [ActorSlot(i, self.create_actor(i)) for i in range(self.settings.pool.consumer_workers)]
            for slot in self.slots:
                self.start_worker(slot)
            return self.supervise()
        finally:
            self.stop_ray()

    def supervise(self) -> int:
        while True:
            self.wait(0.5)
            if self.signals:
                return self.handle_stop(self.signals.popleft())
            if self.reap_workers():
                log.error("a worker failed to boot; stopping the pool (exit %d)", WORKER_BOOT_ERROR)
                self.stop_workers()
                return WORKER_BOOT_ERROR
            self.pull_metrics()
            self.manage_workers()

    def wait(self, timeout: float) -> None:
        """Until a run() returns or the timeout (signals are seen after it: at most `timeout` late)."""
        running = [s.running for s in self.slots if s.running is not None]
        if running:
            ray.wait(running, num_returns=1, timeout=timeout)
        else:
            time.sleep(timeout)

    def handle_stop(self, signum: int) -> int:
        log.info("received %s: draining workers", signal.Signals(signum).name)
        if signum == signal.SIGQUIT:
            return 1
        return EXIT_OK if self.stop_workers() else 1

    # --- workers ---------------------------------------------------------------------

    def start_worker(self, slot: ActorSlot) -> None:
        slot.running = slot.actor.run.remote()
        slot.started = slot.seen = time.monotonic()
        log.info("booting worker %d (actor %s)", slot.index, slot.actor._actor_id.hex())
        self.update_alive()

    def reap_workers(self) -> bool:
        """Collect finished run() calls, schedule restarts; True when a worker failed to boot."""
        boot_failed = False
        for slot in self.slots:
            if slot.running is None or not ray.wait([slot.running], timeout=0)[0]:
                continue
            try:
                code = ray.get(slot.running)
            except RayActorError as e:
                code = -1
                log.error("worker %d (pid %d) died: %s", slot.index, slot.pid, str(e).splitlines()[0])
            slot.running = slot.pending = None
            self.mark_dead(slot)
            if code == WORKER_BOOT_ERROR:
                log.error("worker %d failed to boot", slot.index)
                boot_failed = True
                continue
            if code == EXIT_OK:
                log.warning("worker %d (pid %d) stopped unexpectedly", slot.index, slot.pid)
            schedule_restart(slot)
        self.update_alive()
        return boot_failed

    def manage_workers(self) -> None:
        """Let restarted actors rejoin once their backoff has elapsed and their new process
        answers (a call made while Ray is still restarting it fails; that is no new death)."""
        now = time.monotonic()
        for slot in self.slots:
            if slot.running is not None or now < slot.restart_at:
                continue
            if slot.probe is None:
                slot.probe = slot.actor.snapshot.remote()
                continue
            if not ray.wait([slot.probe], timeout=0)[0]:
                continue
            probe, slot.probe = slot.probe, None
            try:
                ray.get(probe)
            except RayActorError:
                continue  # still restarting: ask again on the next loop
            metrics.RESTARTS.inc()
            self.start_worker(slot)

    def update_alive(self) -> None:
        metrics.WORKERS_ALIVE.set(sum(1 for s in self.slots if s.running is not None))

    # --- metrics ---------------------------------------------------------------------

    def pull_metrics(self) -> None:
        """About once a second: every running actor's metric files into the pool's folder.
        An actor whose loop stopped beating, or that stopped answering at all (stuck holding
        the GIL), for WORKER_TIMEOUT_S is killed, and so restarted by Ray."""
        now = time.monotonic()
        if now < self._metrics_due:
            return
        self._metrics_due = now + METRICS_INTERVAL_S
        live = [s for s in self.slots if s.running is not None]
        for slot in live:
            if slot.pending is None:  # NOTE: one call in flight per actor, so none pile up on a stuck one
                slot.pending = slot.actor.snapshot.remote()
        pending = [s.pending for s in live]
        ready = set(ray.wait(pending, num_returns=len(pending), timeout=METRICS_INTERVAL_S)[0]) if pending else set()
        for slot in live:
            if slot.pending in ready:
                ref, slot.pending = slot.pending, None
                try:
                    snapshot = ray.get(ref)
                except RayError:
                    continue  # died meanwhile: reaped on the next loop
                slot.seen = time.monotonic()
                self.store_snapshot(slot, snapshot)
                stuck = snapshot[1]
            else:
                stuck = time.monotonic() - slot.seen
            if stuck > WORKER_TIMEOUT_S:
                log.error(
                    "worker %d (pid %d) is stuck (no heartbeat for %.0fs); killing it", slot.index, slot.pid, stuck
                )
                slot.seen = time.monotonic()  # NOTE: once; Ray's restart ends its run() call
                ray.kill(slot.actor, no_restart=False)

    def store_snapshot(self, slot: ActorSlot, snapshot: Snapshot) -> None:
        """Write an actor's files as `<kind>_r<slot>p<pid>.db` (atomically: a scrape may read
        them meanwhile). Files of earlier incarnations stay: their counts are the pool's."""
        pid, _, files = snapshot
        if pid != slot.pid:
            log.info("worker %d runs in pid %d", slot.index, pid)
            slot.pid = pid
        live_now = set()
        for name, data in files.items():
            kind, _, file_pid = name[: -len(".db")].rpartition("_")
            target = os.path.join(self.folder, f"{kind}_r{slot.index}p{file_pid}.db")
            if kind.startswith("gauge_live"):
                live_now.add(target)
            with open(target + ".tmp", "wb") as f:
                f.write(zlib.decompress(data))
            os.replace(target + ".tmp", target)
        for path in self._live_files(slot):
            if path not in live_now:
                os.remove(path)

    def mark_dead(self, slot: ActorSlot) -> None:
        """A dead actor's live gauges (lag) leave the aggregate, as a dead process's do."""
        for path in self._live_files(slot):
            os.remove(path)

    def _live_files(self, slot: ActorSlot) -> list[str]:
        return glob.glob(os.path.join(self.folder, f"gauge_live*_r{slot.index}p*.db"))

    # --- stopping --------------------------------------------------------------------

    def stop_workers(self, timeout: float = GRACEFUL_TIMEOUT_S) -> bool:
        """Ask every actor to drain and wait; a second signal or the timeout kills.
        Returns True when every running worker stopped on its own."""
        running = [s for s in self.slots if s.running is not None]
        for slot in running:
            slot.actor.stop.remote()
        deadline = time.monotonic() + timeout
        clean = True
        while any(s.running is not None for s in running):
            if self.signals:
                log.warning("received %s while draining: killing workers", signal.Signals(self.signals.popleft()).name)
                return False
            if time.monotonic() > deadline:
                log.error("workers did not stop within %.0fs: killing them", timeout)
                return False
            self.wait(0.5)
            for slot in running:
                if slot.running is None or not ray.wait([slot.running], timeout=0)[0]:
                    continue
                try:
                    code = ray.get(slot.running)
                except RayActorError as e:
                    code = -1
                    log.error("worker %d (pid %d) died while draining: %s", slot.index, slot.pid, e)
                if code == EXIT_OK:  # NOTE: run() returns after the worker committed and closed its consumer
                    log.info("worker %d (pid %d) stopped: committed and left the group", slot.index, slot.pid)
                    self.close_actor(slot)
                else:
                    clean = False
                slot.running = None
                self.mark_dead(slot)
        self.update_alive()
        return clean

    def close_actor(self, slot: ActorSlot) -> None:
        """Fetch a drained actor's last counts, then let it remove its node-local folder."""
        try:
            self.store_snapshot(slot, ray.get(slot.actor.close.remote(), timeout=SNAPSHOT_TIMEOUT_S))
            slot.closed = True
        except (RayError, GetTimeoutError) as e:
            log.warning("worker %d: last metrics not fetched: %s", slot.index, e)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """A `host:port` address must accept a connection: ray.init retries an unreachable GCS
    without end, where the pool must stop (exit 3). `local`, `auto` and `ray://` pass."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in address:
        return
    try:
        socket.create_connection((host, int(port)), timeout).close()
    except OSError as e:
        raise ConnectionError(f"nothing answers at {address}: {e}") from e


@contextmanager
def _unset_env(name: str) -> Iterator[None]:
    """Without `name` in the environment for the block (child processes started in it)."""
    saved = os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved
