"""The gunicorn worker class: uvicorn's worker (uvicorn-worker) configured from ApiSettings.

gunicorn stays the process manager (graceful SIGTERM, worker restarts, the hooks in
gunicorn_conf.py); each worker runs one uvicorn server and one event loop, with uvloop and
httptools, the header deadline of service/http_protocol.py and a cap on connections.
"""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker

from pipeline.settings import ApiSettings
from service.http_protocol import protocol_class


def worker_class(api: ApiSettings) -> type[UvicornWorker]:
    """A UvicornWorker subclass whose uvicorn Config follows `api`."""
    config: dict[str, Any] = {
        "loop": "uvloop",
        "http": protocol_class(
            api.api_header_timeout_ms / 1000, api.api_shed_after_ms / 1000, api.api_max_header_bytes
        ),
        "lifespan": "on",  # the producer is flushed at the lifespan shutdown (service/asgi.py)
        # Past this many connections plus requests in flight, uvicorn answers 503 at once.
        "limit_concurrency": api.api_max_connections,
        "timeout_keep_alive": api.api_keepalive_ms / 1000,
        "access_log": False,
        "proxy_headers": False,  # NOTE: nothing uses the client address; saves a middleware per request
        "server_header": False,
    }
    return type("SensorApiWorker", (UvicornWorker,), {"CONFIG_KWARGS": config})
