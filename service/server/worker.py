"""The gunicorn worker class: uvicorn's worker (uvicorn-worker) configured from ApiSettings.

gunicorn stays the process manager (graceful SIGTERM, worker restarts, the hooks in
gunicorn_conf.py); each worker runs one uvicorn server and one event loop, with uvloop and
httptools, the header deadline of service/server/http_protocol.py and a cap on connections.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn import Server
from uvicorn_worker import UvicornWorker

from pipeline.settings import ApiSettings
from service.server.http_protocol import protocol_class

# Run when the server begins to shut down, before it waits for the responses in flight:
# endless responses (GET /stream) must end then, or SIGTERM would wait out the graceful timeout.
SHUTDOWN_HOOKS: list[Callable[[], None]] = []


class _Server(Server):
    async def shutdown(self, sockets: Any = None) -> None:
        for hook in SHUTDOWN_HOOKS:
            hook()
        await super().shutdown(sockets)


async def _serve(self: UvicornWorker) -> None:
    """uvicorn-worker's own `_serve`, with the Server above (NOTE: mirrors uvicorn-worker 0.4.0)."""
    self.config.app = self.wsgi
    server = _Server(config=self.config)
    self._install_sigquit_handler()
    await server.serve(sockets=self.sockets)
    if not server.started:
        sys.exit(Arbiter.WORKER_BOOT_ERROR)


def worker_class(api: ApiSettings) -> type[UvicornWorker]:
    """A UvicornWorker subclass whose uvicorn Config follows `api`."""
    config: dict[str, Any] = {
        "loop": "uvloop",
        "http": protocol_class(
            api.api_header_timeout_ms / 1000,
            api.api_shed_after_ms / 1000,
            api.api_max_header_bytes,
            api.api_max_connections,
        ),
        "lifespan": "on",  # the app is built at the lifespan startup (service/server/asgi.py)
        # NOTE: API_MAX_CONNECTIONS is enforced by the protocol (503 + Retry-After, lingering
        # close: service/server/http_protocol.py), not by uvicorn's limit (plain 503, no Retry-After).
        "limit_concurrency": None,
        "timeout_keep_alive": api.api_keepalive_ms / 1000,
        "access_log": False,
        "proxy_headers": False,  # NOTE: nothing uses the client address; saves a middleware per request
        "server_header": False,
    }
    return type("SensorApiWorker", (UvicornWorker,), {"CONFIG_KWARGS": config, "_serve": _serve})
