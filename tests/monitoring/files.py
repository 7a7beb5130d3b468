"""Paths and loaders for the monitoring and compose files the tests check."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from harness.process import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_DIR = ROOT / "monitoring" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERT_RULES = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
GRAFANA_DIR = ROOT / "monitoring" / "grafana"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD = GRAFANA_DIR / "dashboards" / "sensor-pipeline.json"

# Values that stand in for Grafana's built-in variables when an expression is evaluated
# outside Grafana (the test Prometheus scrapes every second).
GRAFANA_VARIABLES = {
    "__rate_interval": "30s",
    "__interval": "5s",
    "__range": "5m",
    "__range_s": "300",
}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    found: list[dict[str, Any]] = []
    for panel in dash["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def prometheus_targets(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every Prometheus query of the dashboard."""
    out = []
    for panel in panels(dash):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource") or {}
            if ds.get("type") == "prometheus":
                out.append((panel["title"], target["expr"]))
    return out


def sql_targets(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, SQL) for every query on the TimescaleDB datasource."""
    out = []
    for panel in panels(dash):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource") or {}
            if ds.get("uid") == "timescaledb":
                out.append((panel["title"], target["rawSql"]))
    return out


def substitute_variables(expr: str) -> str:
    """Replace $__rate_interval and friends ($name and ${name}) with concrete values."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VARIABLES:
            raise KeyError(f"no test value for Grafana variable ${name} in {expr!r}")
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERT_RULES)["groups"] for rule in group["rules"]]


_SPLIT_WORDS = ("and", "or", "unless")
_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def metric_parts(expr: str) -> list[str]:
    """The operands of `expr`'s top-level comparisons and set operators, without bare numbers.

    `a > 0.2` -> [a]; `a > 1000 and deriv(b[5m:]) > 0` -> [a, deriv(b[5m:])]. An operand
    that is a PromQL expression over metrics must return data on a live Prometheus, while
    the whole alert expression may legitimately be empty (no alert).
    """
    parts: list[str] = []
    depth = 0
    quote = ""
    start = 0
    i = 0
    while i < len(expr):
        ch = expr[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            op = next((c for c in _COMPARISONS if expr.startswith(c, i)), None)
            after_word = i > 0 and (expr[i - 1].isalnum() or expr[i - 1] == "_")
            word = None if after_word else next((w for w in _SPLIT_WORDS if re.match(rf"{w}\b", expr[i:])), None)
            if op or word:
                parts.append(expr[start:i])
                i += len(op or word or "")
                if expr[i:].lstrip().startswith("bool"):
                    i += expr[i:].index("bool") + len("bool")
                start = i
                continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts if p.strip() and not _NUMBER.match(p.strip())]


def metric_names(expr: str) -> set[str]:
    """Names of the sensor_* metrics an expression reads (histogram suffixes removed)."""
    names = set(re.findall(r"\b(sensor_[a-z0-9_]+)", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
