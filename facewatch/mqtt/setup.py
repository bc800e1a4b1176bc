"""The MQTT bridge's options from the config, checked when serve starts (before the models load)."""

from __future__ import annotations

import ssl
from pathlib import Path

from ..config import ConfigError, MqttConfig, MqttTlsConfig
from .bridge import BrokerOptions
from .messages import Routing

__all__ = ("broker_options", "routing", "client_context")


def client_context(tls: MqttTlsConfig) -> ssl.SSLContext:
    """The TLS context of the bridge's connection; a file that cannot be used is a ConfigError naming its key."""
    for name, path in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        if path is None:
            continue
        try:
            Path(path).open("rb").close()
        except OSError as exc:
            raise ConfigError(f"mqtt.tls.{name}: cannot read {path} ({exc.strerror})") from None
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
    except ssl.SSLError as exc:
        raise ConfigError(f"mqtt.tls.ca_file: {tls.ca_file} is not a PEM CA bundle ({exc.reason})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = tls.verify_hostname
    if tls.cert_file is not None and tls.key_file is not None:
        def encrypted() -> str:
            raise ConfigError(f"mqtt.tls.key_file: {tls.key_file} is encrypted; give an unencrypted key")

        try:
            context.load_cert_chain(tls.cert_file, tls.key_file, password=encrypted)
        except ssl.SSLError as exc:
            raise ConfigError(f"mqtt.tls: {tls.cert_file} and {tls.key_file} are not a PEM certificate and its "
                              f"private key ({exc.reason})") from None
    return context


def broker_options(mqtt: MqttConfig, node: str) -> BrokerOptions:
    return BrokerOptions(
        host=mqtt.host, port=mqtt.port, client_id=mqtt.client_id or f"facewatch-{node}"[:128],
        username=mqtt.username, password=mqtt.password,
        tls=client_context(mqtt.tls) if mqtt.tls.enabled else None, keepalive_s=mqtt.keepalive_s, qos=mqtt.qos,
        reconnect_initial_s=mqtt.reconnect_initial_s, reconnect_max_s=mqtt.reconnect_max_s)


def routing(mqtt: MqttConfig) -> Routing:
    return Routing.of(mqtt.topic_prefix, mqtt.cameras, mqtt.events, mqtt.strip)
