"""The fault suite's pipeline and its invariants, checked on a run's own readings.

`Pipeline` runs the API and one or more consumer pools on the cluster, each restartable and
killable. `check` classifies every reading of an open-loop run by its HTTP outcome and by
where it ended up (the store, Kafka), and `Verdict.problems` lists every broken invariant:

- every 2xx reading is stored exactly once (a missing one is reported with whether it is in
  Kafka, so producer/broker loss is told apart from pool loss);
- nothing is stored that was not sent or that was answered 4xx;
- no 5xx but 503; a 503 or a request without an answer is indeterminate: stored at most once;
- the pipeline recovers by itself: after the fault heals, answers are all 2xx again within
  API_RECOVERY_BOUND_S, and once the load ends every 2xx reading is stored and the group's lag
  is 0 within CATCH_UP_BOUND_S.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import msgspec

from harness.kafka import committed, create_topic, delete_topics, end_offsets, topic_values
from harness.openloop import Outcome
from harness.poll import wait_http, wait_until
from harness.process import PYTHON, ROOT, Process, free_port
from store.probe import Probe

API_RECOVERY_BOUND_S = 30.0
CATCH_UP_BOUND_S = 90.0
REPORTS = ROOT / "reports" / "chaos"


class Pipeline:
    """API and consumer pools of one scenario: a fresh topic, group and store on `broker`."""

    def __init__(self, broker: str, run_id: str, workdir: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self.broker = broker
        self.run_id = run_id
        self.workdir = workdir
        self.topic = f"chaos-{run_id}"
        self.group = f"chaos-{run_id}"
        workdir.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "CONSUMER_METRICS_DIR")}
        self.env = {
            **base,
            "KAFKA_BROKER": broker,
            "TOPIC_NAME": self.topic,
            "DLQ_TOPIC": f"{self.topic}.dlq",
            "ALERTS_TOPIC": f"{self.topic}.alerts",
            "CONSUMER_GROUP": self.group,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(free_port()),
            "API_WORKERS": "2",
            "API_KEYS": "",
            "SINK": "sqlite",
            "SQLITE_PATH": str(workdir / "readings.db"),
            "CONSUMER_WORKERS": "2",
            **(extra_env or {}),
        }
        self.api_url = f"http://127.0.0.1:{self.env['API_PORT']}"
        self.api: Process | None = None
        self.pools: list[Process] = []
        create_topic(broker, self.topic)

    def start_api(self) -> Process:
        env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / f"api-metrics-{time.monotonic_ns()}")}
        self.api = Process("API", [PYTHON, "-m", "service"], env, self.workdir / "api.log")
        wait_http(f"{self.api_url}/readyz", 90, proc=self.api)
        return self.api

    def start_pool(self, workers: int | None = None) -> Process:
        n = len(self.pools)
        env = {
            **self.env,
            "CONSUMER_METRICS_PORT": str(free_port()),
            "CONSUMER_METRICS_DIR": str(self.workdir / f"pool-metrics-{n}-{time.monotonic_ns()}"),
            **({"CONSUMER_WORKERS": str(workers)} if workers else {}),
        }
        pool = Process(f"pool {n}", [PYTHON, "-m", "consumer_pool"], env, self.workdir / f"pool-{n}.log")
        wait_until("the pool's `Listening to topic`", lambda: "Listening to topic" in pool.log(), 90, pool)
        self.pools.append(pool)
        return pool

    def stop(self) -> None:
        for proc in [self.api, *self.pools]:
            if proc is not None:
                proc.stop(30)
        delete_topics(self.broker, self.topic, f"{self.topic}.dlq", f"{self.topic}.alerts")

    def stored(self) -> list[int]:
        """The reading numbers in the store (value = number, harness.readings.numbered)."""
        env = self.env
        probe = Probe(env["SQLITE_PATH"], None) if env["SINK"] != "postgres" else Probe(None, env["DATABASE_URL"])
        return [int(v) for v in probe.values(f"{self.run_id}-")]

    def in_kafka(self) -> list[int]:
        return [int(msgspec.json.decode(v)["value"]) for v in topic_values(self.broker, self.topic)]

    def lag(self) -> int:
        ends = end_offsets(self.broker, self.topic)
        done = committed(self.broker, self.group, self.topic, len(ends))
        return sum(max(0, end - max(done.get(p, 0), 0)) for p, end in ends.items())


def kill9(proc: Process) -> None:
    """kill -9 the process and everything in its session (gunicorn's or the pool's workers)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.popen.wait(30)


