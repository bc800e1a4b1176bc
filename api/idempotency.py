"""Idempotency keys: a write request repeated with the same key is applied once.

A STOMP request is acknowledged after its reply, so a node that dies between
the two leaves it to the broker, which delivers it again, maybe to another
node; clients also retry. A write (POST, PUT, PATCH, DELETE) that carries an
``idempotency-key`` header (STOMP requests without one are keyed by their reply
queue, correlation id and content, see api/stomp.py) first claims the key in
the database, per tenant:

- claimed now: the request runs, and its answer is stored with the key (an
  answer of 5xx releases the key instead, so that a retry runs again);
- answered before: that answer is returned again, marked ``idempotent-replay``;
- running elsewhere: the request waits for that answer (``wait_s``), then 409;
  a claim older than ``claim_s`` is taken over (its node died mid-request);
- the key was used for a different request (method, path, body): 409.

What is not covered: a node that dies after its change committed but before
the answer was stored leaves a claim that is taken over after ``claim_s``, and
the change is applied again then.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import BadParam, Conflict
from .request import ApiRequest, ApiResponse

__all__ = ("WRITE_METHODS", "KEY_HEADER", "REPLAY_HEADER", "KeyStore", "StoredKey", "IdempotencyOptions",
           "Idempotency", "fingerprint")

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KEY_HEADER = "idempotency-key"
REPLAY_HEADER = "idempotent-replay"
MAX_KEY_CHARS = 200


class StoredKey(Protocol):
    """A key's row (repo.store.StoredAnswer)."""

    @property
    def fingerprint(self) -> str: ...
    @property
    def state(self) -> str: ...  # running | done
    @property
    def started_at(self) -> float: ...
    @property
    def status(self) -> int | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def body(self) -> bytes | None: ...


class KeyStore(Protocol):
    """Where keys and answers live (the repo's database: every node sees every key)."""

    def claim_key(self, scope: str, key: str, fingerprint: str, owner: str, now: float) -> StoredKey | None: ...

    def take_over_key(self, scope: str, key: str, started_at: float, owner: str, now: float) -> bool: ...

    def store_answer(self, scope: str, key: str, status: int, content_type: str, headers: dict[str, str],
                     body: bytes) -> None: ...

    def release_key(self, scope: str, key: str) -> None: ...

    def forget_keys(self, before: float) -> int: ...


@dataclass(slots=True, frozen=True)
class IdempotencyOptions:
    ttl_s: float = 86400.0  # answers are kept this long
    wait_s: float = 30.0  # a repeat waits this long for the first request's answer
    claim_s: float = 60.0  # a claim this old without an answer was abandoned
    poll_s: float = 0.05  # how often a waiting repeat looks for the answer
    purge_interval_s: float = 600.0


def fingerprint(request: ApiRequest) -> str:
    """What makes two requests the same request."""
    digest = hashlib.sha256()
    for part in (request.method, request.path, json.dumps(sorted(request.query.items())), request.content_type,
                 json.dumps(sorted(request.form.items()))):
        digest.update(part.encode() + b"\0")
    digest.update(hashlib.sha256(request.body).digest())
    for upload in request.files:
        digest.update(f"{upload.name}\0{upload.filename}\0".encode() + hashlib.sha256(upload.data).digest())
    return digest.hexdigest()


def _key(request: ApiRequest) -> str | None:
    key = request.headers.get(KEY_HEADER)
    if key is None or request.method not in WRITE_METHODS:
        return None
    if not 0 < len(key) <= MAX_KEY_CHARS or not key.isprintable():
        raise BadParam(f"{KEY_HEADER} must be 1-{MAX_KEY_CHARS} printable characters", KEY_HEADER)
    return key


class Idempotency:
    def __init__(self, store: KeyStore, owner: str, options: IdempotencyOptions = IdempotencyOptions(),
                 clock: Callable[[], float] = time.time) -> None:
        """``owner``: this node, named on its claims."""
        self.store = store
        self.owner = owner
        self.options = options
        self.clock = clock
        self._next_purge = 0.0
        self.replayed = 0

    async def run(self, scope: str, request: ApiRequest,
                  answer: Callable[[], Awaitable[ApiResponse]]) -> ApiResponse:
        """``answer`` the request once per key of ``scope`` (a tenant): see the module's doc."""
        key = _key(request)
        if key is None:
            return await answer()
        await self._purge()
        mine = await asyncio.to_thread(fingerprint, request)  # hashes the body: not on the event loop
        deadline = time.monotonic() + self.options.wait_s
        while True:
            now = self.clock()
            row = await asyncio.to_thread(self.store.claim_key, scope, key, mine, self.owner, now)
            if row is None:
                break
            if row.fingerprint != mine:
                raise Conflict(f"this {KEY_HEADER} was used for a different request", KEY_HEADER)
            if row.state == "done":
                self.replayed += 1
                return _replay(row)
            if now - row.started_at > self.options.claim_s and await asyncio.to_thread(
                    self.store.take_over_key, scope, key, row.started_at, self.owner, now):
                log.warning("idempotency key of %s %s: the claim from %.0fs ago was abandoned; running it here",
                            request.method, request.path, now - row.started_at)
                break
            if time.monotonic() >= deadline:
                raise Conflict(f"a request with this {KEY_HEADER} is still running; ask again later", KEY_HEADER)
            # The first request's answer is a row in the database, announced nowhere: look again shortly.
            await asyncio.sleep(self.options.poll_s)
        try:
            response = await answer()
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self.store.release_key, scope, key))
            raise
        if response.status >= 500:
            await asyncio.to_thread(self.store.release_key, scope, key)  # nothing kept: a retry runs again
            return response
        body = response.body if isinstance(response.body, (bytes, bytearray)) else (
            b"" if response.body is None else json.dumps(response.body).encode())
        await asyncio.to_thread(self.store.store_answer, scope, key, response.status, response.content_type,
                                dict(response.headers), bytes(body))
        return response

    async def _purge(self) -> None:
        now = self.clock()
        if now < self._next_purge:
            return
        self._next_purge = now + self.options.purge_interval_s
        forgotten = await asyncio.to_thread(self.store.forget_keys, now - self.options.ttl_s)
        if forgotten:
            log.info("forgot %d idempotency key(s) older than %.0fs", forgotten, self.options.ttl_s)


def _replay(row: StoredKey) -> ApiResponse:
    status = row.status or 200
    content_type = row.content_type or "application/json"
    body: Any = row.body or b""
    if status == 204 or not body:
        body = None
    elif content_type.startswith("application/json"):
        body = json.loads(body)  # as the first answer was: the transport encodes it again
    return ApiResponse(status, body, content_type, {**row.headers, REPLAY_HEADER: "true"})
