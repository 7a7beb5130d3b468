"""The monitoring files on their own: promtool's checks, the dashboard's structure, and
that dashboard and alerts cover every metric docs/contract.md names."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from harness.process import ROOT
from tests import contract
from tests.monitoring.files import (
    ALERT_RULES,
    ALERT_TESTS,
    DATASOURCES,
    PROMETHEUS_CONFIG,
    alert_rules,
    dashboard,
    load_yaml,
    metric_names,
    metric_parts,
    panels,
    prometheus_targets,
    sql_targets,
    substitute_variables,
)

# The metrics the contract fixes for dashboards and alerts (its extras excepted).
CONTRACT_METRICS = {name for name, extra in contract.metrics().items() if not extra}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool not found: apt-get install prometheus (.ci/run does)"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_the_metrics_exist_in_the_code() -> None:
    """Every metric docs/contract.md names (and the dashboard and alerts use) is defined by the
    service or the pool; the live test then proves they are exported."""
    defined = contract.defined_metrics()
    assert defined >= CONTRACT_METRICS, sorted(CONTRACT_METRICS - defined)


def test_promtool_check_config() -> None:
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(ALERT_RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(alert_rules())} rules found" in result.stdout


def test_promtool_alert_unit_tests() -> None:
    """alerts.test.yml: each alert fires on synthetic data that should fire it, and not otherwise."""
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", ALERT_TESTS.read_text()))
    assert tested == {rule["alert"] for rule in alert_rules()}, "every alert needs a unit test"


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation makes `promtool test rules` fail: the unit tests really compare."""
    text = ALERT_TESTS.read_text()
    broken = text.replace('summary: "No consumer worker is alive"', 'summary: "All workers are fine"')
    assert broken != text
    shutil.copy(ALERT_RULES, tmp_path / ALERT_RULES.name)
    (tmp_path / "broken.test.yml").write_text(broken)
    result = promtool("test", "rules", str(tmp_path / "broken.test.yml"))
    assert result.returncode != 0
    assert "ConsumerNoWorkersAlive" in result.stdout + result.stderr


def test_alerts_cover_the_issue() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    covered = {name: metric_names(rule["expr"]) for name, rule in rules.items()}
    assert "sensor_pipeline_e2e_latency_seconds" in covered["PipelineE2ELatencyP99High"]
    assert "> 0.2" in rules["PipelineE2ELatencyP99High"]["expr"]
    assert "sensor_consumer_lag" in covered["ConsumerLagGrowing"]
    assert "sensor_kafka_delivery_errors_total" in covered["KafkaDeliveryErrors"]
    assert "sensor_consumer_worker_restarts_total" in covered["ConsumerWorkerRestarts"]
    assert 'status=~"5.."' in rules["ApiHigh5xxRate"]["expr"]
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert metric_parts(rule["expr"]), rule["alert"]


def test_dashboard_structure() -> None:
    dash = dashboard()
    assert dash["uid"] == "sensor-pipeline" and dash["title"]
    all_panels = panels(dash)
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    provisioned = {d["uid"]: d["type"] for d in load_yaml(DATASOURCES)["datasources"]}
    for panel in all_panels:
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            ds = target.get("datasource") or panel["datasource"]
            assert provisioned.get(ds["uid"]) == ds["type"], f"{panel['title']}: unknown datasource {ds}"
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]


def test_dashboard_covers_every_contract_metric() -> None:
    used = set().union(*(metric_names(expr) for _, expr in prometheus_targets(dashboard())))
    assert {re.sub(r"_total$", "", m) for m in CONTRACT_METRICS} <= {re.sub(r"_total$", "", m) for m in used}
    assert used <= CONTRACT_METRICS | {re.sub(r"_total$", "", m) for m in CONTRACT_METRICS}, used


def test_dashboard_expressions_parse(tmp_path: Path) -> None:
    """promtool parses every panel query (as recording rules) once the variables are substituted."""
    targets = prometheus_targets(dashboard())
    rules = []
    for index, (title, expr) in enumerate(targets):
        concrete = substitute_variables(expr)
        assert "$" not in concrete, title
        rules.append({"record": f"panel_{index}", "expr": concrete})
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(targets)} rules found" in result.stdout


def test_latest_values_panel_reads_the_readings_table() -> None:
    ((title, sql),) = sql_targets(dashboard())
    assert re.search(r"\bFROM readings\b", sql)
    for column in ("sensor_id", "type", "value", "unit", "location", "ts", "ingested_at_ns", "stored_at_ns"):
        assert re.search(rf"\b{column}\b", sql), f"{title}: {column}"
