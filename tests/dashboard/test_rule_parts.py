"""The dashboard's rule parser (service/dashboard/static/rule.js, run by node) reads every
part of the canonical rule text the pool writes (pipeline/alerts.py) as the pool means it."""

from __future__ import annotations

import json
import shutil
import subprocess

from harness.process import ROOT
from pipeline.alerts import duration_text, parse_rules

RULES = (
    "temperature>40,greenhouse-*:temperature>40 for 2m clear<38,site:a:*:humidity<10 clear>=15,"
    "co2>=1000.5 for 90s,temperature silent 5m,barn-?:pressure silent 1h,x<=-3.5 for 1.5h clear>-1"
)


def test_rule_js_reads_every_part_of_the_canonical_rule_text() -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed"
    rules = parse_rules(RULES)
    module = (ROOT / "service" / "dashboard" / "static" / "rule.js").as_uri()
    script = (
        f"import({json.dumps(module)}).then((m) => console.log(JSON.stringify("
        f"{json.dumps([str(r) for r in rules])}.map((t) => [m.ruleParts(t), m.describeRule(t)]))))"
    )
    result = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    for rule, (parts, sentence) in zip(rules, parsed, strict=True):
        assert parts == {
            "pattern": rule.pattern,
            "type": rule.type,
            "op": None if rule.silent else rule.op,
            "threshold": None if rule.silent else f"{rule.threshold:g}",
            "duration": duration_text(rule.for_s) if rule.for_s else None,
            "clear": f"{rule.clear_op}{rule.clear:g}" if rule.clear_op and rule.clear is not None else None,
            "silent": duration_text(rule.silent_s) if rule.silent else None,
        }, str(rule)
        assert (rule.pattern or "any sensor") in sentence
