"""Fixtures for the pool: a fresh PostgreSQL database per test, and a factory that starts
`python -m consumer_pool` (always stopped afterwards)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support import PYTHON, Process, spawn, wait_for

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

                def listening() -> bool:
                    if proc.popen.poll() is not None:
                        raise AssertionError(f"pool exited with {proc.popen.returncode}:\n{proc.log()[-3000:]}")
                    return f"Listening to topic: {env['TOPIC_NAME']}" in proc.log()

                wait_for(listening, 60, what="the pool to start")
            return proc

        yield start
