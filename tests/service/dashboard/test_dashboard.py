"""The dashboard's files as the API serves them (in process): content types, cache headers,
304s, nothing outside service/dashboard/static/, and every module or stylesheet the page or its
modules name is one the API serves. The page running in a browser is tests/dashboard/."""

from __future__ import annotations

import re

import falcon.testing
import pytest

from pipeline.settings import ApiSettings
from service.app import create_app
from service.dashboard.resources import DIRECTORY, load_assets
from tests.service.test_app import Unreachable


@pytest.fixture(scope="module")
def client() -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(ApiSettings(), Unreachable()))


def test_the_page_is_html_revalidated_each_time_and_locked_to_its_origin(client) -> None:
    resp = client.simulate_get("/dashboard")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.text.startswith("<!doctype html>")
    assert resp.text == (DIRECTORY / "index.html").read_text()


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("main.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("vendor/uPlot.esm.js", "text/javascript; charset=utf-8"),
        ("vendor/uPlot.min.css", "text/css; charset=utf-8"),
        ("vendor/uPlot.LICENSE", "text/plain; charset=utf-8"),
    ],
)
def test_static_files_have_their_media_type(client, path: str, media_type: str) -> None:
    resp = client.simulate_get(f"/dashboard/static/{path}")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == media_type
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.content == (DIRECTORY / path).read_bytes()


def test_an_unchanged_file_is_a_304_and_a_changed_etag_gets_the_file(client) -> None:
    first = client.simulate_get("/dashboard/static/main.js")
    etag = first.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    again = client.simulate_get("/dashboard/static/main.js", headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", etag)
    other = client.simulate_get("/dashboard/static/main.js", headers={"If-None-Match": '"0123"'})
    assert other.status_code == 200 and other.content == first.content
    page = client.simulate_get("/dashboard")
    assert client.simulate_get("/dashboard", headers={"If-None-Match": page.headers["ETag"]}).status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "nope.js",
        "../resources.py",  # the module beside static/
        "..%2Fresources.py",
        "%2e%2e/%2e%2e/app.py",
        "vendor/../../resources.py",
        "/etc/passwd",
        "vendor",
        "",
    ],
)
def test_nothing_else_is_served(client, path: str) -> None:
    resp = client.simulate_get(f"/dashboard/static/{path}")
    assert resp.status_code == 404
    assert resp.json == {"error": "404 Not Found"}


def test_only_known_file_types_are_loaded(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "sub" / "a.js").write_text("export {}")
    (tmp_path / "notes.txt").write_text("secret")
    (tmp_path / "package.json").write_text("{}")
    assert sorted(load_assets(tmp_path)) == ["index.html", "sub/a.js"]


IMPORT = re.compile(r"""^import\s[^'"]*['"](\./[^'"]+)['"]""", re.MULTILINE)
LINK = re.compile(r"""(?:href|src)="/dashboard/static/([^"]+)\"""")


def test_every_file_the_page_and_its_modules_name_is_served(client) -> None:
    page = client.simulate_get("/dashboard").text
    wanted = LINK.findall(page)
    assert {"main.js", "style.css", "vendor/uPlot.min.css"} <= set(wanted)
    modules = [path for path in load_assets() if path.endswith(".js") and not path.startswith("vendor/")]
    for module in modules:
        wanted += [name.removeprefix("./") for name in IMPORT.findall((DIRECTORY / module).read_text())]
    for path in wanted:
        assert client.simulate_get(f"/dashboard/static/{path}").status_code == 200, path
    assert "vendor/uPlot.esm.js" in wanted
    imported = {name for name in wanted if name.endswith(".js")}
    assert set(modules) <= imported | {"main.js"}, "every module of the page is used"
