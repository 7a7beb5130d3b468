"""Read the names docs/contract.md fixes, so tests hold the code to the page (and not to a copy)."""

from __future__ import annotations

import re

from harness.process import ROOT

CONTRACT = ROOT / "docs" / "contract.md"


def section(heading: str) -> str:
    """The text under `heading` (a `## ` or `### ` line), up to the next heading of any level."""
    text = CONTRACT.read_text()
    start = text.index(f"{heading}\n") + len(heading) + 1
    end = re.compile(r"^#{2,3} ", re.M).search(text, start)
    return text[start : end.start() if end else len(text)]


def table_rows(text: str) -> list[list[str]]:
    """The cells of every table body row in `text`."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[-:| ]+\|$", line):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:] if rows else rows  # the header row


def variables() -> dict[str, str]:
    """Variable -> default, from the configuration table ("A / B" rows give both)."""
    found: dict[str, str] = {}
    for name_cell, default_cell, *_ in table_rows(section("### API and pool")):
        names = re.findall(r"[A-Z][A-Z0-9_]*\*?", name_cell)
        defaults = [d.strip() for d in default_cell.split(" / ")] if len(names) > 1 else [default_cell]
        for name, default in zip(names, defaults, strict=False):
            found[name] = default
    return found


def metrics() -> dict[str, bool]:
    """Metric name -> whether the page marks it as an extra (not used by dashboards/alerts)."""
    found = {}
    for first, *rest in table_rows(section("## Metrics (names are fixed; dashboards and alerts use them)")):
        match = re.fullmatch(r"`(sensor_[a-z0-9_]+)`", first)
        if match:
            found[match.group(1)] = "**extra**" in " ".join(rest)
    return found


METRIC_MODULES = ("service/metrics.py", "consumer_pool/metrics.py", "pipeline/stages.py")


def defined_metrics() -> set[str]:
    """The metric names the code registers (their first argument, a string literal)."""
    code = "".join((ROOT / p).read_text() for p in METRIC_MODULES)
    return set(re.findall(r"\(\s*\"(sensor_[a-z0-9_]+)\"", code))
