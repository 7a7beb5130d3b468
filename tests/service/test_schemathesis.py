"""The OpenAPI document tells the truth: schemathesis fuzzes the real API (gunicorn, a real
broker) from its own `/openapi.json`, every check on (server errors, status codes, content
types, headers, response schemas, schema-invalid data rejected and schema-valid data
accepted, ...), and must find nothing.

SCHEMATHESIS_EXAMPLES sets the examples per operation (default 100: about 15 s here);
SCHEMATHESIS_SEED replays a run (the seed is printed either way).
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from harness.process import PYTHON, ROOT
from tests.conftest import ApiFactory

pytestmark = pytest.mark.integration

SCHEMATHESIS = str(Path(PYTHON).parent / "schemathesis")


def test_schemathesis_finds_nothing_with_every_check_on(start_api: ApiFactory, tmp_path: Path) -> None:
    base, _ = start_api()
    seed = os.environ.get("SCHEMATHESIS_SEED") or str(random.getrandbits(64))
    examples = os.environ.get("SCHEMATHESIS_EXAMPLES") or "100"
    report = ROOT / "reports" / "schemathesis"
    args = [
        SCHEMATHESIS,
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        examples,
        "--seed",
        seed,
        "--workers",
        "2",
        "--request-timeout",
        "20",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(report),
    ]
    print(f"schemathesis seed {seed} (SCHEMATHESIS_SEED={seed} replays it)")
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    print(done.stdout[-6000:])
    assert done.returncode == 0, (
        f"schemathesis (seed {seed}) found failures:\n{done.stdout[-20000:]}{done.stderr[-3000:]}"
    )
    assert "No issues found" in done.stdout
