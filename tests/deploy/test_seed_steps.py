"""The seed's own steps, literally: `python main.py` starts the API and prints the seed's
`Running on http://…` lines; `python consumer.py` starts the pool and prints
`Listening to topic: …` and a `Message received: {…}` line per reading."""

from __future__ import annotations

import json

import requests

from harness.poll import wait_http, wait_until
from harness.process import PYTHON, spawn
from harness.readings import SEED_READING


def test_python_main_py_and_python_consumer_py_work_as_the_seed_describes(pipeline_env, tmp_path) -> None:
    port = pipeline_env["API_PORT"]
    with (
        spawn([PYTHON, "main.py"], pipeline_env, tmp_path / "main.log") as api,
        spawn(
            [PYTHON, "consumer.py"],
            {**pipeline_env, "CONSUMER_METRICS_DIR": str(tmp_path / "pm")},
            tmp_path / "consumer.log",
        ) as consumer,
    ):
        wait_http(f"http://127.0.0.1:{port}/readyz", 60, proc=api)
        assert f"Running on http://127.0.0.1:{port}" in api.log()
        assert f"Running on http://127.0.0.1:{port}\nRunning on http://{pipeline_env['API_HOST']}:{port}" in api.log()
        wait_until(
            "Listening to topic",
            lambda: f"Listening to topic: {pipeline_env['TOPIC_NAME']}" in consumer.log(),
            60,
            consumer,
        )

        resp = requests.post(f"http://127.0.0.1:{port}/sensor", json=SEED_READING, timeout=15)
        assert resp.status_code == 202 and resp.json()["status"] == "accepted"

        line = "Message received: " + json.dumps(SEED_READING, separators=(",", ":"))
        wait_until("the seed's console line", lambda: line in consumer.log(), 60, consumer)
