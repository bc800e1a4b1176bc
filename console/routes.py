"""The console's routes: ``index.html`` at each of its pages (the browser routes between them),
its files under ``/assets/``.

Nothing here reads a credential or a tenant's data: the pages fetch those from ``/api/v1`` with
the signed-in user's own credentials. Every answer carries a Content-Security-Policy that lets
the pages load and connect to this origin only (no CDN, nothing fetched from elsewhere at run time).
"""

from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ("add_console_routes", "missing_vendor_files", "PAGES", "STATIC_DIR", "VENDOR_FILES", "ASSETS_PREFIX")

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_PREFIX = "/assets/"
# The single-page app's pages: each answers index.html, whose script shows the page for the path.
PAGES = ("/", "/signin", "/live", "/cameras", "/faces", "/test", "/unknown", "/history", "/reference",
         "/reference/stomp")
# Copied from npm packages into static/vendor by scripts/setup.sh (console/npm/package-lock.json pins them).
VENDOR_FILES = ("vendor/stomp.umd.min.js", "vendor/swagger-ui-bundle.js", "vendor/swagger-ui.css")

# 'self' only: scripts, styles and connections (WebSocket included) of this origin; images also from
# blob: (face crops fetched with credentials) and data: (event crops arrive base64 in JSON).
# Inline styles: Swagger UI sets style attributes.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                           "frame-ancestors 'none'; form-action 'none'")
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
          ".png": "image/png", ".json": "application/json", ".ico": "image/x-icon"}


def missing_vendor_files(static_dir: Path = STATIC_DIR) -> list[str]:
    """The vendored files not in place (scripts/setup.sh copies them); empty when all are."""
    return [name for name in VENDOR_FILES if not (static_dir / name).is_file()]


def _page_handler(static_dir: Path, stomp_path: str | None) -> Handler:
    # Where the pages find the broker's WebSocket (empty: none on this server, e.g. an external broker).
    index = (static_dir / "index.html").read_text().replace("{{stomp_path}}", html.escape(stomp_path or ""))

    async def page(request: web.Request) -> web.StreamResponse:
        # Revalidated on every load: a new version of the console is picked up at once.
        return web.Response(text=index, content_type="text/html", charset="utf-8",
                            headers=_HEADERS | {"Cache-Control": "no-cache"})

    return page


def _asset_handler(static_dir: Path) -> Handler:
    root = static_dir.resolve()

    async def asset(request: web.Request) -> web.StreamResponse:
        relative = request.match_info["path"]
        path = (root / relative).resolve()
        content_type = _TYPES.get(path.suffix)
        if content_type is None or not path.is_relative_to(root) or not path.is_file():
            raise web.HTTPNotFound()
        charset = "; charset=utf-8" if content_type.startswith("text/") else ""
        return web.FileResponse(path, headers=_HEADERS | {"Content-Type": content_type + charset,
                                                          "Cache-Control": "no-cache"})

    return asset


def add_console_routes(app: web.Application, stomp_path: str | None, static_dir: Path = STATIC_DIR) -> None:
    """The console's pages and ``/assets/{path}`` on ``app`` (GET and HEAD). ``stomp_path``: the
    broker's WebSocket on this server, which the live pages connect to (None: there is none)."""
    page = _page_handler(static_dir, stomp_path)
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get(ASSETS_PREFIX + "{path:.+}", _asset_handler(static_dir))
