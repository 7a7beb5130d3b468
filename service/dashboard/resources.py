"""The dashboard: `GET /dashboard` (the page) and `GET /dashboard/static/{path}` (its modules,
styles and the vendored uPlot), served as they are in service/dashboard/static/: no build step.

PERF: the files (about 200 kB) are read once when the app is built, so a request never
touches the disk nor blocks the event loop. Each answer carries a strong ETag (the content
hash) and `Cache-Control: no-cache`: a browser keeps its copy but asks every time, gets a
304 while nothing changed, and never runs a stale script after an upgrade. (An edit to the
files shows after the API restarts.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import falcon
import falcon.asgi

DIRECTORY = Path(__file__).with_name("static")
PAGE = "index.html"

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".LICENSE": "text/plain; charset=utf-8",
}

# NOTE: the page talks to its own origin only (fetch and EventSource); uPlot styles its
# elements through the CSSOM, which style-src does not restrict.
CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets(directory: Path = DIRECTORY) -> dict[str, Asset]:
    """Every servable file under `directory` by its relative path; other files are not served."""
    assets: dict[str, Asset] = {}
    for path in sorted(directory.rglob("*")):
        media_type = MEDIA_TYPES.get(path.suffix)
        if media_type and path.is_file():
            body = path.read_bytes()
            etag = hashlib.sha256(body).hexdigest()[:32]
            assets[path.relative_to(directory).as_posix()] = Asset(body, media_type, etag)
    return assets


def _serve(req: falcon.asgi.Request, resp: falcon.asgi.Response, asset: Asset) -> None:
    resp.etag = asset.etag
    resp.cache_control = ["no-cache"]
    resp.set_header("X-Content-Type-Options", "nosniff")
    if asset.media_type.startswith("text/html"):
        resp.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    tags = req.if_none_match or []
    if any(tag == "*" or tag == asset.etag for tag in tags):
        resp.status = falcon.HTTP_304
        return
    resp.content_type = asset.media_type
    resp.data = asset.body


class PageResource:
    def __init__(self, assets: dict[str, Asset]) -> None:
        self.page = assets[PAGE]

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        _serve(req, resp, self.page)


class StaticResource:
    def __init__(self, assets: dict[str, Asset]) -> None:
        self.assets = assets

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, path: str) -> None:
        asset = self.assets.get(path)
        if asset is None:
            raise falcon.HTTPNotFound()
        _serve(req, resp, asset)


def add_routes(app: falcon.asgi.App, directory: Path = DIRECTORY) -> None:
    assets = load_assets(directory)
    app.add_route("/dashboard", PageResource(assets))
    app.add_route("/dashboard/static/{path:path}", StaticResource(assets))
