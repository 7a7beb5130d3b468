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
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the kernel's ephemeral
    range: a port from that range (bind to port 0) can be taken by any outgoing connection (a
    Kafka client's, the load's) between this choice and the server's bind, which failed the pool
    with `Address already in use` on a busy machine."""
    low, high = _ephemeral_range()
    candidates = [p for p in range(10_000, 65_000) if not low <= p <= high and p not in _RESERVED]
    for port in random.sample(candidates, 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port outside the ephemeral range {low}-{high}")


# Ports the stack or the tests use by name (API, Kafka, PostgreSQL, Prometheus, Compose's).
_RESERVED = frozenset({5000, 5432, 8080, 9090, 9092, 9093, 9108, 3000, 55432, 15000, 19092, 19093, 19108, 15432, 19090})


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


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
