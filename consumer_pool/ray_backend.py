"""CONSUMER_BACKEND=ray: the pool's workers as Ray actors (consumer_pool/ray_actor.py), so the
pool runs on a Ray cluster. `RayLauncher` is the supervisor's backend (consumer_pool/supervisor.py
runs the one loop, as for worker processes), so the rules and exit codes are the same:

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
import select
import shutil
import socket
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# NOTE: Ray reads this at import. Its default folds lines that differ only in numbers
# ("worker 0 booted" / "worker 1 booted") into one; each worker's lines must reach the log.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from consumer_pool.errors import BootError
from consumer_pool.ray_actor import MAX_CONCURRENCY, Snapshot, WorkerActor
from consumer_pool.supervisor import Exit, Slot
from pipeline.settings import Settings

log = logging.getLogger("consumer_pool.supervisor")

MAX_RESTARTS = -1  # Ray restarts a dead actor's process without limit; the driver paces it
METRICS_INTERVAL_S = 1.0
SNAPSHOT_TIMEOUT_S = 5.0  # a drained actor's last snapshot
# The actors pass only settings and metric files; Ray's default is 30 % of the machine's memory.
LOCAL_OBJECT_STORE_BYTES = 100 * 2**20


@dataclass
class Actor:
    """One slot's actor (Ray restarts its process in place) and the calls in flight to it."""

    handle: Any
    running: Any = None  # ObjectRef of run(), None while waiting to restart
    probe: Any = None  # ObjectRef of a snapshot() asked of a restarting actor: is it up?
    pending: Any = None  # ObjectRef of the metrics snapshot() in flight
    seen: float = 0.0  # when the actor last answered a snapshot()
    silent: float = 0.0  # seconds without a heartbeat, as of the last watch()
    closed: bool = False  # its last metrics fetched and its folder removed (after a drain)


