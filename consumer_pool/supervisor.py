"""The supervisor (gunicorn's arbiter, simplified): one loop that spawns, reaps, restarts and
stops the pool's workers, whatever runs them.

A backend is a `Launcher` (gunicorn's worker class): worker processes of this machine
(consumer_pool/process_backend.py) or Ray actors (consumer_pool/ray_backend.py). It starts,
watches, drains and kills one worker; this loop decides when. Signal handlers only queue the
signal and wake the loop. A worker that dies is restarted after a jittered backoff; one that
exits with WORKER_BOOT_ERROR stops the pool instead of a restart loop; one whose heartbeat
stopped for WORKER_TIMEOUT_S is killed (and so restarted). The first SIGTERM/SIGINT drains
(workers finish their batch, commit and leave the group); a second one, or SIGQUIT, kills.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from consumer_pool import metrics
from consumer_pool.errors import EXIT_OK, WORKER_BOOT_ERROR, BootError
from pipeline.backoff import backoff
from pipeline.settings import Settings

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
GRACEFUL_TIMEOUT_S = 30.0
WORKER_TIMEOUT_S = 120.0  # no heartbeat for this long: the worker is stuck, kill it
STABLE_AFTER_S = 30.0  # a worker that ran this long resets its slot's backoff
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
DRAIN_POLL_S = 0.5


@dataclass
class Slot:
    """One worker position in the pool: whether a worker runs in it and its restart history."""

    index: int
    live: bool = False  # spawned and not yet reaped
    pid: int = 0  # the worker's process, as far as the backend knows it (0: not yet)
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0

    def name(self) -> str:
        """How the log names its worker: "worker 1 (pid 123)", or "worker 1" before its pid is known."""
        return f"worker {self.index} (pid {self.pid})" if self.pid else f"worker {self.index}"


@dataclass(frozen=True)
class Exit:
    """How a worker ended: its exit code (negative: the signal that killed it, as
    multiprocessing reports it) and, when the backend only saw it die, what it said."""

    code: int
    died: str | None = None


class Launcher(Protocol):
    """One backend: how a worker is started, watched, drained and killed. Never blocks longer
    than asked; the supervisor's loop owns the timing, the restarts and the exit code."""

    tick_s: float  # the loop's longest wait (a backend that cannot wait on the wake-up pipe reacts this late)
    drained: str  # logged after "worker N (pid P)" when a worker exits 0 on a drain

    def open(self) -> None:
        """Prepare the backend before any worker (raises BootError when it cannot)."""

    def close(self) -> None:
        """Release the backend after the last worker (always called once open() succeeded)."""

    def spawn(self, slot: Slot) -> str:
        """Start a worker in `slot`; returns what the boot line names it by ("pid 123")."""

    def ready(self, slot: Slot) -> bool:
        """May `slot` get its worker back now (a backend may need its restart to settle)."""

    def reap(self, slot: Slot) -> Exit | None:
        """The worker's exit if it has ended (without blocking), else None."""

    def wait(self, slots: list[Slot], timeout: float, wake_fd: int) -> None:
        """Until one of the live `slots` ends, `wake_fd` is readable, or the timeout."""

    def watch(self, slots: list[Slot]) -> None:
        """Once per loop over the live slots (the Ray backend fetches metrics and heartbeats)."""

    def silent_for(self, slot: Slot) -> float:
        """Seconds since the worker in `slot` last showed that its loop runs."""

    def terminate(self, slot: Slot) -> None:
        """Ask the worker to drain: finish its batch, commit, leave the group."""

    def kill(self, slot: Slot, final: bool) -> None:
        """Kill the worker now; `final`: the pool is stopping (wait for it, no restart)."""

    def release(self, slot: Slot, drained: bool) -> None:
        """After its exit: drop the worker's live metrics (`drained`: after a clean drain)."""


def schedule_restart(slot: Slot) -> None:
    """When a worker that exited comes back: after a jittered backoff that grows with its
    consecutive failures (a worker that ran STABLE_AFTER_S starts over)."""
    lived = time.monotonic() - slot.started
    slot.failures = 1 if lived >= STABLE_AFTER_S else slot.failures + 1
    delay = backoff(slot.failures, BACKOFF_BASE_S, BACKOFF_CAP_S)
    slot.restart_at = time.monotonic() + delay
    log.info("restarting worker %d in %.2fs (consecutive failures: %d)", slot.index, delay, slot.failures)


