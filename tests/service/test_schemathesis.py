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
from store.sqlite import SqliteWriter
from tests.conftest import ApiFactory

pytestmark = pytest.mark.integration

SCHEMATHESIS = str(Path(PYTHON).parent / "schemathesis")


READ_PATHS = "^/(sensors|alerts|stream|pipeline)"


def schemathesis(base: str, cwd: Path, *options: str) -> None:
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
        # NOTE: GET /stream is an endless event stream (tests/service/read/test_read_api.py covers it)
        "--exclude-path",
        "/stream",
        *options,
    ]
    print(f"schemathesis seed {seed} (SCHEMATHESIS_SEED={seed} replays it)")
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=240)
    print(done.stdout[-6000:])
    assert done.returncode == 0, (
        f"schemathesis (seed {seed}) found failures:\n{done.stdout[-20000:]}{done.stderr[-3000:]}"
    )
    # NOTE: on an empty store most read answers are 404s, which schemathesis reports as a
    # warning ("most responses 404"), not a failure; a failure always fails the return code.
    assert "No issues found" in done.stdout or " warning" in done.stdout.splitlines()[-1]


def test_schemathesis_finds_nothing_with_every_check_on(start_api: ApiFactory, tmp_path: Path) -> None:
    # NOTE: the clock-skew guard's bound is the API's clock plus MAX_FUTURE_SKEW_S, which no
    # JSON schema can state, so a schema-valid timestamp in year 5000 would be "rejected": the
    # guard is off here (a skew past year 9999), and its 422 is checked through the real API by
    # tests/consumer_pool/sinks/test_hostile.py and on the decoder by the properties.
    base, _ = start_api(MAX_FUTURE_SKEW_S="1e12")
    schemathesis(base, tmp_path, "--exclude-path-regex", READ_PATHS)


def test_schemathesis_on_the_read_api(start_api: ApiFactory, tmp_path: Path) -> None:
    """The read endpoints on a real (empty) store. Every check but one: a `cursor` is opaque
    (only what the API returned is valid), so "schema-valid data is accepted" cannot hold for
    it; its 400 is checked by tests/service/read/test_read_api.py instead."""
    db = tmp_path / "store" / "readings.db"
    store = SqliteWriter(str(db))
    store.setup()
    store.close()
    base, _ = start_api(SINK="sqlite", SQLITE_PATH=str(db))
    schemathesis(base, tmp_path, "--include-path-regex", READ_PATHS, "--exclude-checks", "positive_data_acceptance")