class RayLauncher:
    """Starts or joins Ray, keeps one actor per slot and drives its run() call."""

    tick_s = 0.5  # NOTE: ray.wait cannot watch the wake-up pipe: a signal is seen at most this late
    # NOTE: the driver's line; the actors' own last lines may not be forwarded before Ray stops
    drained = "stopped: committed and left the group"

    def __init__(self, settings: Settings, metrics_folder: str) -> None:
        self.settings = settings
        self.folder = metrics_folder
        self.run_id = uuid.uuid4().hex[:12]
        self.local_temp_dir: str | None = None
        self.actors: list[Actor] = []
        self._metrics_due = 0.0

    # --- Ray -------------------------------------------------------------------------

    def open(self) -> None:
        """Start a local Ray or connect to RAY_ADDRESS, then create one actor per slot."""
        try:
            self.start_ray()
        except (ConnectionError, RuntimeError, ValueError) as e:  # what ray.init raises for a bad address
            ray.shutdown()
            raise BootError(f"cannot start or reach Ray (RAY_ADDRESS={self.settings.pool.ray_address!r}): {e}") from e
        self.actors = [Actor(self.create_actor(i)) for i in range(self.settings.pool.consumer_workers)]

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

    def close(self) -> None:
        """Kill the actors (a drained one has removed its metrics folder; the others are asked
        to, best effort), stop or leave Ray, remove what a local Ray left on this machine."""
        unclosed = [a.handle.close.remote() for a in self.actors if not a.closed]
        if unclosed:
            ray.wait(unclosed, num_returns=len(unclosed), timeout=SNAPSHOT_TIMEOUT_S)
        for actor in self.actors:
            ray.kill(actor.handle, no_restart=True)
        ray.shutdown()
        if self.local_temp_dir:
            shutil.rmtree(self.local_temp_dir, ignore_errors=True)
            for index in range(len(self.actors)):
                shutil.rmtree(self.actor_folder(index), ignore_errors=True)

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

    # --- one worker ------------------------------------------------------------------

    def spawn(self, slot: Slot) -> str:
        actor = self.actors[slot.index]
        actor.running = actor.handle.run.remote()
        actor.seen = time.monotonic()
        actor.silent = 0.0
        return f"actor {actor.handle._actor_id.hex()}"

    def ready(self, slot: Slot) -> bool:
        """A restarted actor's new process answers (a call made while Ray is still restarting
        it fails; that is no new death: ask again on the next loop)."""
        actor = self.actors[slot.index]
        if actor.probe is None:
            actor.probe = actor.handle.snapshot.remote()
            return False
        if not ray.wait([actor.probe], timeout=0)[0]:
            return False
        probe, actor.probe = actor.probe, None
        try:
            ray.get(probe)
        except RayActorError:
            return False
        return True

    def reap(self, slot: Slot) -> Exit | None:
        actor = self.actors[slot.index]
        if actor.running is None or not ray.wait([actor.running], timeout=0)[0]:
            return None
        running, actor.running, actor.pending = actor.running, None, None
        try:
            return Exit(ray.get(running))
        except RayActorError as e:
            return Exit(1, died=str(e).splitlines()[0])

    def wait(self, slots: list[Slot], timeout: float, wake_fd: int) -> None:
        running = [self.actors[s.index].running for s in slots if self.actors[s.index].running is not None]
        if running:
            ray.wait(running, num_returns=1, timeout=timeout)
        else:
            select.select([wake_fd], [], [], timeout)

    def silent_for(self, slot: Slot) -> float:
        return self.actors[slot.index].silent

    def terminate(self, slot: Slot) -> None:
        self.actors[slot.index].handle.stop.remote()

    def kill(self, slot: Slot, final: bool) -> None:
        """Ray restarts the killed actor's process unless `final` (close() kills them all)."""
        actor = self.actors[slot.index]
        if not final:
            actor.seen = time.monotonic()  # NOTE: once; Ray's restart ends its run() call
            actor.silent = 0.0
            ray.kill(actor.handle, no_restart=False)

    def release(self, slot: Slot, drained: bool) -> None:
        """A dead actor's live gauges (lag) leave the aggregate, as a dead process's do; a
        drained one hands over its last counts first."""
        actor = self.actors[slot.index]
        actor.running = actor.pending = None
        if drained:
            self.close_actor(slot)
        for path in self._live_files(slot):
            os.remove(path)

    # --- metrics ---------------------------------------------------------------------

    def watch(self, slots: list[Slot]) -> None:
        """About once a second: every running actor's metric files into the pool's folder, and
        how long each has been silent (its loop stopped beating, or it stopped answering at
        all, stuck holding the GIL)."""
        now = time.monotonic()
        if now < self._metrics_due:
            return
        self._metrics_due = now + METRICS_INTERVAL_S
        for slot in slots:
            actor = self.actors[slot.index]
            if actor.pending is None:  # NOTE: one call in flight per actor, so none pile up on a stuck one
                actor.pending = actor.handle.snapshot.remote()
        pending = [self.actors[s.index].pending for s in slots]
        ready = set(ray.wait(pending, num_returns=len(pending), timeout=METRICS_INTERVAL_S)[0]) if pending else set()
        for slot in slots:
            actor = self.actors[slot.index]
            if actor.pending in ready:
                ref, actor.pending = actor.pending, None
                try:
                    snapshot = ray.get(ref)
                except RayError:
                    continue  # died meanwhile: reaped on the next loop
                actor.seen = time.monotonic()
                self.store_snapshot(slot, snapshot)
                actor.silent = snapshot[1]
            else:
                actor.silent = time.monotonic() - actor.seen

    def store_snapshot(self, slot: Slot, snapshot: Snapshot) -> None:
        """Write an actor's files as `<kind>_r<slot>p<pid>.db` (atomically: a scrape may read
        them meanwhile). Files of earlier incarnations stay: their counts are the pool's."""
        pid, _, files = snapshot
        if pid != slot.pid:
            log.info("worker %d runs in pid %d", slot.index, pid)
            slot.pid = pid
        live_now = set()
        for name, data in files.items():
            kind, _, writer = name[: -len(".db")].rpartition("_")  # NOTE: the pid that wrote the file
            target = os.path.join(self.folder, f"{kind}_r{slot.index}p{writer}.db")
            if kind.startswith("gauge_live"):
                live_now.add(target)
            with open(target + ".tmp", "wb") as f:
                f.write(zlib.decompress(data))
            os.replace(target + ".tmp", target)
        for path in self._live_files(slot):
            if path not in live_now:
                os.remove(path)

    def _live_files(self, slot: Slot) -> list[str]:
        return glob.glob(os.path.join(self.folder, f"gauge_live*_r{slot.index}p*.db"))

    def close_actor(self, slot: Slot) -> None:
        """Fetch a drained actor's last counts, then let it remove its node-local folder."""
        actor = self.actors[slot.index]
        try:
            self.store_snapshot(slot, ray.get(actor.handle.close.remote(), timeout=SNAPSHOT_TIMEOUT_S))
            actor.closed = True
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
