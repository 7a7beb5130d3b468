"""Open-loop load with vegeta (Go): requests leave at their scheduled times whatever the
server does, and latency counts from the scheduled time, so queueing is not hidden; the
generator costs little CPU beside the pipeline on the same cores.

vegeta is installed once into .cache/bin by `go install` (deploy/local/bench.sh does it);
VEGETA overrides the path.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.process import ROOT

VERSION = "v12.13.0"
TYPES = ("temperature", "humidity", "pressure", "co2")


def executable() -> str:
    found = os.environ.get("VEGETA") or shutil.which("vegeta") or str(ROOT / ".cache/bin/vegeta")
    if not Path(found).exists():
        raise SystemExit(
            f"vegeta is needed: GOBIN={ROOT}/.cache/bin go install github.com/tsenart/vegeta/v12@{VERSION}"
            " (deploy/local/bench.sh does it)"
        )
    return found


def write_targets(path: Path, url: str, prefix: str, count: int, sensors: int = 5000) -> Path:
    """`count` POST /sensor targets, each a distinct reading (sensor_id starts with `prefix`)."""
    header = {"Content-Type": ["application/json"]}
    with path.open("w") as out:
        for n in range(count):
            body = (
                f'{{"sensor_id":"{prefix}{n % sensors}","timestamp":"2025-11-17T14:{n // 60_000 % 60:02d}:'
                f'{n // 1000 % 60:02d}.{n % 1000:03d}Z","type":"{TYPES[n % 4]}","value":{n % 40}.25,"unit":"C"}}'
            )
            target = {"method": "POST", "url": url, "header": header, "body": base64.b64encode(body.encode()).decode()}
            out.write(json.dumps(target) + "\n")
    return path


@dataclass(frozen=True)
class Report:
    """vegeta's JSON report, in the units the benchmarks print."""

    requests: int
    rate: float  # requests sent per second
    throughput: float  # successful responses per second
    success: float  # ratio of 2xx
    p50_ms: float
    p99_ms: float
    max_ms: float
    status_codes: dict[str, int]
    errors: list[str]

    @property
    def ok(self) -> int:
        return sum(n for code, n in self.status_codes.items() if code.startswith("2"))


@dataclass(frozen=True)
class Result:
    """One request of an attack: its status (0: no HTTP answer), vegeta's error text, headers."""

    code: int
    error: str
    headers: dict[str, list[str]]
    latency_ms: float

    def header(self, name: str) -> str | None:
        for key, values in self.headers.items():
            if key.lower() == name.lower() and values:
                return values[0]
        return None


def results(path: Path) -> list[Result]:
    """Every request of the attack whose results are in `path` (vegeta's binary output)."""
    out = subprocess.run([executable(), "encode", "-to=json", str(path)], check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line]
    return [Result(int(r["code"]), r.get("error") or "", r.get("headers") or {}, r["latency"] / 1e6) for r in rows]


def attack(
    targets: Path,
    rate: int,
    seconds: float,
    timeout_s: float = 10.0,
    results: Path | None = None,
) -> Report:
    """Offer `rate` req/s for `seconds` from the targets file (each target used at most once)."""
    exe = executable()
    results = results or targets.with_suffix(".bin")
    attack_cmd = [
        exe, "attack", "-format=json", f"-targets={targets}", "-lazy", f"-rate={rate}/s",
        f"-duration={seconds:g}s", f"-timeout={timeout_s:g}s", "-max-body=0", f"-output={results}",
    ]  # fmt: skip
    subprocess.run(attack_cmd, check=True)
    out = subprocess.run([exe, "report", "-type=json", str(results)], check=True, capture_output=True, text=True)
    data = json.loads(out.stdout)
    lat = data["latencies"]
    return Report(
        requests=int(data["requests"]),
        rate=float(data["rate"]),
        throughput=float(data["throughput"]),
        success=float(data["success"]),
        p50_ms=lat["50th"] / 1e6,
        p99_ms=lat["99th"] / 1e6,
        max_ms=lat["max"] / 1e6,
        status_codes={str(k): int(v) for k, v in (data.get("status_codes") or {}).items()},
        errors=list(data.get("errors") or []),
    )
