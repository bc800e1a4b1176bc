"""Connections made with a revoked API key, or an access token that has expired, are closed.

Revoked through this process: at once (``RepoAuth`` tells its listeners). Revoked anywhere else (the
CLI, another node sharing the database): at the next check, every ``interval_s``. The check asks the
database which of the keys behind open connections are still live, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time

from broker.core import BrokerCore
from repo.auth import RepoAuth
from repo.store import RepoStore

__all__ = ("RevocationWatch",)

log = logging.getLogger(__name__)


class RevocationWatch:
    def __init__(self, core: BrokerCore, auth: RepoAuth, store: RepoStore, interval_s: float) -> None:
        self.core = core
        self.store = store
        self.interval_s = interval_s
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        auth.revocation_listeners.append(self._revoked)

    def _revoked(self, key_id: str) -> None:
        # Keys are revoked in worker threads (handlers run store calls there): wake the loop safely.
        self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.check()
            except Exception:  # a database hiccup: try again at the next interval
                log.exception("checking API keys of open STOMP connections failed")

    async def check(self) -> int:
        expired = self.core.close_expired(time.time())
        if expired:
            log.info("closed %d STOMP connection(s) whose access token expired", expired)
        held = self.core.credentials()
        if not held:
            return expired
        live = await asyncio.to_thread(self.store.live_api_keys, held)
        revoked = held - live
        closed = self.core.close_credentials(revoked) if revoked else 0
        if closed:
            log.info("closed %d STOMP connection(s) of revoked API key(s) %s", closed, ", ".join(sorted(revoked)))
        return expired + closed
