"""The console's routes on a bare aiohttp app: its pages, its files, what they may load."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from console import PAGES, STATIC_DIR, VENDOR_FILES, add_console_routes, missing_vendor_files
from console.routes import ASSETS_PREFIX

T = TypeVar("T")
Client = TestClient[web.Request, web.Application]


def _with_client(app: web.Application, scenario: Callable[[Client], Awaitable[T]]) -> T:
    async def run() -> T:
        async with TestClient(TestServer(app)) as client:
            return await scenario(client)

    return asyncio.run(run())


def _app(stomp_path: str | None = "/stomp", static_dir: Path = STATIC_DIR) -> web.Application:
    app = web.Application()
    add_console_routes(app, stomp_path, static_dir)
    return app


def test_every_page_is_the_app_with_the_stomp_path_and_a_same_origin_policy() -> None:
    async def scenario(client: Client) -> list[tuple[int, str, str, str]]:
        found = []
        for page in PAGES:
            resp = await client.get(page)
            found.append((resp.status, resp.headers["Content-Type"], resp.headers["Content-Security-Policy"],
                          await resp.text()))
        return found

    for status, content_type, policy, text in _with_client(_app("/ws/stomp"), scenario):
        assert status == 200
        assert content_type == "text/html; charset=utf-8"
        assert '<meta name="facewatch-stomp-path" content="/ws/stomp">' in text
        # Nothing from another origin: no CDN, and connections (WebSocket included) to this server only.
        assert "default-src 'self'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy


def test_no_stomp_websocket_leaves_the_path_empty() -> None:
    async def scenario(client: Client) -> str:
        return await (await client.get("/live")).text()

    assert '<meta name="facewatch-stomp-path" content="">' in _with_client(_app(None), scenario)


def test_assets_have_their_types_and_nothing_outside_the_folder_is_served(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html>{{stomp_path}}")
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "main.js").write_text("export {};")
    (tmp_path / "notes.txt").write_text("not an asset type")
    (tmp_path.parent / "secret.js").write_text("outside")

    async def scenario(client: Client) -> dict[str, tuple[int, str]]:
        found = {}
        for path in ("js/main.js", "notes.txt", "../secret.js", "%2e%2e/secret.js", "js/missing.js", "index.html"):
            resp = await client.get(ASSETS_PREFIX + path)
            found[path] = (resp.status, resp.headers.get("Content-Type", ""))
        return found

    found = _with_client(_app(static_dir=tmp_path), scenario)
    assert found["js/main.js"] == (200, "text/javascript; charset=utf-8")
    assert found["index.html"][0] == 200
    assert {found[p][0] for p in ("notes.txt", "../secret.js", "%2e%2e/secret.js", "js/missing.js")} == {404}


def test_the_pages_load_only_files_of_the_console() -> None:
    """Every script, style and icon index.html names is one of the console's files (vendored or its own)."""
    index = (STATIC_DIR / "index.html").read_text()
    referenced = re.findall(r'(?:src|href)="(/[^"]*)"', index)
    assets = [r for r in referenced if r.startswith(ASSETS_PREFIX)]
    assert assets and all((STATIC_DIR / a.removeprefix(ASSETS_PREFIX)).is_file() or
                          a.removeprefix(ASSETS_PREFIX) in VENDOR_FILES for a in assets)
    assert not re.search(r"https?://", index)
    for script in STATIC_DIR.rglob("*.js"):
        if "vendor" in script.parts:
            continue
        text = script.read_text()
        assert not re.search(r"""(import|from)\s*\(?\s*['"]https?:""", text), script
        assert "fetch('http" not in text and 'src="http' not in text, script


def test_missing_vendor_files_are_named(tmp_path: Path) -> None:
    assert missing_vendor_files(tmp_path) == list(VENDOR_FILES)


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
@pytest.mark.parametrize("module", sorted(str(p.relative_to(STATIC_DIR)) for p in (STATIC_DIR / "js").rglob("*.js")))
def test_every_module_parses(module: str) -> None:
    """A syntax error would only show in a browser, on the page that imports the module."""
    checked = subprocess.run(["node", "--check", "--input-type=module"], input=(STATIC_DIR / module).read_text(),
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