def children(pid: int) -> list[int]:
    """The child processes of `pid` (from /proc)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def pool_workers(pool: Process) -> list[int]:
    """The pool's worker processes (multiprocessing's resource tracker is not one)."""
    pids = []
    for pid in children(pool.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"resource_tracker" not in cmdline:
            pids.append(pid)
    return pids


@dataclass
class Verdict:
    scenario: str
    sent: int = 0
    load_s: float = 0.0  # first to last send: sent / load_s is the rate achieved
    ok: int = 0  # 2xx
    rejected: int = 0  # 4xx
    indeterminate: int = 0  # 503 or no answer
    other_5xx: int = 0
    stored: int = 0
    indeterminate_stored: int = 0
    lost: list[int] = field(default_factory=list)  # 2xx, not stored
    lost_in_kafka: list[int] = field(default_factory=list)  # of those, the ones Kafka has
    duplicates: list[int] = field(default_factory=list)  # stored more than once
    phantoms: list[int] = field(default_factory=list)  # stored, but never sent or answered 4xx
    kafka_duplicates: int = 0  # records in Kafka beyond one per reading (informative)
    api_recovery_s: float = 0.0  # heal -> from then on only 2xx
    catch_up_s: float = 0.0  # load end -> every 2xx stored and lag 0
    command: str = ""
    notes: str = ""

    def problems(self) -> list[str]:
        out = []
        if self.lost:
            pool_loss = len(self.lost_in_kafka)
            where = f"{pool_loss} of them in Kafka (pool loss), {len(self.lost) - pool_loss} not (producer/broker loss)"
            out.append(f"{len(self.lost)} acknowledged readings not stored ({where}): {self.lost[:20]}")
        if self.duplicates:
            out.append(f"{len(self.duplicates)} readings stored more than once: {self.duplicates[:20]}")
        if self.phantoms:
            out.append(f"{len(self.phantoms)} readings stored that were not sent or got a 4xx: {self.phantoms[:20]}")
        if self.other_5xx:
            out.append(f"{self.other_5xx} answers were 5xx but not 503")
        if self.ok == 0:
            out.append("no reading was acknowledged at all")
        if self.api_recovery_s > API_RECOVERY_BOUND_S:
            out.append(
                f"503s went on {self.api_recovery_s:.1f} s after the fault healed (bound {API_RECOVERY_BOUND_S:g} s)"
            )
        if self.catch_up_s > CATCH_UP_BOUND_S:
            out.append(f"the pool had not caught up {CATCH_UP_BOUND_S:g} s after the load ended")
        return out

    def save(self) -> None:
        REPORTS.mkdir(parents=True, exist_ok=True)
        (REPORTS / f"{self.scenario}.json").write_text(json.dumps(asdict(self), indent=1))


def check(
    scenario: str,
    pipeline: Pipeline,
    outcomes: Iterable[Outcome],
    healed_s: float,
    load_ended: float,
    command: str = "",
    notes: str = "",
) -> Verdict:
    """Wait (bounded) for the pool to catch up, then classify every reading of the run."""
    outcomes = list(outcomes)
    ok = {o.i for o in outcomes if o.status is not None and 200 <= o.status < 300}
    rejected = {o.i for o in outcomes if o.status is not None and 400 <= o.status < 500}
    other_5xx = [o for o in outcomes if o.status is not None and o.status >= 500 and o.status != 503]
    unsettled = [o for o in outcomes if o.i not in ok]
    later = [o.sent_s for o in unsettled if o.sent_s >= healed_s]
    verdict = Verdict(scenario, command=command, notes=notes)

    def caught_up() -> bool:
        return ok <= set(pipeline.stored()) and pipeline.lag() == 0

    try:
        wait_until(
            "every 2xx reading stored and lag 0",
            caught_up,
            max(0.0, CATCH_UP_BOUND_S - (time.monotonic() - load_ended)),
            interval=1,
        )
        verdict.catch_up_s = time.monotonic() - load_ended
    except TimeoutError:
        verdict.catch_up_s = float("inf")
    stored = Counter(pipeline.stored())
    kafka = Counter(pipeline.in_kafka())
    sent = {o.i for o in outcomes}
    verdict.sent = len(outcomes)
    verdict.load_s = max((o.sent_s for o in outcomes), default=0.0)
    verdict.ok = len(ok)
    verdict.rejected = len(rejected)
    verdict.other_5xx = len(other_5xx)
    verdict.indeterminate = len(outcomes) - len(ok) - len(rejected) - len(other_5xx)
    verdict.stored = sum(stored.values())
    verdict.indeterminate_stored = sum(1 for i in stored if i in sent and i not in ok and i not in rejected)
    verdict.lost = sorted(ok - set(stored))
    verdict.lost_in_kafka = [i for i in verdict.lost if i in kafka]
    verdict.duplicates = sorted(i for i, n in stored.items() if n > 1)
    verdict.phantoms = sorted(i for i in stored if i not in sent or i in rejected)
    verdict.kafka_duplicates = sum(n - 1 for n in kafka.values() if n > 1)
    verdict.api_recovery_s = max(later) - healed_s if later else 0.0
    verdict.save()
    print(f"[chaos] {scenario}: {json.dumps({k: v for k, v in asdict(verdict).items() if not isinstance(v, list)})}")
    return verdict
