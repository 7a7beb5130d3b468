"""CONSUMER_BACKEND=multiprocessing (the default): the pool's workers as processes of this
machine, spawned (not forked) by the supervisor (consumer_pool/supervisor.py).

Each worker runs `worker.main` and writes its heartbeat into a shared double; the supervisor
waits on the processes' sentinels, so an exit is seen at once. Metrics: every worker writes
prometheus-client multiprocess files into the pool's folder (inherited PROMETHEUS_MULTIPROC_DIR);
a dead worker's live gauges are dropped with `mark_process_dead`.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from multiprocessing import resource_tracker
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from consumer_pool import metrics, worker
from consumer_pool.supervisor import SIGNALS, Exit, Slot
from pipeline.settings import Settings

KILL_JOIN_S = 5.0


class ProcessLauncher:
    """Spawns, reaps, drains (SIGTERM) and kills (SIGKILL) worker processes."""

    tick_s = 1.0
    drained = "stopped"  # NOTE: the worker itself logs that it committed and left the group

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ctx = multiprocessing.get_context("spawn")
        self.processes: dict[int, BaseProcess] = {}
        self.heartbeats: dict[int, Any] = {}  # slot -> multiprocessing Value("d"): last beat, monotonic

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def spawn(self, slot: Slot) -> str:
        heartbeat = self.ctx.Value("d", time.monotonic(), lock=False)
        process = self.ctx.Process(
            target=worker.main,
            args=(self.settings, slot.index, heartbeat),
            name=f"consumer-worker-{slot.index}",
        )
        # NOTE: the child inherits the blocked mask and unblocks once its handlers are set,
        # so a SIGTERM during boot is not lost and does not kill it half-way. The resource
        # tracker must be running first: start() launches it on first use, and CPython's launch
        # ends with pthread_sigmask(SIG_UNBLOCK, {SIGINT, SIGTERM}), which undid this block for
        # the first worker (it then died of a SIGTERM during its boot).
        resource_tracker.ensure_running()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self.processes[slot.index] = process
        self.heartbeats[slot.index] = heartbeat
        slot.pid = process.pid or 0
        return f"pid {slot.pid}"

    def ready(self, slot: Slot) -> bool:
        return True

    def reap(self, slot: Slot) -> Exit | None:
        code = self.processes[slot.index].exitcode  # NOTE: waitpid(WNOHANG) underneath
        return None if code is None else Exit(code)

    def wait(self, slots: list[Slot], timeout: float, wake_fd: int) -> None:
        wait([wake_fd, *(self.processes[s.index].sentinel for s in slots)], timeout)

    def watch(self, slots: list[Slot]) -> None:
        pass

    def silent_for(self, slot: Slot) -> float:
        return time.monotonic() - self.heartbeats[slot.index].value

    def terminate(self, slot: Slot) -> None:
        self._signal(slot, signal.SIGTERM)

    def kill(self, slot: Slot, final: bool) -> None:
        self._signal(slot, signal.SIGKILL)
        if final:
            self.processes[slot.index].join(KILL_JOIN_S)

    def release(self, slot: Slot, drained: bool) -> None:
        metrics.mark_dead(slot.pid)
        process = self.processes.pop(slot.index)
        self.heartbeats.pop(slot.index, None)
        if process.exitcode is not None:
            process.close()

    @staticmethod
    def _signal(slot: Slot, sig: int) -> None:
        if slot.pid <= 0:  # NOTE: os.kill(0, ...) would signal our whole process group
            return
        try:
            os.kill(slot.pid, sig)
        except ProcessLookupError:
            pass
