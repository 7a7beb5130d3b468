"""The npm projects the tests drive (postman/: newman; web/: playwright-core and uPlot).

`npm ci` installs exactly what package-lock.json pins into the project's node_modules when it
is missing or was installed from another lock file; one installer at a time (a lock on the
project's package.json), so parallel test sessions do not install over each other.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

STAMP = ".installed-lock-sha256"


class NpmError(RuntimeError):
    """npm is missing or `npm ci` failed."""


def npm_ci(project: Path, timeout: float = 400) -> Path:
    """The project's node_modules, installed from its lock file when missing or stale."""
    npm = shutil.which("npm")
    if not npm:
        raise NpmError("npm is needed for the node tools of the tests (Debian: apt-get install nodejs npm)")
    modules = project / "node_modules"
    digest = hashlib.sha256((project / "package-lock.json").read_bytes()).hexdigest()
    with open(project / "package.json", "rb") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        stamp = modules / STAMP
        if not (stamp.exists() and stamp.read_text() == digest):
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=project,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if result.returncode != 0:
                raise NpmError(f"npm ci in {project} failed:\n{result.stdout}\n{result.stderr}")
            stamp.write_text(digest)
    return modules
