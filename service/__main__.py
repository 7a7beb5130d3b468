"""`python -m service`: serve the API with gunicorn (settings in service/gunicorn_conf.py)."""

from __future__ import annotations

import os
import sys

from pipeline.settings import ConfigError, Settings


def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as e:
        sys.exit(f"configuration error: {e}")
    print(f"Running on http://127.0.0.1:{settings.api.api_port}", flush=True)
    print(f"Running on http://{settings.api.api_host}:{settings.api.api_port}", flush=True)
    args = [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf", "service.asgi:app", *sys.argv[1:]]
    os.execv(sys.executable, args)


if __name__ == "__main__":
    main()
