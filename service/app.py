"""The Falcon ASGI application factory: dependencies in, `falcon.asgi.App` out."""

from __future__ import annotations

from typing import Any

import falcon.asgi

from pipeline.settings import ApiSettings
from service import errors, metrics
from service.dashboard import resources as dashboard
from service.ingest import device_tokens, rate_limit, resources
from service.ingest.resources import Sender
from service.openapi import build_document
from service.read import resources as read_resources
from service.read.resources import ReadSide
from service.server.middleware import ApiKeyMiddleware, MetricsMiddleware, ShedMiddleware


def create_app(settings: ApiSettings, sender: Sender, read: ReadSide | None = None) -> falcon.asgi.App:
    """The API; `read` adds the read side (queries, /stream, /pipeline)."""
    metrics.register()
    middleware: list[Any] = [MetricsMiddleware(), ShedMiddleware(settings.api_shed_after_ms)]
    if settings.device_tokens_file:  # API keys and device tokens (service/ingest/device_tokens.py)
        tokens = device_tokens.DeviceTokens(settings.device_tokens_file)
        middleware.append(device_tokens.CredentialsMiddleware(settings.api_keys, tokens))
    elif settings.api_keys:
        middleware.append(ApiKeyMiddleware(settings.api_keys))
    if settings.rate_limit_rps:  # after authentication: a request counts against its credential
        middleware.append(rate_limit.RateLimitMiddleware(settings.rate_limit_rps, settings.rate_limit_burst))
    app = falcon.asgi.App(middleware=middleware)
    errors.register(app)
    app.add_route("/sensor", resources.SensorResource(settings, sender))
    app.add_route("/sensor/batch", resources.BatchResource(settings, sender))
    app.add_route("/healthz", resources.HealthResource())
    app.add_route("/readyz", resources.ReadyResource(sender))
    app.add_route("/metrics", resources.MetricsResource(settings.prometheus_multiproc_dir))
    app.add_route("/openapi.json", resources.OpenApiResource(build_document()))
    if read is not None:
        read_resources.add_routes(app, read)
    dashboard.add_routes(app)
    return app
