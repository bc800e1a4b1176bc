"""Server-side TLS contexts from config: HTTPS/WSS on the API port, STOMP on broker.tls_port."""

from __future__ import annotations

import ssl
from pathlib import Path

from .config import ConfigError, TlsConfig

__all__ = ("server_context",)

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def server_context(tls: TlsConfig, key: str) -> ssl.SSLContext:
    """A context serving ``tls``'s certificate; ``key`` names the section in errors (e.g. ``api.tls``).

    Built when serve starts, before the models load, so a missing, unreadable or
    mismatched file stops it at once with a ConfigError naming the key.
    """
    if tls.cert_file is None or tls.key_file is None:
        raise ConfigError(f"{key}: cert_file and key_file are needed for a TLS listener")
    for name, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        try:
            Path(path).open("rb").close()
        except OSError as exc:
            raise ConfigError(f"{key}.{name}: cannot read {path} ({exc.strerror})") from None
    # Purpose.CLIENT_AUTH: the context of a server (it authenticates clients, if asked to).
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = _VERSIONS[tls.min_version]

    def encrypted() -> str:
        # Without a callback OpenSSL would prompt on the terminal: a server must not wait for a typist.
        raise ConfigError(f"{key}.key_file: {tls.key_file} is encrypted; give an unencrypted key "
                          "(readable by the service user only)")

    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=encrypted)
    except ssl.SSLError as exc:
        detail = f" ({exc.reason})" if exc.reason else ""
        raise ConfigError(f"{key}: {tls.cert_file} and {tls.key_file} are not a PEM certificate and its "
                          f"private key{detail}") from None
    return context
