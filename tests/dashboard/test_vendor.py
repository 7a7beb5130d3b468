"""The vendored front-end files are the packages web/package-lock.json pins, byte for byte
(`node web/vendor.mjs --check` after `npm ci`, which verifies the lock's integrity hashes)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.npm import npm_ci
from harness.process import ROOT
from service.dashboard.resources import DIRECTORY

pytestmark = pytest.mark.integration  # npm ci and node

WEB = ROOT / "web"


@pytest.fixture(scope="module")
def check(tmp_path_factory: pytest.TempPathFactory):
    npm_ci(WEB)
    node = shutil.which("node")
    assert node, "Node.js is needed"

    def run(*folder: Path) -> subprocess.CompletedProcess[str]:
        args = [node, "vendor.mjs", "--check", *map(str, folder)]
        return subprocess.run(args, cwd=WEB, capture_output=True, text=True, timeout=60)

    return run


def test_the_vendored_files_equal_the_locked_packages(check) -> None:
    result = check()
    assert result.returncode == 0, result.stderr
    assert "3 files equal the locked packages" in result.stdout


def test_the_check_names_a_changed_missing_or_extra_file(check, tmp_path: Path) -> None:
    copy = tmp_path / "vendor"
    shutil.copytree(DIRECTORY / "vendor", copy)
    with open(copy / "uPlot.esm.js", "ab") as f:
        f.write(b"\n// edited by hand\n")
    (copy / "uPlot.LICENSE").unlink()
    (copy / "chart.js").write_text("export {}")
    result = check(copy)
    assert result.returncode == 1
    assert "uPlot.esm.js differs from uplot@1.6.32 dist/uPlot.esm.js" in result.stderr
    assert "uPlot.LICENSE is missing" in result.stderr
    assert "chart.js is not from a locked package" in result.stderr
