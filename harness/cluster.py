"""A three-node Kafka cluster for the fault suite, each node in its own network namespace,
started by the same script as `KAFKA_NODES=3 make up` (deploy/local/kafka.sh), and its
process faults: kill -9, SIGSTOP/SIGCONT, restart.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from harness.kafka import admin, forget_admin
from harness.netns import Network, network
from harness.poll import wait_until
from harness.process import ROOT

SCRIPT = str(ROOT / "deploy/local/kafka.sh")


@dataclass(frozen=True)
class Cluster:
    net: Network
    run_dir: Path
    port: int = 9092
    controller_port: int = 9093

    @property
    def nodes(self) -> range:
        return range(1, self.net.nodes + 1)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.net.client_ip(n)}:{self.port}" for n in self.nodes)

    def _script(self, *args: str, timeout: float = 180) -> None:
        env = {
            **os.environ,
            "RUN_DIR": str(self.run_dir),
            "KAFKA_NODES": str(self.net.nodes),
            "KAFKA_NETNS": self.net.prefix,
            "KAFKA_SUBNET": self.net.subnet,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_HEAP": "384m",
        }
        subprocess.run([SCRIPT, *args], env=env, check=True, timeout=timeout)

    def start(self) -> None:
        """Start every node that is not running and wait until all of them are brokers."""
        self._script("start")

    def stop(self) -> None:
        for node in self.nodes:
            self.resume(node)  # a stopped JVM cannot take SIGTERM
        self._script("stop")

    def pid(self, node: int) -> int | None:
        path = self.run_dir / f"kafka-{node}.pid"
        try:
            pid = int(path.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def kill(self, node: int) -> None:
        """kill -9: no controlled shutdown, no flush; the process is gone when this returns."""
        pid = self.pid(node)
        assert pid is not None, f"node {node} is not running"
        os.kill(pid, signal.SIGKILL)
        wait_until(f"node {node} (pid {pid}) to exit", lambda: not _alive(pid), 30)

    def pause(self, node: int) -> None:
        pid = self.pid(node)
        assert pid is not None, f"node {node} is not running"
        os.kill(pid, signal.SIGSTOP)

    def resume(self, node: int) -> None:
        pid = self.pid(node)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def admin(self) -> AdminClient:
        # NOTE: one client for the run (harness.kafka.admin): destroying one while a node is
        # down blocks for seconds.
        return admin(self.bootstrap)

    def leader(self, topic: str, partition: int = 0) -> int:
        """The node that leads `topic`[partition] now (from the cluster's metadata)."""
        md = self.admin().list_topics(topic, timeout=10)
        return md.topics[topic].partitions[partition].leader

    def fully_replicated(self, topic: str) -> bool:
        """Every partition of `topic` has a leader and all nodes in its ISR."""
        md = self.admin().list_topics(topic, timeout=5)
        parts = md.topics[topic].partitions.values()
        return bool(parts) and all(p.leader >= 0 and len(p.isrs) == self.net.nodes for p in parts)

    def wait_healthy(self, topic: str, timeout: float = 120) -> None:
        """All nodes running and every replica of `topic` back in sync (after a fault)."""
        for node in self.nodes:
            self.resume(node)
            self.net.heal(node)
        self.start()
        wait_until(f"every replica of {topic} in sync", lambda: self.fully_replicated(topic), timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its parent shell) is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


@contextmanager
def cluster(prefix: str, subnet: str, run_dir: Path) -> Iterator[Cluster]:
    """Namespaces + three nodes; the nodes are stopped and the namespaces removed afterwards."""
    with network(prefix, subnet) as net:
        kafka = Cluster(net, run_dir)
        try:
            kafka.start()
            yield kafka
        finally:
            kafka.stop()
            # Before the namespaces go: a client left retrying would then reach past them.
            forget_admin(kafka.bootstrap)
            gc.collect()
