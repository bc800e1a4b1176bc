"""TLS settings: config validation, stomps:// addresses, where facewatch's own parts connect."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.client import BrokerAddress
from facewatch.broker_setup import internal_address
from facewatch.config import ConfigError, parse_config


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"api": {"tls": {"cert_file": "/etc/fw/cert.pem"}}}, "api.tls: Value error, set both cert_file and key_file"),
        ({"broker": {"tls": {"key_file": "/k.pem"}}}, "broker.tls: Value error, set both cert_file and key_file"),
        ({"broker": {"tls_port": 61614}}, "broker: Value error, tls_port needs tls.cert_file and tls.key_file"),
        ({"api": {"tls": {"cert_file": "c", "key_file": "k", "min_version": "1.1"}}}, "api.tls.min_version"),
        ({"broker": {"url": "amqp://rabbit"}}, "url must be 'embedded' or stomp[s]://"),
    ],
)
def test_bad_tls_settings_name_the_key(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, environ={})
    assert expected in str(err.value)


def test_tls_settings_from_the_environment() -> None:
    cfg = parse_config({}, environ={
        "FACEWATCH_API__TLS__CERT_FILE": "/c.pem", "FACEWATCH_API__TLS__KEY_FILE": "/k.pem",
        "FACEWATCH_BROKER__PORT": "null", "FACEWATCH_BROKER__TLS_PORT": "61614",
        "FACEWATCH_BROKER__TLS__CERT_FILE": "/c.pem", "FACEWATCH_BROKER__TLS__KEY_FILE": "/k.pem",
    })
    assert cfg.api.tls.enabled and cfg.api.tls.min_version == "1.2"
    assert cfg.broker.port is None and cfg.broker.tls_port == 61614 and cfg.broker.tls.enabled
    assert not parse_config({}, environ={}).api.tls.enabled


def test_tls_broker_urls() -> None:
    a = BrokerAddress.parse("stomps://svc:secret@rabbit.example.com/prod", ca_file="/ca.pem")
    assert (a.host, a.port, a.vhost, a.tls, a.ca_file) == ("rabbit.example.com", 61614, "prod", True, "/ca.pem")
    b = BrokerAddress.parse("stomp+ssl://svc:secret@rabbit:15000")
    assert (b.port, b.tls, b.ca_file) == (15000, True, None)
    plain = BrokerAddress.parse("stomp://svc:secret@rabbit", ca_file="/ca.pem")
    assert (plain.port, plain.tls, plain.ca_file) == (61613, False, None)
    with pytest.raises(ValueError):
        BrokerAddress.parse("ssl://svc:secret@rabbit")


def test_internal_parts_use_loopback_plain_stomp_or_the_external_url(tmp_path: Path) -> None:
    external = parse_config({"broker": {"url": "stomps://svc:secret@rabbit", "ca_file": "/ca.pem"}}, environ={})
    assert internal_address(external) == BrokerAddress("rabbit", 61614, "svc", "secret", "/", True, "/ca.pem")
    embedded = parse_config({"data_dir": str(tmp_path), "broker": {
        "port": None, "tls_port": 61614, "tls": {"cert_file": "c", "key_file": "k"},
        "users": [{"login": "fw", "passcode": "a long secret"}]}}, environ={})
    # The embedded broker's loopback port once started: never its TLS port.
    assert internal_address(embedded, 40001) == BrokerAddress("127.0.0.1", 40001, "fw", "a long secret")
