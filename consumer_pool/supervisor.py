"""The supervisor (gunicorn's arbiter, simplified): spawn, reap, restart and stop workers.

Signal handlers only queue the signal and wake the main loop, which waits on the workers'
sentinels. A worker that dies is restarted after a jittered backoff; one that exits with
WORKER_BOOT_ERROR stops the pool instead of a restart loop. The first SIGTERM/SIGINT
drains (workers finish their batch, commit and leave the group); a second one kills.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from consumer_pool import metrics, worker
from consumer_pool.errors import EXIT_OK, WORKER_BOOT_ERROR
from pipeline.backoff import backoff
from pipeline.settings import Settings

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
GRACEFUL_TIMEOUT_S = 30.0
WORKER_TIMEOUT_S = 120.0  # no heartbeat for this long: the worker is stuck, kill it
STABLE_AFTER_S = 30.0  # a worker that ran this long resets its slot's backoff
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0


@dataclass
class Slot:
    """One worker position in the pool: the process in it and its restart history."""

    index: int
    process: BaseProcess | None = None
    heartbeat: Any = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    exits: list[int] = field(default_factory=list)


class Restartable(Protocol):
    index: int
    started: float
    failures: int
    restart_at: float


def schedule_restart(slot: Restartable) -> None:
    """When a worker that exited comes back: after a jittered backoff that grows with its
    consecutive failures (a worker that ran STABLE_AFTER_S starts over). Used by both backends."""
    lived = time.monotonic() - slot.started
    slot.failures = 1 if lived >= STABLE_AFTER_S else slot.failures + 1
    delay = backoff(slot.failures, BACKOFF_BASE_S, BACKOFF_CAP_S)
    slot.restart_at = time.monotonic() + delay
    log.info("restarting worker %d in %.2fs (consecutive failures: %d)", slot.index, delay, slot.failures)


class Supervisor:
    """Keeps CONSUMER_WORKERS worker processes running until told to stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ctx = multiprocessing.get_context("spawn")
        self.slots = [Slot(i) for i in range(settings.pool.consumer_workers)]
        self.signals: deque[int] = deque()
        self._wake_r, self._wake_w = os.pipe()
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
        self.install_signals()
        self.spawn_workers()
        while True:
            self.sleep(1.0)
            if self.signals:
                return self.handle_stop(self.signals.popleft())
            self.reap_workers()
            if self.boot_failed:
                log.error(
                    "a worker failed to boot; stopping the pool (exit %d)",
                    WORKER_BOOT_ERROR,
                )
                self.stop_workers()
                return WORKER_BOOT_ERROR
            self.murder_workers()
            self.manage_workers()

    def sleep(self, timeout: float) -> None:
        """Wait for a signal, a worker exit or the timeout (whichever comes first)."""
        sentinels = [s.process.sentinel for s in self.slots if s.process is not None]
        pending = [s.restart_at for s in self.slots if s.process is None]
        if pending:
            timeout = max(0.0, min(timeout, min(pending) - time.monotonic()))
        ready = wait([self._wake_r, *sentinels], timeout)
        if self._wake_r in ready:
            os.read(self._wake_r, 512)

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
        slot.heartbeat = self.ctx.Value("d", time.monotonic(), lock=False)
        process = self.ctx.Process(
            target=worker.main,
            args=(self.settings, slot.index, slot.heartbeat),
            name=f"consumer-worker-{slot.index}",
        )
        # NOTE: the child inherits the blocked mask and unblocks once its handlers are set,
        # so a SIGTERM during boot is not lost and does not kill it half-way.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        slot.process = process
        slot.started = time.monotonic()
        log.info("booting worker %d (pid %d)", slot.index, process.pid)

    def reap_workers(self) -> None:
        """Collect exited workers, log why they exited, schedule their restart."""
        for slot in self.slots:
            process = slot.process
            if process is None or process.exitcode is None:
                continue
            code = process.exitcode
            self.log_exit(slot, process.pid or 0, code)
            metrics.mark_dead(process.pid or 0)
            process.close()
            slot.process = None
            if code == WORKER_BOOT_ERROR:
                self.boot_failed = True
                continue
            schedule_restart(slot)
        self.update_alive()

    @staticmethod
    def log_exit(slot: Slot, pid: int, code: int) -> None:
        if code < 0:
            name = signal.Signals(-code).name
            if -code == signal.SIGKILL:
                log.error(
                    "worker %d (pid %d) was sent SIGKILL! Perhaps out of memory?",
                    slot.index,
                    pid,
                )
            elif -code == signal.SIGTERM:
                log.info("worker %d (pid %d) exited on SIGTERM", slot.index, pid)
            else:
                log.error("worker %d (pid %d) was killed by %s", slot.index, pid, name)
        elif code == WORKER_BOOT_ERROR:
            log.error("worker %d (pid %d) failed to boot", slot.index, pid)
        elif code == 0:
            log.warning("worker %d (pid %d) exited unexpectedly with code 0", slot.index, pid)
        else:
            log.error("worker %d (pid %d) exited with code %d", slot.index, pid, code)

    def murder_workers(self) -> None:
        """Kill workers whose heartbeat stopped (stuck in a call that never returns)."""
        now = time.monotonic()
        for slot in self.slots:
            if slot.process is None or slot.heartbeat is None:
                continue
            if now - slot.heartbeat.value > WORKER_TIMEOUT_S:
                log.error(
                    "worker %d (pid %d) is stuck (no heartbeat for %.0fs); killing it",
                    slot.index,
                    slot.process.pid,
                    now - slot.heartbeat.value,
                )
                self._signal(slot, signal.SIGKILL)

    def manage_workers(self) -> None:
        """Restart empty slots whose backoff has elapsed."""
        now = time.monotonic()
        for slot in self.slots:
            if slot.process is None and now >= slot.restart_at:
                metrics.RESTARTS.inc()
                self.spawn_worker(slot)
        self.update_alive()

    def update_alive(self) -> None:
        metrics.WORKERS_ALIVE.set(sum(1 for s in self.slots if s.process is not None and s.process.is_alive()))

    # --- stopping --------------------------------------------------------------------

    def stop_workers(self, timeout: float = GRACEFUL_TIMEOUT_S) -> bool:
        """SIGTERM every worker and wait for them to drain; a second signal or the timeout kills.
        Returns True when every worker exited on its own."""
        for slot in self.slots:
            self._signal(slot, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        clean = True
        while any(s.process is not None for s in self.slots):
            if self.signals:
                sig = self.signals.popleft()
                log.warning(
                    "received %s while draining: killing workers",
                    signal.Signals(sig).name,
                )
                self.kill_workers()
                return False
            if time.monotonic() > deadline:
                log.error("workers did not stop within %.0fs: killing them", timeout)
                self.kill_workers()
                return False
            self.sleep(0.5)
            for slot in self.slots:
                process = slot.process
                if process is not None and process.exitcode is not None:
                    code = process.exitcode
                    if code != 0:
                        clean = False
                        self.log_exit(slot, process.pid or 0, code)
                    else:
                        log.info("worker %d (pid %d) stopped", slot.index, process.pid)
                    metrics.mark_dead(process.pid or 0)
                    process.close()
                    slot.process = None
        self.update_alive()
        return clean

    def kill_workers(self) -> None:
        for slot in self.slots:
            self._signal(slot, signal.SIGKILL)
        for slot in self.slots:
            if slot.process is not None:
                slot.process.join(5)
                metrics.mark_dead(slot.process.pid or 0)
                slot.process = None
        self.update_alive()

    @staticmethod
    def _signal(slot: Slot, sig: int) -> None:
        if slot.process is not None and slot.process.pid is not None:
            try:
                os.kill(slot.process.pid, sig)
            except ProcessLookupError:
                pass
