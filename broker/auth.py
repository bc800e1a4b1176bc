"""Who may connect, and what each principal may read and write.

The broker asks a ``BrokerAuthenticator`` at CONNECT; the repo will provide one that
checks API keys and tokens. Until then ``StaticAuthenticator`` checks
configured credentials. Permissions are destination prefixes (``"/"``: all) or,
where a prefix is not meant, exact destinations: a tenant may SEND to the API
queue itself, not to every name that starts like it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ("BrokerPrincipal", "Credentials", "BrokerAuthenticator", "StaticAuthenticator", "StaticUser")


@dataclass(slots=True, frozen=True)
class BrokerPrincipal:
    name: str
    read_prefixes: tuple[str, ...] = ("/",)  # SUBSCRIBE
    write_prefixes: tuple[str, ...] = ("/",)  # SEND
    tenant: str | None = None
    # For destinations prefixes cannot describe (a tenant's own cameras): asked
    # at SUBSCRIBE when no prefix allows the destination.
    read_check: Callable[[str], bool] | None = field(default=None, compare=False)
    write_exact: frozenset[str] = frozenset()  # SEND, these destinations only
    # The operator's own credentials (the server's parts): exempt from per-login quotas and never paused
    # by the memory alarm, since they are what consumes the queues.
    trusted: bool = False
    credential: str | None = None  # the revocable credential it connected with (an API key's id)
    # When the credential it connected with stops being valid (an access token's expiry, epoch seconds):
    # the connection is closed then, as if it were revoked (BrokerCore.close_expired).
    expires_at: float | None = None
    # False: no SEND at all, not even to a reply queue (a tenant's subscribe-only key).
    may_send: bool = True

    def may_read(self, destination: str) -> bool:
        if any(destination.startswith(p) for p in self.read_prefixes):
            return True
        return self.read_check is not None and self.read_check(destination)

    def may_write(self, destination: str) -> bool:
        return destination in self.write_exact or any(destination.startswith(p) for p in self.write_prefixes)


@dataclass(slots=True, frozen=True)
class Credentials:
    login: str | None
    passcode: str | None
    authorization: str | None  # "Bearer <token>" or an API key


class BrokerAuthenticator(Protocol):
    def authenticate(self, credentials: Credentials) -> BrokerPrincipal | None: ...


@dataclass(slots=True, frozen=True)
class StaticUser:
    login: str
    passcode: str
    read: tuple[str, ...] = ("/",)
    write: tuple[str, ...] = ("/",)
    trusted: bool = True  # configured by the operator, unlike tenants' keys


@dataclass(slots=True)
class StaticAuthenticator:
    users: list[StaticUser] = field(default_factory=list)
    bearer_tokens: dict[str, str] = field(default_factory=dict)  # token -> login of a user above

    def _principal(self, user: StaticUser) -> BrokerPrincipal:
        return BrokerPrincipal(user.login, user.read, user.write, trusted=user.trusted)

    def authenticate(self, credentials: Credentials) -> BrokerPrincipal | None:
        by_login = {u.login: u for u in self.users}
        if credentials.authorization:
            scheme, _, token = credentials.authorization.partition(" ")
            if scheme.lower() == "bearer":
                for known, login in self.bearer_tokens.items():
                    if hmac.compare_digest(known.encode(), token.encode()) and login in by_login:
                        return self._principal(by_login[login])
            return None
        user = by_login.get(credentials.login or "")
        if user is None or credentials.passcode is None:
            return None
        if not hmac.compare_digest(user.passcode.encode(), credentials.passcode.encode()):
            return None
        return self._principal(user)
