"""The fault suite: each scenario under open-loop load, the same invariants on its readings
(harness/chaos.py), and a check that its fault took effect (a fault that never happened
would pass every invariant). RELIABILITY.md has the measured tables."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.chaos import REPORTS, Pipeline, Verdict, kill9, pool_workers
from harness.cluster import Cluster
from harness.netns import NetemUnavailable
from harness.openloop import OpenLoop, Outcome, without_a_status
from harness.poll import wait_until
from harness.process import ROOT, free_port
from tests.chaos.conftest import RATE

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(900)]

Scenario = Callable[..., Verdict]
SENDER_BEHIND_S = 2.0  # the open-loop sender this late on its schedule was stalled itself


def pool_log(scenario: str, pool: int = 0) -> str:
    return (REPORTS / scenario / f"pool-{pool}.log").read_text(errors="replace")


def no_problems(verdict: Verdict) -> None:
    assert not verdict.problems(), "\n".join(verdict.problems())


def outcomes_of(scenario: str) -> list[Outcome]:
    lines = (REPORTS / scenario / "outcomes.jsonl").read_text().splitlines()
    return [Outcome(**json.loads(line)) for line in lines]


def held_during(check: Callable[[], object], seconds: float) -> bool:
    """Poll `check` for `seconds` (the fault's whole duration) and say whether it ever held;
    an exception (a metadata request timing out mid-fault) counts as not yet."""
    seen = False
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not seen:
            try:
                seen = bool(check())
            except Exception:
                pass
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    return seen


def in_sync_for(cluster: Cluster, topic: str, seconds: float) -> bool:
    """Every replica of `topic` in sync at every look for `seconds` (one look is not enough)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not cluster.fully_replicated(topic):
            return False
        time.sleep(0.5)
    return True


def unanswered_during(outcomes: list[Outcome], windows: list[tuple[float, float]]) -> list[bool]:
    """Per fault window (time.monotonic()), whether some request sent in it got no 2xx."""
    failed = [o.sent_at for o in outcomes if o.status is None or not 200 <= o.status < 300]
    return [any(start <= t <= end for t in failed) for start, end in windows]


@pytest.mark.chaos_ci
def test_leader_kill9_five_times(scenario: Scenario, kafka_cluster: Cluster) -> None:
    """The leader of partition 0 killed with -9, five times in a row, each time restarted."""
    windows: list[tuple[float, float]] = []

    def fault(p: Pipeline, load: OpenLoop) -> None:
        for _ in range(5):
            killed = time.monotonic()
            kafka_cluster.kill(kafka_cluster.leader(p.topic, 0))
            time.sleep(3)
            windows.append((killed, time.monotonic()))
            kafka_cluster.start()
            # NOTE: right after a restart the metadata can report an ISR the node has not
            # rejoined yet; the next kill then hits a node no acknowledgement waits for and has
            # no effect (seen: a round with every request answered 2xx). Wait until it holds.
            wait_until("all replicas back in sync for 5 s", lambda: in_sync_for(kafka_cluster, p.topic, 5), 90)

    no_problems(scenario(fault))
    # The kills took effect: requests sent while a leader was down got no 2xx. Not required of
    # every kill: a kill that lands just as the metadata moves the leadership away can leave
    # every request answered 2xx (seen once in five on a loaded machine); each kill's own
    # effect is printed. Fails when no kill had any effect.
    outcomes = outcomes_of("leader_kill9_five_times")
    hit = unanswered_during(outcomes, windows)
    print(f"[chaos] kills with requests not answered 2xx while the leader was down: {hit}")
    assert any(hit), f"no kill of the leader left a request without a 2xx: {hit}"
    # Every request still got an HTTP status: 2xx, 429 or 503 with Retry-After, never a
    # reset, an EOF or a timeout (docs/contract.md, "Every request gets an HTTP status").
    # NOTE: a timeout of a request the sender itself sent more than SENDER_BEHIND_S late is not
    # counted: the sender's loop was stalled then (CPU-starved on this loaded 2-core box; seen
    # 4.5-23 s behind its schedule), so its 15 s clock includes its own stall. Resets and EOFs
    # always count; both kinds are printed.
    bad = without_a_status(outcomes)
    stalled = [o for o in bad if o.error.startswith("TimeoutError") and o.sent_s - o.i / RATE > SENDER_BEHIND_S]
    print(f"[chaos] without a status: {len(bad)}, of which timeouts while the sender was stalled: {len(stalled)}")
    counted = [o for o in bad if o not in stalled]
    kinds = Counter(o.error[:80] for o in counted)
    assert not counted, f"{len(counted)} of {len(outcomes)} requests without an allowed status: {kinds}"


@pytest.mark.chaos_ci
def test_worker_paused_past_session_timeout(scenario: Scenario) -> None:
    """A pool worker SIGSTOPped 15 s (session timeout 10 s), then resumed: the zombie's
    partitions move, its late commit is refused, nothing is lost or stored twice."""

    paused: list[int] = []

    def fault(p: Pipeline, load: OpenLoop) -> None:
        worker = pool_workers(p.pools[0])[0]
        paused.append(worker)
        os.kill(worker, signal.SIGSTOP)
        try:
            time.sleep(15)
        finally:
            os.kill(worker, signal.SIGCONT)

    no_problems(scenario(fault))
    # The zombie learnt on waking that its partitions had moved (and its commit was refused).
    log = pool_log("worker_paused_past_session_timeout")
    assert any(f" {paused[0]}] " in line and "lost partitions" in line for line in log.splitlines()), log[-3000:]


@pytest.mark.chaos_ci
def test_api_kill9_mid_stream(scenario: Scenario) -> None:
    """The API (gunicorn and its workers) killed with -9 under load, then started again."""

    def fault(p: Pipeline, load: OpenLoop) -> None:
        assert p.api is not None
        kill9(p.api)
        time.sleep(3)
        p.start_api()

    verdict = scenario(fault)
    no_problems(verdict)
    assert verdict.indeterminate > 0, "no request went unanswered while the API was down"


def test_leader_paused_past_request_timeout(scenario: Scenario, kafka_cluster: Cluster) -> None:
    """The leader SIGSTOPped 35 s (librdkafka's request.timeout.ms is 30 s), then resumed."""
    windows: list[tuple[float, float]] = []

    def fault(p: Pipeline, load: OpenLoop) -> None:
        leader = kafka_cluster.leader(p.topic, 0)
        paused = time.monotonic()
        kafka_cluster.pause(leader)
        try:
            time.sleep(35)
        finally:
            kafka_cluster.resume(leader)
            windows.append((paused, time.monotonic()))
        wait_until("all replicas back in sync", lambda: kafka_cluster.fully_replicated(p.topic), 90)

    no_problems(scenario(fault))
    hit = unanswered_during(outcomes_of("leader_paused_past_request_timeout"), windows)
    assert hit == [True] * len(windows) == [True], f"no request went unanswered 2xx while the leader was paused: {hit}"


def test_leader_cut_off_from_peers(scenario: Scenario, kafka_cluster: Cluster) -> None:
    """The leader's peer link down 20 s (clients still reach it), then healed."""

    def fault(p: Pipeline, load: OpenLoop) -> None:
        leader = kafka_cluster.leader(p.topic, 0)
        kafka_cluster.net.isolate(leader)
        try:
            shrank.append(held_during(lambda: not kafka_cluster.fully_replicated(p.topic), 20))
        finally:
            kafka_cluster.net.heal(leader)
        wait_until("all replicas back in sync", lambda: kafka_cluster.fully_replicated(p.topic), 90)

    shrank: list[bool] = []
    no_problems(scenario(fault))
    assert shrank == [True], "no partition's ISR shrank while the leader was cut off from its peers"


def test_two_of_three_controllers_down(scenario: Scenario, kafka_cluster: Cluster) -> None:
    """Two nodes (controllers and brokers) killed with -9 for 20 s: no quorum, no ISR of 2."""

    def fault(p: Pipeline, load: OpenLoop) -> None:
        for node in (1, 2):
            kafka_cluster.kill(node)
        time.sleep(20)
        kafka_cluster.start()
        wait_until("all replicas back in sync", lambda: kafka_cluster.fully_replicated(p.topic), 90)

    verdict = scenario(fault)
    no_problems(verdict)
    # With one node of three, acks=all cannot be met (min.insync.replicas=2): 503 or no answer.
    assert verdict.indeterminate > 0, "every request was acknowledged with two of three nodes down"


def test_rebalance_storm_and_a_host_killed(scenario: Scenario) -> None:
    """Two pool instances share the group (two hosts); a third is added and removed five
    times (SIGTERM, then kill -9 on alternate rounds); then one of the two is killed with -9."""

    replayed: list[float] = []

    def fault(p: Pipeline, load: OpenLoop) -> None:
        for round_ in range(5):
            extra = p.start_pool(workers=1)
            time.sleep(3)
            if round_ % 2:
                kill9(extra)
            else:
                extra.stop(30)
        kill9(p.pools[1])
        # The survivor replays what the killed pool stored but had not committed (the key absorbs it).
        duplicates = lambda: p.pool_metric(0, "sensor_consumer_readings_total", result="duplicate")  # noqa: E731
        replayed.append(wait_until("the survivor replayed the killed pool's uncommitted readings", duplicates, 30))

    # NOTE: commits at most every 2 s, so a pool killed with -9 has stored readings it has not
    # committed: the replay the exactly-once check must absorb does happen.
    no_problems(scenario(fault, pools=2, extra_env={"CONSUMER_COMMIT_INTERVAL_MS": "2000"}))
    assert replayed and replayed[0] > 0
    assigned = pool_log("rebalance_storm_and_a_host_killed").count("assigned partitions")
    assert assigned >= 3, f"pool 0 saw {assigned} assignments: no rebalance reached it"


def test_backlog_while_the_pool_is_down(scenario: Scenario) -> None:
    """The pool stopped for 60 s under load, then started: it catches up the backlog."""

    def fault(p: Pipeline, load: OpenLoop) -> str:
        p.pools[0].stop(30)
        time.sleep(60)
        backlog = p.lag()
        assert backlog >= RATE * 30, f"a backlog of {backlog} readings after 60 s without a pool at {RATE}/s"
        started = time.monotonic()
        p.start_pool()
        # Caught up: less than a second of readings behind (the load goes on meanwhile).
        wait_until("the backlog caught up", lambda: p.lag() < 50, 120, interval=0.5)
        return f"backlog of {backlog} readings caught up {time.monotonic() - started:.1f} s after the pool started"

    no_problems(scenario(fault))


def test_store_disk_full(scenario: Scenario, tmp_path: Path) -> None:
    """The SQLite file on a small filesystem of the suite's own (tmpfs, 16 MiB), filled up
    for 20 s, then freed: writes are retried, nothing committed meanwhile, nothing lost."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(small)], check=True, timeout=30)
    try:

        def fault(p: Pipeline, load: OpenLoop) -> None:
            filler = small / "filler"
            # NOTE: unbuffered, so ENOSPC comes from a write here and not from close().
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            try:
                while True:
                    os.write(fd, b"\0" * 65536)
            except OSError:
                pass  # ENOSPC: the filesystem is full
            finally:
                os.close(fd)
            time.sleep(20)
            filler.unlink()

        no_problems(scenario(fault, extra_env={"SQLITE_PATH": str(small / "readings.db")}))
        assert "database or disk is full" in pool_log("store_disk_full"), "the fault never reached the sink"
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False, timeout=30)


def test_postgres_stopped_60s(scenario: Scenario) -> None:
    """PostgreSQL (a server of the scenario's own) stopped 60 s under load, then restarted."""
    run_dir = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
    run_dir.chmod(0o755)  # the postgres user runs the server
    env = {**os.environ, "RUN_DIR": str(run_dir), "PG_PORT": str(free_port()), "PG_DB": "chaos"}
    script = str(ROOT / "deploy/local/postgres.sh")
    subprocess.run([script, "start"], env=env, check=True, timeout=120)
    try:
        url = subprocess.run([script, "url"], env=env, check=True, capture_output=True, text=True).stdout.strip()

        def fault(p: Pipeline, load: OpenLoop) -> None:
            subprocess.run([script, "stop"], env=env, check=True, timeout=120)
            time.sleep(60)
            subprocess.run([script, "start"], env=env, check=True, timeout=120)

        no_problems(scenario(fault, extra_env={"SINK": "postgres", "DATABASE_URL": url}))
        assert "PostgreSQL write failed" in pool_log("postgres_stopped_60s"), "the fault never reached the sink"
    finally:
        subprocess.run([script, "stop"], env=env, check=False, timeout=120)
        shutil.rmtree(run_dir, ignore_errors=True)


def test_netem_on_the_peer_links_or_an_honest_no(kafka_cluster: Cluster) -> None:
    """`tc netem` where the kernel has sch_netem; where it has not, that is reported, not faked
    (the slow-link fault then uses `tc tbf`, which works everywhere)."""
    try:
        kafka_cluster.net.netem(1, "delay", "20ms")
    except NetemUnavailable as e:
        kafka_cluster.net.shape(1, "10mbit")
        kafka_cluster.net.clear(1)
        pytest.skip(str(e))
    kafka_cluster.net.clear(1)


def test_leader_links_slowed(scenario: Scenario, kafka_cluster: Cluster) -> None:
    """The leader's client and peer links slowed to 256 kbit/s (tc tbf) for 20 s, then freed."""

    def fault(p: Pipeline, load: OpenLoop) -> None:
        leader = kafka_cluster.leader(p.topic, 0)
        window.append(time.monotonic())
        kafka_cluster.net.shape(leader, "256kbit")
        try:
            time.sleep(20)
        finally:
            kafka_cluster.net.clear(leader)
            window.append(time.monotonic())
        wait_until("all replicas back in sync", lambda: kafka_cluster.fully_replicated(p.topic), 90)

    window: list[float] = []
    no_problems(scenario(fault))
    # The fault took effect: requests sent while the links were slow waited longer for acks=all.
    outcomes = outcomes_of("leader_links_slowed")
    latency = lambda o: (o.answered_at or float("inf")) - o.sent_at  # noqa: E731
    before = [latency(o) for o in outcomes if o.sent_at < window[0]]
    during = [latency(o) for o in outcomes if window[0] <= o.sent_at < window[1]]
    assert before and during
    assert statistics.median(during) > 2 * statistics.median(before), (
        statistics.median(before),
        statistics.median(during),
    )
