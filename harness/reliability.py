"""Render the fault suite's verdicts (reports/chaos/*.json, written by harness.chaos.check)
as the per-scenario tables of RELIABILITY.md: `python -m harness.reliability`."""

from __future__ import annotations

import json
import sys

from harness.chaos import API_RECOVERY_BOUND_S, CATCH_UP_BOUND_S, REPORTS


def table(v: dict) -> str:
    lost, dupes = len(v["lost"]), len(v["duplicates"])
    in_kafka = f" ({len(v['lost_in_kafka'])} in Kafka)" if lost else ""
    rows = [
        ("readings sent", f"{v['sent']} in {v['load_s']:.0f} s ({v['sent'] / max(v['load_s'], 1):.0f}/s achieved)"),
        ("2xx", v["ok"]),
        ("4xx", v["rejected"]),
        ("indeterminate (503 or no answer)", v["indeterminate"]),
        ("  of which stored (at most once)", v["indeterminate_stored"]),
        ("5xx other than 503", v["other_5xx"]),
        ("stored", v["stored"]),
        ("lost (2xx not stored; must be 0)", f"{lost}{in_kafka}"),
        ("duplicates in the store (must be 0; the primary key makes it so)", dupes),
        ("readings the minute aggregates count (must equal stored)", v["aggregated"]),
        ("stored but never sent or 4xx (must be 0)", len(v["phantoms"])),
        ("readings in Kafka more than once (must be 0)", len(v["kafka_duplicates"])),
        ("readings out of order in their key's partition (must be 0)", len(v["out_of_order"])),
        (f"non-2xx stopped after the fault healed (bound {API_RECOVERY_BOUND_S:g} s)", f"{v['api_recovery_s']:.1f} s"),
        (
            "load after the heal / its last seconds all 2xx",
            f"{v['tail_s']:.0f} s / {v['final_window'] - v['final_window_not_2xx']} of {v['final_window']}",
        ),
        (f"all 2xx stored, lag 0, after the load ended (bound {CATCH_UP_BOUND_S:g} s)", f"{v['catch_up_s']:.1f} s"),
    ]
    body = "\n".join(f"| {k} | {val} |" for k, val in rows)
    notes = f"\n{v['notes']}.\n" if v["notes"] else ""
    return f"### {v['scenario']}\n\n| | |\n|---|---|\n{body}\n{notes}\nReproduce: `{v['command']}`\n"


def summary(verdicts: list[dict]) -> str:
    head = (
        "| scenario | sent | 2xx | indeterminate | stored | lost | duplicates "
        "| 503s stopped after heal | caught up after load |"
    )
    rows = [
        f"| {v['scenario']} | {v['sent']} | {v['ok']} | {v['indeterminate']} | {v['stored']} | {len(v['lost'])} "
        f"| {len(v['duplicates'])} | {v['api_recovery_s']:.1f} s | {v['catch_up_s']:.1f} s |"
        for v in verdicts
    ]
    return "\n".join([head, "|---|---|---|---|---|---|---|---|---|", *rows]) + "\n"


def main() -> int:
    files = sorted(REPORTS.glob("*.json"))
    if not files:
        print(f"no verdicts in {REPORTS}; run make chaos first", file=sys.stderr)
        return 1
    verdicts = [json.loads(f.read_text()) for f in files]
    print(summary(verdicts))
    print("\n".join(table(v) for v in verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
