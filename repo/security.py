"""Secrets: hashing client secrets and API keys, signing access tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

__all__ = ("hash_secret", "verify_secret", "sha256_hex", "new_api_key", "split_api_key", "TokenSigner", "AccessClaims")

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_secret(secret: str) -> str:
    """scrypt for client secrets (they may be chosen by people)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt_hex), **_SCRYPT)
    return hmac.compare_digest(digest.hex(), digest_hex)


def sha256_hex(text: str) -> str:
    # API keys and refresh tokens are 256-bit random: a fast hash is enough.
    return hashlib.sha256(text.encode()).hexdigest()


def new_api_key() -> tuple[str, str, str]:
    """(key id, full key to show once, hash to store)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    full = f"fwk_{key_id}_{secret}"
    return key_id, full, sha256_hex(full)


def split_api_key(key: str) -> str | None:
    if not key.isascii():  # keys are ASCII; anything else is no key (and would not hash)
        return None
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "fwk" or len(parts[1]) != 16:
        return None
    return parts[1]


@dataclass(slots=True, frozen=True)
class AccessClaims:
    tenant_id: str
    client_id: str
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Stateless access tokens: ``fwt.<claims>.<hmac>``; shared key in the database
    so every API instance accepts every other's tokens."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, tenant_id: str, client_id: str, ttl_s: float) -> tuple[str, float]:
        expires = time.time() + ttl_s
        claims = _b64(json.dumps({"t": tenant_id, "c": client_id, "e": expires}).encode())
        signature = _b64(hmac.new(self._key, claims.encode(), hashlib.sha256).digest())
        return f"fwt.{claims}.{signature}", expires

    def verify(self, token: str) -> AccessClaims | None:
        if not token.isascii():  # compare_digest refuses non-ASCII strings: no token is anything but ASCII
            return None
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != "fwt":
            return None
        expected = _b64(hmac.new(self._key, parts[1].encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return None
        try:
            data = json.loads(_unb64(parts[1]))
            claims = AccessClaims(str(data["t"]), str(data["c"]), float(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return claims if claims.expires_at > time.time() else None
