"""Builds the embedded broker (or the address of an external one) from config."""

from __future__ import annotations

import json
import logging
import os
import secrets
import ssl
from dataclasses import fields
from pathlib import Path

from broker.auth import BrokerAuthenticator, StaticAuthenticator, StaticUser
from broker.client import BrokerAddress
from broker.core import BrokerLimits
from broker.embedded import EmbeddedBroker

from .config import FacewatchConfig
from .tls import server_context

__all__ = ("broker_limits", "static_users", "static_authenticator", "broker_ssl_context", "build_embedded_broker",
           "internal_address", "CREDENTIALS_FILE")

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "broker-credentials.json"


def broker_limits(cfg: FacewatchConfig) -> BrokerLimits:
    """Every limit the config's broker section sets (same names); the rest keep BrokerLimits' defaults."""
    configured = cfg.broker.model_dump()
    return BrokerLimits(**{f.name: configured[f.name] for f in fields(BrokerLimits) if f.name in configured})


def _generated_user(data_dir: Path) -> StaticUser:
    """A random credential kept in the data directory (0600), made on first start.

    Secure by default: no well-known password ever opens the broker.
    """
    path = data_dir / CREDENTIALS_FILE
    if path.is_file():
        stored = json.loads(path.read_text())
        return StaticUser(stored["login"], stored["passcode"])
    data_dir.mkdir(parents=True, exist_ok=True)
    user = StaticUser("facewatch", secrets.token_urlsafe(24))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"login": user.login, "passcode": user.passcode}, fh)
    log.info("generated STOMP credentials for login %r in %s", user.login, path)
    return user


def static_users(cfg: FacewatchConfig) -> list[StaticUser]:
    if cfg.broker.users:
        return [StaticUser(u.login, u.passcode, tuple(u.read), tuple(u.write)) for u in cfg.broker.users]
    return [_generated_user(Path(cfg.data_dir))]


def static_authenticator(cfg: FacewatchConfig) -> StaticAuthenticator:
    return StaticAuthenticator(static_users(cfg))


def broker_ssl_context(cfg: FacewatchConfig) -> ssl.SSLContext | None:
    """The embedded broker's TLS listener context (None without broker.tls_port).

    Raises ConfigError when its certificate or key cannot be loaded."""
    if cfg.broker.url != "embedded" or cfg.broker.tls_port is None:
        return None
    return server_context(cfg.broker.tls, "broker.tls")


def build_embedded_broker(cfg: FacewatchConfig, authenticator: BrokerAuthenticator | None = None,
                          ssl_context: ssl.SSLContext | None = None) -> EmbeddedBroker:
    """``authenticator``: default the static users only (serve adds tenants' API keys).
    ``ssl_context``: broker_ssl_context(cfg), which serve builds before the models load; built here if None."""
    b = cfg.broker
    return EmbeddedBroker(broker_limits(cfg), authenticator or static_authenticator(cfg), b.host, b.port,
                          tls_port=b.tls_port, ssl_context=ssl_context or broker_ssl_context(cfg))


def internal_address(cfg: FacewatchConfig, embedded_port: int | None = None) -> BrokerAddress:
    """Where facewatch's own parts connect: the external url, or the embedded broker.

    The embedded broker is reached in plain STOMP on loopback (``embedded_port``: its plain port,
    loopback-only when broker.port is null), never through its TLS port: on one host TLS would only
    cost CPU, and the certificate names the public host, not 127.0.0.1."""
    if cfg.broker.url != "embedded":
        return BrokerAddress.parse(cfg.broker.url, ca_file=cfg.broker.ca_file)
    user = static_users(cfg)[0]
    port = embedded_port or cfg.broker.port
    if port is None:
        raise ValueError("the embedded broker's loopback port is known once it has started")
    return BrokerAddress("127.0.0.1", port, user.login, user.passcode)
