"""The web console: static assets and the aiohttp routes that serve them at ``/``.

A client of the public REST and STOMP APIs only (design.md 9): it imports nothing of the
service; the browser talks to ``/api/v1`` and to the broker's WebSocket like any other client.
"""

from .routes import PAGES, STATIC_DIR, VENDOR_FILES, add_console_routes, missing_vendor_files

__all__ = ("add_console_routes", "missing_vendor_files", "PAGES", "STATIC_DIR", "VENDOR_FILES")
