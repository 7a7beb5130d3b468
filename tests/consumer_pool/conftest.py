"""Fixtures for the pool: a fresh PostgreSQL database per test, and a factory that starts
`python -m consumer_pool` (always stopped afterwards)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from harness.poll import wait_until
from harness.process import PYTHON, Process, spawn

PoolFactory = Callable[..., Process]


@pytest.fixture
def pool_env(pipeline_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**pipeline_env, "CONSUMER_METRICS_DIR": str(tmp_path / "pool-metrics"), "SINK": "sqlite"}


@pytest.fixture
def start_pool(pool_env: dict[str, str], tmp_path: Path) -> Iterator[PoolFactory]:
    """Start the pool with extra env and CLI args; waits for `Listening to topic:`."""
    with ExitStack() as stack:
        count = 0

        def start(*args: str, wait: bool = True, **extra: str) -> Process:
            nonlocal count
            count += 1
            env = {**pool_env, **extra}
            proc = stack.enter_context(
                spawn([PYTHON, "-m", "consumer_pool", *args], env, tmp_path / f"pool-{count}.log")
            )
            if wait:
                listening = f"Listening to topic: {env['TOPIC_NAME']}"
                wait_until("the pool to start", lambda: listening in proc.log(), 60, proc)
            return proc

        yield start
