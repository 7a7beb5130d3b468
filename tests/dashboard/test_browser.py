"""The dashboard in a real browser against a real stack (API, pool, Kafka, SQLite).

web/dashboard-test.mjs drives Debian's Chromium with playwright-core (pinned in
web/package-lock.json, installed by `npm ci` on first use): it POSTs readings and waits for
them in the sensors table, the chart and the live messages (2 s each), raises an alert,
acknowledges it with the button and sees it cleared. Its screenshots go to
reports/screenshots/, or to DASHBOARD_SCREENSHOTS (`make screenshots`: docs/screenshots/,
the ones docs/dashboard.md shows).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from harness.npm import npm_ci
from harness.process import ROOT, unique
from harness.stack import own_stack
from harness.webhooks import Receiver

pytestmark = pytest.mark.integration  # real processes and a real browser

WEB = ROOT / "web"
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ("dashboard.png", "alerts.png", "live-messages.png")


@pytest.fixture(scope="session")
def web_modules() -> Path:
    return npm_ci(WEB)


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_readings_alerts_and_acknowledgement_show_in_the_browser(
    web_modules: Path, kafka_broker: str, tmp_path: Path
) -> None:
    assert Path(CHROMIUM).exists(), "Chromium is needed (Debian: apt-get install chromium; .ci/run does it)"
    node = shutil.which("node")
    assert node, "Node.js is needed"
    shots = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or ROOT / "reports" / "screenshots").resolve()
    for name in SCREENSHOTS:
        (shots / name).unlink(missing_ok=True)
    # A rule with every threshold part the alerts table shows (pattern, hysteresis), and a no-data
    # rule that stays quiet within the test; the alert's webhooks: its row shows them sent.
    receiver = Receiver("dashboard-secret").start()
    env = {
        "ALERT_RULES": "lab-*:temperature>40 clear<30,temperature silent 1h",
        "CONSUMER_WORKERS": "2",
        "ALERT_WEBHOOK_URLS": receiver.url,
        "ALERT_WEBHOOK_SECRET": receiver.secret,
    }
    with own_stack(unique("dash"), tmp_path, broker=kafka_broker, extra_env=env) as stack:
        result = subprocess.run(
            [node, "dashboard-test.mjs"],
            cwd=WEB,
            env={
                **os.environ,
                "DASHBOARD_URL": stack.api_url,
                "SCREENSHOTS_DIR": str(shots),
                "CHROMIUM": CHROMIUM,
                "EXPECT_WEBHOOKS": "1",
            },
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert result.returncode == 0, f"the browser test failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    timings = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"dashboard timings (ms): {timings}")
    for seen in ("table", "chart", "live"):
        assert timings[seen] <= 2000, f"{seen}: {timings[seen]} ms after the POST"
    assert {"alert_raised", "alert_acked", "alert_cleared", "alert_notified"} <= set(timings)
    receiver.stop()
    events = [p.body["event"] for p in receiver.events().values() if p.body["alert"]["sensor_id"] == "lab-2"]
    assert sorted(events) == ["acked", "cleared", "raised"], events  # the button's ack went out too
    assert all(p.signature_ok for p in receiver.posts)
    width, height = png_size(shots / "dashboard.png")
    assert width == 1440 and height >= 900, "the full page at the test's viewport"
    for name in SCREENSHOTS:
        assert (shots / name).stat().st_size > 10_000, f"{name} looks empty"


FLEET = 100_000


def seed_fleet(path: str, sensors: int) -> tuple[str, str]:
    """`sensors` sensors straight into the stack's SQLite through the store's writer (its
    triggers keep `latest` and `sensors`): one series each, arrivals over the last two hours
    (the newest one now); returns (a sensor to find, the newest arrival)."""
    import time
    from datetime import datetime, timezone

    from pipeline.reading import Reading
    from pipeline.record import Record
    from store.sqlite import SqliteWriter

    writer = SqliteWriter(path)
    writer.setup()
    now_ns = time.time_ns()
    at = datetime(2025, 11, 17, 14, 0, tzinfo=timezone.utc)
    records = [
        Record.of(
            Reading(f"site{i % 97:02d}-f{i:06d}", at, "temperature", float(i), "C"), now_ns - (i % 7200 + 1) * 10**9
        )
        for i in range(sensors)
    ]
    records.append(Record.of(Reading("fleet-newest", at, "temperature", 1.0, "C"), now_ns))
    writer.write(records)
    writer.close()
    return f"site{54321 % 97:02d}-f054321", "fleet-newest"


def test_any_sensor_of_a_100000_sensor_fleet_is_found_by_typing_part_of_its_id(
    web_modules: Path, kafka_broker: str, tmp_path: Path
) -> None:
    node = shutil.which("node")
    assert node and Path(CHROMIUM).exists(), "Node.js and Chromium are needed"
    with own_stack(unique("fleet"), tmp_path, broker=kafka_broker) as stack:
        assert stack.sqlite_path
        target, newest = seed_fleet(stack.sqlite_path, FLEET)
        result = subprocess.run(
            [node, "fleet-test.mjs"],
            cwd=WEB,
            env={
                **os.environ,
                "DASHBOARD_URL": stack.api_url,
                "CHROMIUM": CHROMIUM,
                "FLEET_TARGET": target,
                "FLEET_TYPED": "54321",
                "FLEET_NEWEST": newest,
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, f"the fleet browser test failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
    found = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"fleet of {FLEET}: {found}")
    assert found["search_rows"] == 1, "the search found the one sensor whose id holds 54321"
    assert found["first_page_rows"] <= 200 and found["silent_rows"] <= 200
