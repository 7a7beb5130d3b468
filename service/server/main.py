"""`python -m service`: serve the API with gunicorn (settings in service/server/gunicorn_conf.py)."""

from __future__ import annotations

import os
import sys

from pipeline.settings import ConfigError, Settings


def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as e:
        sys.exit(f"configuration error: {e}")
    if settings.api.device_tokens_file:
        from service.ingest.device_tokens import TokenFileError, parse

        try:
            with open(settings.api.device_tokens_file, encoding="utf-8") as f:
                parse(f.read())
        except (OSError, UnicodeDecodeError, TokenFileError) as e:
            sys.exit(f"configuration error: DEVICE_TOKENS_FILE: {e}")
    scheme = "https" if settings.api.api_tls_cert else "http"
    print(f"Running on {scheme}://127.0.0.1:{settings.api.api_port}", flush=True)
    print(f"Running on {scheme}://{settings.api.api_host}:{settings.api.api_port}", flush=True)
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:service.server.gunicorn_conf",
        "service.server.asgi:app",
        *sys.argv[1:],
    ]
    os.execv(sys.executable, args)


if __name__ == "__main__":
    main()
