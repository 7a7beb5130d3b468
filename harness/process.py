"""Child processes for tests, the gate and the benchmarks, and fresh names and ports for them.

Every child runs in its own session, so stopping it signals gunicorn's or the pool's workers
too and nothing outlives a run; its output goes to a log file that failures quote.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# What a 2xx means, pinned for the fault suite and the gate whatever the developer's
# environment or `.env` says (the children read `.env` from ROOT but never override a variable
# that is set): acknowledged after Kafka's acks=all. The librdkafka side (acks, idempotence)
# cannot be changed at all (pipeline.settings.PINNED_RDKAFKA).
PINNED_ENV = {"ACK_MODE": "delivered"}


def pinned(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with PINNED_ENV applied last, so neither the environment nor a caller weakens it."""
    return {**env, **PINNED_ENV}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, below the kernel's ephemeral
    range (ip_local_port_range, 32768-60999 here).

    NOTE: a port the kernel hands out for bind(0) is an ephemeral one, which any outgoing
    connection (a Kafka client's, on a box running several suites) may take as its local port
    before the process meant to listen on it binds: "Address already in use" (seen for the
    pool's metrics port). Ports below the range are never taken that way."""
    low, _ = _ephemeral_range()
    if low <= 21_000:  # no room below the range: the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    for _ in range(200):
        port = random.randrange(20_000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port between 20000 and {low}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def unique(prefix: str) -> str:
    """`prefix` plus a random suffix: topic, group, database and sensor names that never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Process:
    """A child in its own session (so its workers are signalled too), output in a log file."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                args,
                cwd=ROOT,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 2000) -> str:
        return self.log()[-chars:]

    def signal(self, sig: int) -> None:
        """Signal the main process only (e.g. SIGTERM to gunicorn's master)."""
        if self.alive():
            os.kill(self.popen.pid, sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM the group (a graceful drain), then SIGKILL whatever is left; the exit code."""
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.popen.wait(10)


@contextmanager
def spawn(
    args: list[str],
    env: Mapping[str, str],
    log_path: Path,
    name: str | None = None,
    stop_timeout: float = 30,
    inherit: bool = True,
) -> Iterator[Process]:
    """Start `args` with `env` (on top of os.environ unless not `inherit`); stopped on exit, whatever the body did."""
    proc = Process(name or log_path.stem, args, {**os.environ, **env} if inherit else env, log_path)
    try:
        yield proc
    finally:
        proc.stop(stop_timeout)
