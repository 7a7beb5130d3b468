"""Network faults between Kafka nodes on one machine, without Docker: one Linux network
namespace per node, each with two veth links, one to a client bridge and one to a peer bridge.

Clients (the API, the pool, the suite) reach node N on the client bridge at SUBNET.(10+N); the
nodes replicate and vote on the peer bridge at SUBNET.(138+N). Taking a node's peer link down
cuts it off from its peers but not from its clients, which is the partition Kafka's
round-trip fault tests make. `shape` slows a node's links with a token bucket (`tc tbf`);
`netem` (delay, loss) needs the kernel's sch_netem, which some kernels lack: it raises
NetemUnavailable there rather than pretending.

Everything is named PREFIX-... so a run removes exactly what it made (also leftovers of a run
that was killed), and the addresses are the suite's own, inside namespaces it made.

A Docker engine on the same machine sets the iptables FORWARD policy to DROP and loads
br_netfilter, so frames crossing the suite's bridges go through FORWARD and are dropped (the
three nodes never form a quorum). The suite therefore accepts its own subnet in FORWARD, with a
rule tagged PREFIX-netns that it removes afterwards; started before or after the engine, the
rule stays ahead of the policy (docs/docker.md).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class NetemUnavailable(RuntimeError):
    """The kernel has no sch_netem (tc says `Specified qdisc kind is unknown`)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def _iptables(*args: str) -> subprocess.CompletedProcess[str] | None:
    """iptables (waiting for the xtables lock); None when it is not installed."""
    if shutil.which("iptables") is None:
        return None
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, timeout=30)


def usable() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) is not installed"
    probe = _ip("netns", "list", check=False)
    if probe.returncode != 0:
        return f"`ip netns` fails: {probe.stderr.strip()}"
    return None


@dataclass(frozen=True)
class Network:
    """The namespaces, bridges and links of `nodes` Kafka nodes, all named `prefix`..."""

    prefix: str  # at most 8 characters: link names are limited to 15
    subnet: str  # the first three octets of a /24, e.g. "10.213.0"
    nodes: int = 3

    def namespace(self, node: int) -> str:
        return f"{self.prefix}-n{node}"

    def client_ip(self, node: int) -> str:
        return f"{self.subnet}.{10 + node}"

    def peer_ip(self, node: int) -> str:
        return f"{self.subnet}.{138 + node}"

    @property
    def client_bridge(self) -> str:
        return f"{self.prefix}c"

    @property
    def peer_bridge(self) -> str:
        return f"{self.prefix}p"

    def peer_link(self, node: int) -> str:
        """The host end of node's peer veth (taking it down cuts the node from its peers)."""
        return f"{self.prefix}p{node}"

    @property
    def forward_tag(self) -> str:
        return f"{self.prefix}-netns"

    def _forward_rule(self) -> tuple[str, ...]:
        subnet = f"{self.subnet}.0/24"
        return ("FORWARD", "-s", subnet, "-d", subnet, "-m", "comment", "--comment", self.forward_tag, "-j", "ACCEPT")

    def create(self) -> None:
        self.remove()
        inserted = _iptables("-I", *self._forward_rule())
        if inserted is not None and inserted.returncode != 0:
            raise RuntimeError(f"iptables -I FORWARD for {self.subnet}.0/24: {inserted.stderr.strip()}")
        _ip("link", "add", self.client_bridge, "type", "bridge")
        # The host is a client: it talks to the nodes over the client bridge.
        _ip("addr", "add", f"{self.subnet}.1/25", "dev", self.client_bridge)
        _ip("link", "set", self.client_bridge, "up")
        # Nothing for the suite's subnet leaves the machine, even from a client that outlives
        # the namespaces (the bridge's /25 route is more specific while it exists).
        _ip("route", "add", "blackhole", f"{self.subnet}.0/24")
        _ip("link", "add", self.peer_bridge, "type", "bridge")
        _ip("link", "set", self.peer_bridge, "up")
        for node in range(1, self.nodes + 1):
            ns = self.namespace(node)
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            for side, bridge, address in (
                ("c", self.client_bridge, f"{self.client_ip(node)}/25"),
                ("p", self.peer_bridge, f"{self.peer_ip(node)}/25"),
            ):
                host_end = f"{self.prefix}{side}{node}"
                _ip("link", "add", host_end, "type", "veth", "peer", "name", f"{side}0", "netns", ns)
                _ip("link", "set", host_end, "master", bridge, "up")
                _ip("-n", ns, "addr", "add", address, "dev", f"{side}0")
                _ip("-n", ns, "link", "set", f"{side}0", "up")

    def remove(self) -> None:
        """Delete the namespaces (their veth ends go with them) and the bridges; idempotent."""
        for node in range(1, self.nodes + 1):
            _ip("netns", "del", self.namespace(node), check=False)
            for side in ("c", "p"):
                _ip("link", "del", f"{self.prefix}{side}{node}", check=False)
        for bridge in (self.client_bridge, self.peer_bridge):
            _ip("link", "del", bridge, check=False)
        _ip("route", "del", "blackhole", f"{self.subnet}.0/24", check=False)
        # Every copy (a killed run may have left one): -D until there is none.
        for _ in range(100):
            deleted = _iptables("-D", *self._forward_rule())
            if deleted is None or deleted.returncode != 0:
                break

    def leftovers(self) -> list[str]:
        """Namespaces and links named after this network that still exist."""
        names = _ip("netns", "list").stdout.split()
        links = [line.split(":")[1].strip().split("@")[0] for line in _ip("-o", "link").stdout.splitlines()]
        routes = _ip("route", "show", f"{self.subnet}.0/24").stdout.split("\n")
        listed = _iptables("-S", "FORWARD")
        rules = [r for r in (listed.stdout.splitlines() if listed else []) if self.forward_tag in r]
        return [n for n in names + links if n.startswith(self.prefix)] + [r for r in routes if r.strip()] + rules

    def isolate(self, node: int) -> None:
        """Cut node from its peers (replication, controller quorum); clients still reach it."""
        _ip("link", "set", self.peer_link(node), "down")

    def heal(self, node: int) -> None:
        _ip("link", "set", self.peer_link(node), "up")

    def _tc(self, node: int, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace(node), "tc", *args], capture_output=True, text=True, timeout=30
        )

    def shape(self, node: int, rate: str = "1mbit") -> None:
        """Slow both of node's links to `rate` (token bucket; works without sch_netem)."""
        for dev in ("c0", "p0"):
            done = self._tc(
                node, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", "32kbit", "latency", "400ms"
            )
            if done.returncode != 0:
                raise RuntimeError(f"tc tbf on {dev}: {done.stderr.strip()}")

    def netem(self, node: int, *spec: str) -> None:
        """`tc netem` on node's peer link, e.g. netem(1, "delay", "100ms", "loss", "5%")."""
        done = self._tc(node, "qdisc", "replace", "dev", "p0", "root", "netem", *spec)
        if done.returncode != 0:
            if "unknown" in done.stderr.lower():
                raise NetemUnavailable(f"this kernel has no sch_netem: {done.stderr.strip()}")
            raise RuntimeError(f"tc netem: {done.stderr.strip()}")

    def clear(self, node: int) -> None:
        for dev in ("c0", "p0"):
            self._tc(node, "qdisc", "del", "dev", dev, "root")


@contextmanager
def network(prefix: str, subnet: str, nodes: int = 3) -> Iterator[Network]:
    """The namespaces and links for `nodes` nodes; removed afterwards, whatever happened."""
    net = Network(prefix, subnet, nodes)
    try:
        net.create()
        yield net
    finally:
        net.remove()
