"""Shared bits of the benchmarks: the machine line, running wrk, writing BENCHMARKS.md."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.process import ROOT

BENCHMARKS = ROOT / "BENCHMARKS.md"


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {system}, Python {platform.python_version()}"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


# One reading per request, unique on (sensor_id, type, timestamp) for 3,000,000 requests.
_SINGLE_LUA = """
local n = 0
local types = {"temperature", "humidity", "pressure", "co2"}
request = function()
  n = n + 1
  local body = string.format(
    '{"sensor_id":"%(prefix)s%%d","timestamp":"%(hour)s:%%02d:%%02d.%%06dZ","type":"%%s","value":%%d.25,"unit":"C","location":"lab"}',
    n %% 5000, math.floor(n / 1000000) %% 60, n %% 60, n %% 1000000, types[n %% 4 + 1], n %% 40)
  return wrk.format("POST", "/sensor", {["Content-Type"] = "application/json"}, body)
end
"""


def single_reading_lua(prefix: str = "bench-", hour: str = "2025-11-17T14") -> str:
    """wrk request script posting one reading per request to /sensor."""
    return _SINGLE_LUA % {"prefix": prefix, "hour": hour}


_RESULT = re.compile(r"RESULT (.*)")

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d status=%d sockerr=%d p50_us=%d p99_us=%d\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(url: str, lua: str, seconds: int, connections: int, threads: int = 1, rate: int | None = None) -> WrkResult:
    """Run wrk with a Lua request script; `rate` is unsupported by wrk 4 (closed loop)."""
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("wrk is needed for the HTTP benchmarks: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua + _DONE)
        script = f.name
    try:
        out = subprocess.run(
            [exe, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", script, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    match = _RESULT.search(out)
    if not match:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    fields = dict(kv.split("=") for kv in match.group(1).split())
    return WrkResult(
        requests=int(fields["requests"]),
        seconds=int(fields["duration_us"]) / 1e6,
        non_2xx=int(fields["status"]),
        socket_errors=int(fields["sockerr"]),
        p50_ms=int(fields["p50_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
    )


def write_section(heading: str, body: str) -> None:
    """Replace the body of `## heading` in BENCHMARKS.md (up to the next `## `)."""
    text = BENCHMARKS.read_text()
    marker = f"## {heading}\n"
    start = text.index(marker) + len(marker)
    end = text.find("\n## ", start)
    rest = "" if end == -1 else text[end + 1 :]
    BENCHMARKS.write_text(text[:start] + "\n" + body.strip() + "\n" + ("\n" + rest if rest else ""))


_TICK = os.sysconf("SC_CLK_TCK")


def group_pids(pgid: int) -> list[int]:
    """Every live process of process group `pgid` (a harness Process is its own group)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # NOTE: fields after the command: state, ppid, pgrp, ...
            pids.append(int(stat.parent.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by `pids` (from /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICK
