"""The fault suite and the gate run with what a 2xx means pinned, whatever the developer's
environment says (a `.env` or shell with ACK_MODE=enqueued must not weaken them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.chaos import Pipeline
from harness.process import PINNED_ENV, pinned, unique
from pipeline.settings import Settings

pytestmark = pytest.mark.integration


def test_the_fault_suites_pipeline_pins_the_ack_mode(
    kafka_broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACK_MODE", "enqueued")
    pipeline = Pipeline(kafka_broker, unique("pin"), tmp_path, {"ACK_MODE": "enqueued"})
    try:
        assert pipeline.env["ACK_MODE"] == "delivered"
        assert Settings.from_env(pipeline.env, dotenv=False).api.ack_mode == "delivered"
    finally:
        pipeline.stop()


def test_pinned_wins_over_the_environment_and_the_caller() -> None:
    assert pinned({"ACK_MODE": "enqueued", "SINK": "postgres"}) == {**PINNED_ENV, "SINK": "postgres"}
