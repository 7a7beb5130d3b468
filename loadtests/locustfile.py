"""Locust scenarios for the ingest API: `locust -f loadtests/locustfile.py` (web UI on :8089).

Users (pick them in the UI, or name them on the command line):
  SensorUser  one reading per request from a small fleet of simulated sensors
  BatchUser   POST /sensor/batch, alternating a JSON array and NDJSON
  MixedUser   single readings where a small share is invalid; the expected 4xx is a success

Each user sends LOADTEST_USER_RATE requests per second (default 1), so the offered load is
users x rate. The host defaults to the local API (API_PORT from the environment or .env).
Environment knobs: LOADTEST_RUN_ID (sensor_id prefix marking this run), LOADTEST_BATCH_SIZE
(20), LOADTEST_INVALID_SHARE (0.05), LOADTEST_FLEET_SIZE (5 sensors per user),
LOADTEST_API_KEY (sent as X-API-Key), LOADTEST_SUMMARY (path of a JSON summary written at
exit; used by the gate and the bench), LOADTEST_ACKED (path: every acknowledged reading's
identity, one JSON line each, written at exit; with --processes one file per process,
`<path>.<pid>`), so the gate compares identities, not counts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, cast

# NOTE: Locust imports this file by path with only its own folder on sys.path; the repo root
# is needed for `loadtests.*` and `service.*`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from locust import FastHttpUser, constant_throughput, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtests.readings import Fleet, Identity, bad_payloads, identity_of, new_run_id, to_json, to_ndjson
from pipeline.settings import Settings

RUN_ID = os.environ.get("LOADTEST_RUN_ID") or new_run_id()
USER_RATE = float(os.environ.get("LOADTEST_USER_RATE", "1"))
BATCH_SIZE = int(os.environ.get("LOADTEST_BATCH_SIZE", "20"))
INVALID_SHARE = float(os.environ.get("LOADTEST_INVALID_SHARE", "0.05"))
FLEET_SIZE = int(os.environ.get("LOADTEST_FLEET_SIZE", "5"))

# Request names, and how many readings one successful request of each name stored.
# NOTE: counting from the (master-aggregated) stats works with --processes too, where a
# module-level counter in each worker would not reach the master.
SINGLE = "POST /sensor"
BATCH_JSON = "POST /sensor/batch [json]"
BATCH_NDJSON = "POST /sensor/batch [ndjson]"
INVALID = "POST /sensor [invalid, 4xx expected]"
READINGS_PER_SUCCESS = {
    SINGLE: 1,
    BATCH_JSON: BATCH_SIZE,
    BATCH_NDJSON: BATCH_SIZE,
    INVALID: 0,
}

# The identities of this process's acknowledged readings (written at exit, LOADTEST_ACKED).
ACKED: list[Identity] = []

# NOTE: LOADTEST_API_KEY for a stack that runs with API_KEYS set.


def raw_body(data: bytes) -> str:
    """NOTE: locust annotates `data` as str | dict, yet sends bytes as they are (its docstring:
    "String/bytes"); the payloads stay bytes (some are invalid UTF-8 on purpose)."""
    return cast(str, data)


AUTH = {"X-API-Key": os.environ["LOADTEST_API_KEY"]} if os.environ.get("LOADTEST_API_KEY") else {}
JSON = {"Content-Type": "application/json", **AUTH}
NDJSON = {"Content-Type": "application/x-ndjson", **AUTH}


def default_host() -> str:
    return f"http://127.0.0.1:{Settings.from_env().api.api_port}"


class _PipelineUser(FastHttpUser):
    """Shared set-up: a fleet of sensors per user and a fixed request rate."""

    abstract = True
    host = default_host()
    wait_time = constant_throughput(USER_RATE)

    def on_start(self) -> None:
        self.fleet = Fleet(RUN_ID, size=FLEET_SIZE)

    def post_one(self) -> None:
        reading = self.fleet.reading()
        with self.client.post(
            "/sensor",
            data=raw_body(to_json(reading)),
            headers=JSON,
            name=SINGLE,
            catch_response=True,
        ) as resp:
            if resp.status_code == 202:
                ACKED.append(identity_of(reading))
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")


class SensorUser(_PipelineUser):
    """Many sensors posting one reading per request, as in the seed's example."""

    weight = 6

    @task
    def single(self) -> None:
        self.post_one()


