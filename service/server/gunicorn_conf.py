"""gunicorn settings and lifecycle hooks for the API. Loaded by the master only; it starts
nothing: each worker builds its app in the ASGI lifespan (service/server/asgi.py)."""

from __future__ import annotations

import logging

import service.server.worker
from pipeline import metrics_folder
from pipeline.settings import Settings

_settings = Settings.from_env()
_metrics_dir = metrics_folder.api_folder(_settings.api)
# NOTE: in the master, before any worker imports prometheus-client; the workers inherit it.
metrics_folder.use(_metrics_dir)

bind = f"{_settings.api.api_host}:{_settings.api.api_port}"
workers = _settings.api.api_workers
worker_class = service.server.worker.worker_class(_settings.api)
graceful_timeout = 30
timeout = 60
accesslog = None
loglevel = _settings.log_level.lower()
proc_name = "sensor-api"
# NOTE: gunicorn 27 opens a control socket at one fixed path by default; two instances
# (make up beside make test) would fight over it, and we do not use it.
control_socket_disable = True
# TLS for clients (API_TLS_CERT / API_TLS_KEY): gunicorn's own settings, which uvicorn-worker
# hands to uvicorn's server (ssl_certfile / ssl_keyfile).
if _settings.api.api_tls_cert:
    certfile = _settings.api.api_tls_cert
    keyfile = _settings.api.api_tls_key or None


def on_starting(server) -> None:
    """Start every run with an empty multiprocess metrics folder."""
    metrics_folder.clear(_metrics_dir)


def post_fork(server, worker) -> None:
    """The app's own log lines (e.g. the producer flush at shutdown) go to gunicorn's log."""
    app_log = logging.getLogger("service")
    app_log.handlers = server.log.error_log.handlers
    app_log.setLevel(server.log.error_log.level)
    app_log.propagate = False


def child_exit(server, worker) -> None:
    """Drop the dead worker's live gauges from the aggregated metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
