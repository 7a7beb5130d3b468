"""The fault suite's pipeline and its invariants, checked on a run's own readings.

`Pipeline` runs the API and one or more consumer pools on the cluster, each restartable and
killable. `check` classifies every reading of an open-loop run by its HTTP outcome and by
where it ended up (the store, Kafka), and `Verdict.problems` lists every broken invariant:

- every 2xx reading is stored (a missing one is reported with whether it is in Kafka, so
  producer/broker loss is told apart from pool loss);
- exactly once, shown in its effects: the primary key makes a second row impossible, so what
  is checked is that the minute aggregates count exactly the stored rows (a replay absorbed
  by the key must not be counted twice there either);
- Kafka holds no reading twice, and per key (sensor) a reading acknowledged before another
  was sent comes first in its partition;
- nothing is stored that was not sent or that was answered 4xx;
- no 5xx but 503; a 503 or a request without an answer is indeterminate: stored at most once;
- the pipeline recovers by itself: after the fault heals, answers are all 2xx again within
  API_RECOVERY_BOUND_S (heal and sends on one clock, time.monotonic()), the last
  RECOVERED_WINDOW_S of the load are all 2xx, and once the load ends every 2xx reading is
  stored and the group's lag is 0 within CATCH_UP_BOUND_S.
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

from harness.isolation import Isolation, inherited
from harness.kafka import committed, end_offsets, topic_values
from harness.openloop import Outcome
from harness.poll import wait_http, wait_until
from harness.process import PYTHON, ROOT, Process, free_port, pinned
from harness.prometheus import metric, scrape
from store.probe import Probe

API_RECOVERY_BOUND_S = 30.0
# The load goes on this long after the heal: longer than the bound, so a recovery slower than
# the bound is seen as one (with TAIL_S <= bound it could never fail).
TAIL_S = API_RECOVERY_BOUND_S + 15.0
RECOVERED_WINDOW_S = 10.0  # the last seconds of the load: all 2xx
CATCH_UP_BOUND_S = 90.0
REPORTS = ROOT / "reports" / "chaos"


class Pipeline:
    """API and consumer pools of one scenario: a fresh topic, group and store on `broker`."""

    def __init__(self, broker: str, run_id: str, workdir: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self.broker = broker
        self.run_id = run_id
        self.workdir = workdir
        self.iso = Isolation.fresh(broker, "chaos", run_id, sqlite_path=str(workdir / "readings.db"))
        self.topic = self.iso.topic
        self.group = self.iso.group
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = pinned(
            {
                **inherited(),
                **self.iso.env(),
                "API_WORKERS": "2",
                "API_KEYS": "",
                "SINK": "sqlite",
                "CONSUMER_WORKERS": "2",
                **(extra_env or {}),
            }
        )
        self.api_url = f"http://127.0.0.1:{self.env['API_PORT']}"
        self.api: Process | None = None
        self.pools: list[Process] = []
        self.pool_ports: list[int] = []
        self.iso.create()

    def start_api(self) -> Process:
        env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / f"api-metrics-{time.monotonic_ns()}")}
        self.api = Process("API", [PYTHON, "-m", "service"], env, self.workdir / "api.log")
        wait_http(f"{self.api_url}/readyz", 90, proc=self.api)
        return self.api

    def start_pool(self, workers: int | None = None) -> Process:
        n = len(self.pools)
        port = free_port()
        env = {
            **self.env,
            "CONSUMER_METRICS_PORT": str(port),
            "CONSUMER_METRICS_DIR": str(self.workdir / f"pool-metrics-{n}-{time.monotonic_ns()}"),
            **({"CONSUMER_WORKERS": str(workers)} if workers else {}),
        }
        pool = Process(f"pool {n}", [PYTHON, "-m", "consumer_pool"], env, self.workdir / f"pool-{n}.log")
        wait_until("the pool's `Listening to topic`", lambda: "Listening to topic" in pool.log(), 90, pool)
        self.pools.append(pool)
        self.pool_ports.append(port)
        return pool

    def stop(self) -> None:
        for proc in [self.api, *self.pools]:
            if proc is not None:
                proc.stop(30)
        self.iso.delete()

    def stored(self) -> list[int]:
        """The reading numbers in the store (value = number, harness.readings.numbered)."""
        return [int(v) for v in self.probe().values(f"{self.run_id}-")]

    def probe(self) -> Probe:
        """The store this run's pool writes, read through the store's probe."""
        env = self.env
        return Probe(env["SQLITE_PATH"], None) if env["SINK"] != "postgres" else Probe(None, env["DATABASE_URL"])

    def aggregated(self) -> int:
        """The readings the minute aggregates count (readings_1m), for this run's sensors."""
        return self.probe().aggregated(f"{self.run_id}-")

    def in_kafka(self) -> list[tuple[str, int]]:
        """(sensor, reading number) of every record, in offset order within each partition."""
        decoded = (msgspec.json.decode(v) for v in topic_values(self.broker, self.topic))
        return [(str(r["sensor_id"]), int(r["value"])) for r in decoded]

    def pool_metric(self, pool: int, name: str, **labels: str) -> float:
        """A metric of pool number `pool` (its /metrics, summed over `labels`; 0 when absent)."""
        return metric(scrape(self.pool_ports[pool]), name, **labels)

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
    aggregated: int = 0  # readings counted by the minute aggregates (must equal `stored`)
    kafka_duplicates: list[int] = field(default_factory=list)  # readings in Kafka more than once
    out_of_order: list[int] = field(default_factory=list)  # before a reading acknowledged before it was sent
    api_recovery_s: float = 0.0  # heal -> the last non-2xx sent (sends and heal on one clock)
    tail_s: float = 0.0  # how long the load went on after the heal
    final_window: int = 0  # requests sent in the last RECOVERED_WINDOW_S of the load
    final_window_not_2xx: int = 0  # of those, the ones not answered 2xx
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
        if self.aggregated != self.stored:
            out.append(f"the minute aggregates count {self.aggregated} readings, the store holds {self.stored}")
        if self.kafka_duplicates:
            out.append(
                f"{len(self.kafka_duplicates)} readings are in Kafka more than once: {self.kafka_duplicates[:20]}"
            )
        if self.out_of_order:
            out.append(
                f"{len(self.out_of_order)} readings precede in their partition one acknowledged before they were"
                f" sent: {self.out_of_order[:20]}"
            )
        if self.api_recovery_s > API_RECOVERY_BOUND_S:
            out.append(
                f"non-2xx answers went on {self.api_recovery_s:.1f} s after the fault healed"
                f" (bound {API_RECOVERY_BOUND_S:g} s)"
            )
        if self.tail_s <= API_RECOVERY_BOUND_S:
            out.append(
                f"the load ran {self.tail_s:.1f} s after the heal, not past the {API_RECOVERY_BOUND_S:g} s bound"
            )
        if self.final_window == 0 or self.final_window_not_2xx:
            out.append(
                f"not recovered: {self.final_window_not_2xx} of the {self.final_window} requests of the load's"
                f" last {RECOVERED_WINDOW_S:g} s were not answered 2xx"
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
    sent: int,
    healed_at: float,
    load_ended: float,
    command: str = "",
    notes: str = "",
) -> Verdict:
    """Wait (bounded) for the pool to catch up, then classify every reading of the run.

    `sent`: the requests the load sent (one outcome each); `healed_at` and `load_ended`:
    time.monotonic(), the clock of the outcomes' sent_at."""
    outcomes = list(outcomes)
    ok = {o.i for o in outcomes if o.status is not None and 200 <= o.status < 300}
    rejected = {o.i for o in outcomes if o.status is not None and 400 <= o.status < 500}
    other_5xx = [o for o in outcomes if o.status is not None and o.status >= 500 and o.status != 503]
    later = [o.sent_at for o in outcomes if o.i not in ok and o.sent_at >= healed_at]
    last_sent = max((o.sent_at for o in outcomes), default=healed_at)
    window = [o for o in outcomes if o.sent_at >= last_sent - RECOVERED_WINDOW_S]
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
    records = pipeline.in_kafka()
    kafka = Counter(i for _, i in records)
    numbers = {o.i for o in outcomes}
    verdict.sent = sent
    verdict.load_s = max((o.sent_s for o in outcomes), default=0.0)
    verdict.ok = len(ok)
    verdict.rejected = len(rejected)
    verdict.other_5xx = len(other_5xx)
    verdict.indeterminate = len(outcomes) - len(ok) - len(rejected) - len(other_5xx)
    verdict.stored = sum(stored.values())
    verdict.aggregated = pipeline.aggregated()
    verdict.indeterminate_stored = sum(1 for i in stored if i in numbers and i not in ok and i not in rejected)
    verdict.lost = sorted(ok - set(stored))
    verdict.lost_in_kafka = [i for i in verdict.lost if i in kafka]
    verdict.duplicates = sorted(i for i, n in stored.items() if n > 1)
    verdict.phantoms = sorted(i for i in stored if i not in numbers or i in rejected)
    verdict.kafka_duplicates = sorted(i for i, n in kafka.items() if n > 1)
    verdict.out_of_order = out_of_order(records, outcomes)
    verdict.api_recovery_s = max(later) - healed_at if later else 0.0
    verdict.tail_s = last_sent - healed_at
    verdict.final_window = len(window)
    verdict.final_window_not_2xx = sum(1 for o in window if o.i not in ok)
    verdict.save()
    print(f"[chaos] {scenario}: {json.dumps({k: v for k, v in asdict(verdict).items() if not isinstance(v, list)})}")
    return verdict


def out_of_order(records: list[tuple[str, int]], outcomes: Iterable[Outcome]) -> list[int]:
    """Readings that precede, in their key's order in Kafka, a reading whose 2xx came before
    they were sent: what the producer's idempotence (no reordering on retry) rules out.
    Readings sent concurrently may land in either order; those are not compared."""
    by_number = {o.i: o for o in outcomes}
    per_key: dict[str, list[int]] = {}
    seen: set[int] = set()
    for key, i in records:
        if i not in seen:  # the first copy is the one that counts
            seen.add(i)
            per_key.setdefault(key, []).append(i)
    bad: list[int] = []
    for numbers in per_key.values():
        earliest_ack_after = float("inf")  # the earliest 2xx among the records after this one
        for i in reversed(numbers):
            o = by_number.get(i)
            if o is None:
                continue
            if earliest_ack_after < o.sent_at:
                bad.append(i)
            if o.status is not None and 200 <= o.status < 300 and o.answered_at is not None:
                earliest_ack_after = min(earliest_ack_after, o.answered_at)
    return sorted(bad)
