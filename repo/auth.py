"""Tenants' credentials: client id + secret -> tokens, and API keys."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

from collections.abc import Callable

from api.errors import AuthFailed, Forbidden, NotFound
from api.request import Principal
from api.scopes import FULL, KeyScope

from .security import TokenSigner, hash_secret, new_api_key, sha256_hex, split_api_key, verify_secret
from .store import RepoStore

__all__ = ("RepoAuth", "Tokens", "Bootstrap", "KeyGrant", "NewKey")

# How long a checked API key is trusted without asking the database again: a revocation made elsewhere
# (the CLI, another node) applies within this; one made through this process applies at once.
KEY_CACHE_S = 5.0


@dataclass(slots=True, frozen=True)
class Tokens:
    access_token: str
    expires_in: int
    refresh_token: str

    def body(self) -> dict[str, object]:
        return {"access_token": self.access_token, "token_type": "Bearer", "expires_in": self.expires_in,
                "refresh_token": self.refresh_token}


@dataclass(slots=True, frozen=True)
class Bootstrap:
    tenant: str
    tenant_id: str
    client_id: str
    client_secret: str
    api_key: str


@dataclass(slots=True, frozen=True)
class KeyGrant:
    """What a valid API key gives: its tenant, its id and its scope."""

    tenant_id: str
    key_id: str
    scope: KeyScope


@dataclass(slots=True, frozen=True)
class NewKey:
    """A key just made: the full key is shown this once and never stored."""

    id: str
    name: str
    scope: KeyScope
    key: str

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "scope": self.scope.as_json(), "key": self.key}


class RepoAuth:
    """Implements api.dispatch.Authenticator against the repo's tables."""

    def __init__(self, store: RepoStore, access_ttl_s: float = 3600, refresh_ttl_s: float = 30 * 86400) -> None:
        self.store = store
        key = store.setting("token_signing_key")
        if key is None:
            raise RuntimeError("database has no token signing key (migrations not applied?)")
        self.signer = TokenSigner(bytes.fromhex(key))
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self._key_cache: dict[str, tuple[KeyGrant, float]] = {}  # full key hash -> (grant, checked at)
        # Called with a key id when this process revokes it (the broker closes its connections).
        self.revocation_listeners: list[Callable[[str], None]] = []

    async def authenticate(self, headers: dict[str, str]) -> Principal | None:
        api_key = headers.get("x-api-key")
        if api_key:
            return await self._by_api_key(api_key)
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token:
            claims = self.signer.verify(token.strip())
            if claims is not None:
                return Principal(claims.tenant_id, "token", claims.client_id)
        return None

    async def _by_api_key(self, key: str) -> Principal | None:
        if split_api_key(key) is None:
            return None
        grant = await asyncio.to_thread(self.key_grant, key)
        return Principal(grant.tenant_id, "api_key", grant.key_id, grant.scope) if grant else None

    def key_grant(self, key: str) -> KeyGrant | None:
        """What an API key may do, or None (unknown, revoked, wrong secret)."""
        key_id = split_api_key(key)
        if key_id is None:
            return None
        digest = sha256_hex(key)
        cached = self._key_cache.get(digest)
        if cached and time.monotonic() - cached[1] < KEY_CACHE_S:
            return cached[0]
        row = self.store.api_key(key_id)
        if row is None or row.revoked or not secrets.compare_digest(row.secret_hash, digest):
            self._key_cache.pop(digest, None)
            return None
        grant = KeyGrant(row.tenant_id, key_id, KeyScope.loads(row.scope))
        if len(self._key_cache) > 10_000:
            self._key_cache.clear()
        self._key_cache[digest] = (grant, time.monotonic())
        return grant

    # -- managing keys ------------------------------------------------------------
    def create_key(self, tenant_id: str, name: str, scope: KeyScope) -> NewKey:
        key_id, full_key, key_hash = new_api_key()
        self.store.create_api_key(tenant_id, key_id, key_hash, name, None if scope == FULL else scope.dumps())
        return NewKey(key_id, name, scope, full_key)

    def list_keys(self, tenant_id: str) -> list[dict[str, object]]:
        return [{"id": k.id, "name": k.name, "scope": KeyScope.loads(k.scope).as_json(), "revoked": k.revoked,
                 "created_at": k.created_at} for k in self.store.api_keys(tenant_id)]

    def revoke_key(self, tenant_id: str, key_id: str) -> None:
        self.store.revoke_api_key(tenant_id, key_id)  # NotFound for another tenant's key
        self._key_cache = {d: g for d, g in self._key_cache.items() if g[0].key_id != key_id}
        for listener in self.revocation_listeners:
            listener(key_id)

    def rotate_key(self, tenant_id: str, key_id: str) -> NewKey:
        """A new key with the old one's name and scope; the old one revoked."""
        old = self.store.api_key(key_id)
        if old is None or old.tenant_id != tenant_id:
            raise NotFound(f"no API key {key_id!r}")
        if old.revoked:
            raise Forbidden(f"API key {key_id!r} is revoked; create a new one")
        made = self.create_key(tenant_id, old.name, KeyScope.loads(old.scope))
        self.revoke_key(tenant_id, key_id)
        return made

    def tenant_of_token(self, token: str) -> tuple[str, float] | None:
        """The tenant of a valid, unexpired access token and when it expires, or None."""
        claims = self.signer.verify(token.strip())
        return (claims.tenant_id, claims.expires_at) if claims is not None else None

    def _tokens(self, tenant_id: str, client_id: str) -> Tokens:
        access, _ = self.signer.issue(tenant_id, client_id, self.access_ttl_s)
        token_id = secrets.token_hex(8)
        secret = f"fwr_{token_id}_{secrets.token_urlsafe(32)}"
        self.store.store_refresh_token(token_id, sha256_hex(secret), client_id, tenant_id,
                                       time.time() + self.refresh_ttl_s)
        return Tokens(access, int(self.access_ttl_s), secret)

    def login(self, client_id: str, client_secret: str) -> Tokens:
        found = self.store.client(client_id)
        # Hash anyway when the client is unknown, so timing does not tell.
        stored = found[1] if found else hash_secret("x")
        if not verify_secret(client_secret, stored) or found is None:
            raise AuthFailed("invalid client id or secret")
        return self._tokens(found[0], client_id)

    def refresh(self, refresh_token: str) -> Tokens:
        parts = refresh_token.split("_", 2)
        if len(parts) != 3 or parts[0] != "fwr":
            raise AuthFailed("invalid refresh token")
        taken = self.store.take_refresh_token(parts[1])
        if taken is None or not secrets.compare_digest(taken[0], sha256_hex(refresh_token)) or taken[3] < time.time():
            raise AuthFailed("invalid or expired refresh token")
        return self._tokens(taken[2], taken[1])

    def bootstrap(self, tenant: str) -> Bootstrap:
        """A tenant with one client and one full API key (the CLI's `tenants create`)."""
        tenant_id = self.store.create_tenant(tenant)
        client_id = f"{tenant}-{secrets.token_hex(4)}"
        client_secret = secrets.token_urlsafe(24)
        self.store.create_client(tenant_id, client_id, hash_secret(client_secret))
        return Bootstrap(tenant, tenant_id, client_id, client_secret, self.create_key(tenant_id, "default", FULL).key)