class Supervisor:
    """Keeps CONSUMER_WORKERS workers of one backend running until told to stop."""

    def __init__(self, settings: Settings, launcher: Launcher) -> None:
        self.settings = settings
        self.launcher = launcher
        self.slots = [Slot(i) for i in range(settings.pool.consumer_workers)]
        self.signals: deque[int] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.boot_failed = False

    # --- signals ---------------------------------------------------------------------

    def install_signals(self) -> None:
        for sig in SIGNALS:
            signal.signal(sig, self._queue_signal)

    def _queue_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass

    # --- main loop -------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until a signal or a boot failure; returns the process exit code."""
        try:
            self.launcher.open()
        except BootError as e:
            log.error("%s", e)
            return WORKER_BOOT_ERROR
        try:
            # NOTE: after open(): Ray's init installs its own SIGTERM handler in the driver.
            self.install_signals()
            self.spawn_workers()
            return self.supervise()
        finally:
            self.launcher.close()

    def supervise(self) -> int:
        while True:
            self.sleep(self.launcher.tick_s)
            if self.signals:
                return self.handle_stop(self.signals.popleft())
            self.reap_workers()
            if self.boot_failed:
                log.error("a worker failed to boot; stopping the pool (exit %d)", WORKER_BOOT_ERROR)
                self.stop_workers()
                return WORKER_BOOT_ERROR
            self.launcher.watch(self.live())
            self.murder_workers()
            self.manage_workers()

    def live(self) -> list[Slot]:
        return [s for s in self.slots if s.live]

    def sleep(self, timeout: float, restarts: bool = True) -> None:
        """Wait for a signal, a worker exit, the next restart due or the timeout."""
        if restarts:  # NOTE: a restart due but not ready (a Ray actor coming back) waits a full tick
            now = time.monotonic()
            pending = [s.restart_at for s in self.slots if not s.live and s.restart_at > now]
            if pending:
                timeout = min(timeout, min(pending) - now)
        self.launcher.wait(self.live(), timeout, self._wake_r)
        try:
            os.read(self._wake_r, 512)
        except BlockingIOError:
            pass

    def handle_stop(self, signum: int) -> int:
        log.info("received %s: draining workers", signal.Signals(signum).name)
        if signum == signal.SIGQUIT:
            self.kill_workers()
            return 1
        return EXIT_OK if self.stop_workers() else 1

    # --- workers ---------------------------------------------------------------------

    def spawn_workers(self) -> None:
        for slot in self.slots:
            self.spawn_worker(slot)
        self.update_alive()

    def spawn_worker(self, slot: Slot) -> None:
        name = self.launcher.spawn(slot)
        slot.live = True
        slot.started = time.monotonic()
        log.info("booting worker %d (%s)", slot.index, name)

    def reap_workers(self) -> None:
        """Collect exited workers, log why they exited, schedule their restart."""
        for slot in self.live():
            end = self.launcher.reap(slot)
            if end is None:
                continue
            self.log_exit(slot, end)
            slot.live = False
            self.launcher.release(slot, drained=False)
            if end.code == WORKER_BOOT_ERROR:
                self.boot_failed = True
                continue
            schedule_restart(slot)
        self.update_alive()

    @staticmethod
    def log_exit(slot: Slot, end: Exit) -> None:
        code, who = end.code, slot.name()
        if end.died is not None:
            log.error("%s died: %s", who, end.died)
        elif code < 0:
            if -code == signal.SIGKILL:
                log.error("%s was sent SIGKILL! Perhaps out of memory?", who)
            elif -code == signal.SIGTERM:
                log.info("%s exited on SIGTERM", who)
            else:
                log.error("%s was killed by %s", who, signal.Signals(-code).name)
        elif code == WORKER_BOOT_ERROR:
            log.error("%s failed to boot", who)
        elif code == EXIT_OK:
            log.warning("%s exited unexpectedly with code 0", who)
        else:
            log.error("%s exited with code %d", who, code)

    def murder_workers(self) -> None:
        """Kill workers whose heartbeat stopped (stuck in a call that never returns)."""
        for slot in self.live():
            silent = self.launcher.silent_for(slot)
            if silent > WORKER_TIMEOUT_S:
                log.error("%s is stuck (no heartbeat for %.0fs); killing it", slot.name(), silent)
                self.launcher.kill(slot, final=False)

    def manage_workers(self) -> None:
        """Restart empty slots whose backoff has elapsed (once the backend is ready for it)."""
        now = time.monotonic()
        for slot in self.slots:
            if not slot.live and now >= slot.restart_at and self.launcher.ready(slot):
                metrics.RESTARTS.inc()
                self.spawn_worker(slot)
        self.update_alive()

    def update_alive(self) -> None:
        metrics.WORKERS_ALIVE.set(len(self.live()))

    # --- stopping --------------------------------------------------------------------

    def stop_workers(self, timeout: float = GRACEFUL_TIMEOUT_S) -> bool:
        """Ask every worker to drain and wait; a second signal or the timeout kills.
        Returns True when every worker exited on its own."""
        for slot in self.live():
            self.launcher.terminate(slot)
        deadline = time.monotonic() + timeout
        clean = True
        while self.live():
            if self.signals:
                log.warning("received %s while draining: killing workers", signal.Signals(self.signals.popleft()).name)
                self.kill_workers()
                return False
            if time.monotonic() > deadline:
                log.error("workers did not stop within %.0fs: killing them", timeout)
                self.kill_workers()
                return False
            self.sleep(DRAIN_POLL_S, restarts=False)
            for slot in self.live():
                end = self.launcher.reap(slot)
                if end is None:
                    continue
                drained = end.code == EXIT_OK and end.died is None
                if drained:
                    log.info("%s %s", slot.name(), self.launcher.drained)
                else:
                    clean = False
                    self.log_exit(slot, end)
                slot.live = False
                self.launcher.release(slot, drained)
        self.update_alive()
        return clean

    def kill_workers(self) -> None:
        for slot in self.live():
            self.launcher.kill(slot, final=True)
            slot.live = False
            self.launcher.release(slot, drained=False)
        self.update_alive()
