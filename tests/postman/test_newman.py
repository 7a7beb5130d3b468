"""The Postman collection, run by newman (pinned in postman/package.json) against a real API.

newman is installed with `npm ci` into postman/node_modules on first use (and again when
package-lock.json changes); the fixture does it, so `make test` needs no extra step.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.npm import npm_ci
from harness.process import ROOT, free_port

pytestmark = pytest.mark.integration  # real processes (see tests/conftest.py)

POSTMAN = ROOT / "postman"
COLLECTION = POSTMAN / "sensor-api.postman_collection.json"
ENVIRONMENT = POSTMAN / "local.postman_environment.json"
NEWMAN = POSTMAN / "node_modules" / ".bin" / "newman"


@pytest.fixture(scope="session")
def newman() -> Path:
    """postman/node_modules/.bin/newman, installed with `npm ci` when missing or stale."""
    npm_ci(POSTMAN)
    assert NEWMAN.exists()
    return NEWMAN


def requests_in(items: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for item in items:
        names.extend(requests_in(item["item"]) if "item" in item else [item["name"]])
    return names


def run_newman(newman: Path, base_url: str, report: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(newman),
            "run",
            str(COLLECTION),
            "--environment",
            str(ENVIRONMENT),
            "--env-var",
            f"baseUrl={base_url}",
            "--reporters",
            "cli,json",
            "--reporter-json-export",
            str(report),
            "--timeout-request",
            "30000",
            "--color",
            "off",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=POSTMAN,
    )


def test_collection_passes_against_the_api(newman: Path, start_api: Callable[..., Any], tmp_path: Path) -> None:
    base, _ = start_api()
    report_path = tmp_path / "newman.json"
    result = run_newman(newman, base, report_path)
    assert result.returncode == 0, f"newman failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"

    run = json.loads(report_path.read_text())["run"]
    expected = requests_in(json.loads(COLLECTION.read_text())["item"])
    executed = [e["item"]["name"] for e in run["executions"]]
    assert executed == expected, "every request of the collection ran, in order"
    assert run["stats"]["assertions"]["failed"] == 0
    assert run["stats"]["assertions"]["total"] >= 5 * len(expected), "each request asserts status and body"
    assert not run["failures"]
    statuses = {e["item"]["name"]: e["response"]["code"] for e in run["executions"]}
    assert statuses["POST /sensor: the seed's reading"] == 202
    assert {statuses[n] for n in expected if n[:3].isdigit()} == {400, 413, 415, 422}


def test_collection_passes_with_api_keys(newman: Path, start_api: Callable[..., Any], tmp_path: Path) -> None:
    """With API_KEYS set, the environment's apiKey is sent as X-API-Key on every POST."""
    base, _ = start_api(API_KEYS="first-key,second-key")
    result = run_newman(newman, base, tmp_path / "keys.json", "--env-var", "apiKey=second-key")
    assert result.returncode == 0, f"newman failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    wrong = run_newman(newman, base, tmp_path / "wrong.json", "--env-var", "apiKey=wrong-key", "--folder", "Readings")
    assert wrong.returncode != 0
    codes = {e["response"]["code"] for e in json.loads((tmp_path / "wrong.json").read_text())["run"]["executions"]}
    assert codes == {401}


def test_newman_fails_when_the_api_does_not_answer(newman: Path, tmp_path: Path) -> None:
    """The collection's assertions fail (and newman exits non-zero) when nothing answers."""
    result = run_newman(
        newman, f"http://127.0.0.1:{free_port()}", tmp_path / "down.json", "--folder", "Health and description"
    )
    assert result.returncode != 0
    run = json.loads((tmp_path / "down.json").read_text())["run"]
    assert run["failures"]
