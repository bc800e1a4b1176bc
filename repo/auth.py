"""Tenants' credentials: client id + secret -> tokens, and API keys."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

from api.errors import AuthFailed
from api.request import Principal

from .security import TokenSigner, hash_secret, new_api_key, sha256_hex, split_api_key, verify_secret
from .store import RepoStore

__all__ = ("RepoAuth", "Tokens", "Bootstrap")


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
    client_id: str
    client_secret: str
    api_key: str


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
        self._key_cache: dict[str, tuple[str, float]] = {}  # full key hash -> (tenant, checked at)

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
        key_id = split_api_key(key)
        if key_id is None:
            return None
        tenant = await asyncio.to_thread(self.tenant_of_key, key)
        return Principal(tenant, "api_key", key_id) if tenant else None

    def tenant_of_key(self, key: str) -> str | None:
        """The tenant an API key belongs to, or None (unknown, revoked, wrong secret)."""
        key_id = split_api_key(key)
        if key_id is None:
            return None
        digest = sha256_hex(key)
        cached = self._key_cache.get(digest)
        if cached and time.monotonic() - cached[1] < 30:  # revocation shows within 30 s
            return cached[0]
        row = self.store.api_key(key_id)
        if row is None or row[2] or not secrets.compare_digest(row[1], digest):
            return None
        self._key_cache[digest] = (row[0], time.monotonic())
        return row[0]

    def tenant_of_token(self, token: str) -> str | None:
        """The tenant of a valid, unexpired access token, or None."""
        claims = self.signer.verify(token.strip())
        return claims.tenant_id if claims is not None else None

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
        """A tenant with one client and one API key (the CLI's `tenants create`)."""
        tenant_id = self.store.create_tenant(tenant)
        client_id = f"{tenant}-{secrets.token_hex(4)}"
        client_secret = secrets.token_urlsafe(24)
        self.store.create_client(tenant_id, client_id, hash_secret(client_secret))
        key_id, full_key, key_hash = new_api_key()
        self.store.create_api_key(tenant_id, key_id, key_hash, "default")
        return Bootstrap(tenant, client_id, client_secret, full_key)
