"""pyproject.toml declares the ranges, requirements*.txt are the pinned lock: they must agree.

Every pinned package must be declared (as a dependency or in an extra) and its pin must be
inside the declared range, with the same environment marker; every declared dependency must
be pinned; the runtime lock (what the Docker image installs) pins exactly the runtime
dependencies, nothing from an extra.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from harness.process import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # NOTE: Python 3.10 has no tomllib; tomli is the same parser (pinned with that marker)
    import tomli as tomllib

PYPROJECT = ROOT / "pyproject.toml"
RUNTIME_LOCK = "requirements-runtime.txt"
LOCKS = (RUNTIME_LOCK, "requirements.txt", "requirements-ray.txt")
# Ray's own dependencies, pinned in requirements-ray.txt so its install is reproducible, but
# not ours to declare.
TRANSITIVE = frozenset({"filelock", "protobuf"})


def read_lock(path: Path) -> dict[str, Requirement]:
    """The pins of one lock file (not following `-r`), by canonical name."""
    pins: dict[str, Requirement] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "-r ")):
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in pins, f"{path.name}: {req.name} pinned twice"
        pins[name] = req
    return pins


def declared(project: dict) -> dict[str, tuple[str, Requirement]]:
    """Every declared requirement by canonical name, with where it is declared."""
    found: dict[str, tuple[str, Requirement]] = {}
    groups = {"dependencies": project["dependencies"], **project.get("optional-dependencies", {})}
    for group, lines in groups.items():
        for line in lines:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            assert name not in found, f"{req.name} declared twice ({found[name][0]} and {group})"
            found[name] = (group, req)
    return found


def pinned_version(req: Requirement) -> str:
    (spec,) = req.specifier
    assert spec.operator == "==", f"{req} is not a pin"
    return spec.version


def mismatches(project: dict, locks: dict[str, dict[str, Requirement]]) -> list[str]:
    """What disagrees between the declared ranges and the pins (empty when they agree)."""
    problems: list[str] = []
    wanted = declared(project)
    pins: dict[str, tuple[str, Requirement]] = {}
    for lock, lock_pins in locks.items():
        for name, req in lock_pins.items():
            if name in pins:
                problems.append(f"{req.name} pinned in both {pins[name][0]} and {lock}")
            pins[name] = (lock, req)
    for name, (lock, pin) in sorted(pins.items()):
        if name in TRANSITIVE:
            continue
        if name not in wanted:
            problems.append(f"{lock}: {pin.name} is pinned but not declared in pyproject.toml")
            continue
        group, req = wanted[name]
        version = pinned_version(pin)
        if not req.specifier.contains(version, prereleases=True):
            problems.append(f"{lock}: {pin.name}=={version} is outside pyproject's {req.specifier} ({group})")
        if str(pin.marker or "") != str(req.marker or ""):
            problems.append(f"{lock}: {pin.name} marker {pin.marker} differs from pyproject's {req.marker}")
        if pin.extras != req.extras:
            problems.append(f"{lock}: {pin.name} extras {sorted(pin.extras)} differ from {sorted(req.extras)}")
        if (group == "dependencies") != (lock == RUNTIME_LOCK):
            problems.append(f"{pin.name} ({group}) must be pinned in {RUNTIME_LOCK} if and only if it is a dependency")
    for name, (group, req) in sorted(wanted.items()):
        if name not in pins:
            problems.append(f"{req.name} ({group}) is declared but pinned in none of {', '.join(locks)}")
    return problems


def load() -> tuple[dict, dict[str, dict[str, Requirement]]]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return project, {lock: read_lock(ROOT / lock) for lock in LOCKS}


def test_pins_agree_with_the_declared_ranges() -> None:
    project, locks = load()
    assert not mismatches(project, locks)


def test_requirements_txt_includes_the_runtime_lock() -> None:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    assert f"-r {RUNTIME_LOCK}" in lines


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p, locks: locks[RUNTIME_LOCK].pop("falcon"), "falcon (dependencies) is declared but pinned in none"),
        (
            lambda p, locks: locks[RUNTIME_LOCK].__setitem__("falcon", Requirement("falcon==5.0.0")),
            "falcon==5.0.0 is outside",
        ),
        (
            lambda p, locks: locks["requirements.txt"].__setitem__("left-pad", Requirement("left-pad==1.0")),
            "left-pad is pinned but not declared",
        ),
        (
            lambda p, locks: locks["requirements.txt"].__setitem__("falcon", locks[RUNTIME_LOCK].pop("falcon")),
            "must be pinned in requirements-runtime.txt if and only if",
        ),
        (
            lambda p, locks: p["dependencies"].append("left-pad>=1"),
            "left-pad (dependencies) is declared but pinned in none",
        ),
        (
            lambda p, locks: locks[RUNTIME_LOCK].__setitem__("backports-zstd", Requirement("backports.zstd==1.8.0")),
            "marker None differs",
        ),
    ],
)
def test_a_mismatch_is_found(change, expected: str) -> None:
    """The check can fail: each kind of disagreement is reported."""
    project, locks = load()
    assert not mismatches(project, locks)
    change(project, locks)
    problems = mismatches(project, locks)
    assert any(expected in p for p in problems), problems


def test_console_scripts_name_real_functions() -> None:
    import importlib

    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert set(scripts) == {"sensor-api", "sensor-pool"}
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_package_data_ships_every_dashboard_file() -> None:
    """The wheel must carry the dashboard's files: each one is matched by a package-data glob."""
    setuptools = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]
    assert {"pipeline*", "service*", "consumer_pool*", "store*"} <= set(setuptools["packages"]["find"]["include"])
    patterns = setuptools["package-data"]["service"]
    shipped = {path for pattern in patterns for path in (ROOT / "service").glob(pattern) if path.is_file()}
    files = {
        path
        for path in (ROOT / "service" / "dashboard").rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    }
    assert files, "found no dashboard files"
    assert files <= shipped, sorted(str(p.relative_to(ROOT)) for p in files - shipped)