class BatchUser(_PipelineUser):
    """A gateway that buffers readings and posts them in batches (JSON array and NDJSON)."""

    weight = 1

    @task
    def batch_json(self) -> None:
        batch = self.fleet.batch(BATCH_SIZE)
        self._post_batch(batch, to_json(batch), JSON, BATCH_JSON)

    @task
    def batch_ndjson(self) -> None:
        batch = self.fleet.batch(BATCH_SIZE)
        self._post_batch(batch, to_ndjson(batch), NDJSON, BATCH_NDJSON)

    def _post_batch(self, batch: list[dict[str, object]], body: bytes, headers: dict[str, str], name: str) -> None:
        with self.client.post(
            "/sensor/batch", data=raw_body(body), headers=headers, name=name, catch_response=True
        ) as resp:
            accepted = _json(resp.text).get("accepted") if resp.status_code == 202 else None
            if accepted == BATCH_SIZE:
                ACKED.extend(identity_of(r) for r in batch)
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}, accepted={accepted}: {(resp.text or '')[:200]}")


class MixedUser(_PipelineUser):
    """Mostly valid readings plus a share of client mistakes, which must be refused with a 4xx."""

    weight = 2

    @task
    def mixed(self) -> None:
        if self.fleet.rng.random() >= INVALID_SHARE:
            self.post_one()
            return
        bad = self.fleet.rng.choice(bad_payloads(self.fleet.reading()))
        with self.client.post(
            "/sensor",
            data=raw_body(bad.body),
            headers={"Content-Type": bad.content_type, **AUTH},
            name=INVALID,
            catch_response=True,
        ) as resp:
            body = _json(resp.text)
            if resp.status_code == bad.status and "error" in body:
                resp.success()
            else:
                resp.failure(f"{bad.name}: expected {bad.status} with an error body, got {resp.status_code}")


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def summarize(environment: Environment) -> dict[str, Any]:
    """What the gate and the bench need from Locust, computed from the aggregated stats."""
    stats = environment.stats
    total = stats.total
    acked = 0
    last_ok: float | None = None
    for (name, _method), entry in stats.entries.items():
        acked += (entry.num_requests - entry.num_failures) * READINGS_PER_SUCCESS.get(name, 0)
        if READINGS_PER_SUCCESS.get(name) and entry.last_request_timestamp:
            last_ok = max(last_ok or 0.0, entry.last_request_timestamp)
    return {
        "run_id": RUN_ID,
        "requests": total.num_requests,
        "failures": total.num_failures,
        "start_time": total.start_time,
        "last_request_time": total.last_request_timestamp,
        "last_ok_time": last_ok,
        "rps": total.total_rps,
        "acked_readings": acked,
        "http_p50_ms": total.get_response_time_percentile(0.50),
        "http_p99_ms": total.get_response_time_percentile(0.99),
        "errors": {f"{e.name}: {e.error}": e.occurrences for e in stats.errors.values()},
        "written_at": time.time(),
    }


@events.quitting.add_listener
def _write_acked(environment: Environment, **_kwargs: Any) -> None:
    path = os.environ.get("LOADTEST_ACKED")
    if not path:
        return
    if isinstance(environment.runner, WorkerRunner):
        path = f"{path}.{os.getpid()}"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(json.dumps(i) + "\n" for i in ACKED))


@events.quitting.add_listener
def _write_summary(environment: Environment, **_kwargs: Any) -> None:
    path = os.environ.get("LOADTEST_SUMMARY")
    if not path or isinstance(environment.runner, WorkerRunner):
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(summarize(environment), indent=2))
