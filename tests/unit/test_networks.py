"""Which hosts a network camera may name (watcher/networks.py, through SourcePolicy)."""

from __future__ import annotations

import ipaddress

import pytest

from api.errors import BadParam
from facewatch.config import ConfigError, parse_config
from watcher.cameras import SourcePolicy
from watcher.networks import DEFAULT_BLOCKED_NETWORKS, blocked_reason, own_addresses, parse_networks

DEFAULT = parse_networks(DEFAULT_BLOCKED_NETWORKS)


@pytest.mark.parametrize("host, inside", [
    ("127.0.0.1", "127.0.0.0/8"), ("127.1.2.3", "127.0.0.0/8"), ("::1", "::1/128"), ("[::1]", "::1/128"),
    ("::ffff:127.0.0.1", "127.0.0.0/8"),  # IPv4-mapped: the kernel connects to 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "169.254.0.0/16"), ("2002:7f00:1::", "127.0.0.0/8"),  # NAT64, 6to4: translated
    ("::127.0.0.1", "127.0.0.0/8"),  # the old IPv4-compatible form
    ("::ffff:0:127.0.0.1", "127.0.0.0/8"), ("64:ff9b:1::127.0.0.1", "127.0.0.0/8"),  # SIIT, local-use NAT64
    ("0.0.0.0", "0.0.0.0/8"), ("::", "::/128"), ("169.254.169.254", "169.254.0.0/16"), ("fe80::1%eth0", "fe80::/10"),
    ("localhost", "127.0.0.0/8"),  # a name, by what it resolves to
    ("2130706433", "127.0.0.0/8"), ("127.1", "127.0.0.0/8"), ("0x7f000001", "127.0.0.0/8"),  # inet_aton's spellings
])
def test_the_servers_own_host_and_the_clouds_metadata_are_refused(host: str, inside: str) -> None:
    reason = blocked_reason(host, 80, DEFAULT)
    assert reason is not None and inside in reason and "watcher.blocked_networks" in reason


@pytest.mark.parametrize("host", ["192.168.1.20", "10.0.0.7", "172.16.4.4", "198.51.100.7", "fd00::12", "2001:db8::1",
                                  "camera.invalid"])  # a name that does not resolve: FFmpeg will fail on it too
def test_cameras_on_lans_and_the_internet_are_allowed(host: str) -> None:
    assert blocked_reason(host, 554, DEFAULT) is None


def test_this_hosts_own_addresses_are_refused() -> None:
    # A service of this host bound to 0.0.0.0 answers on every address of it, not only on loopback.
    assert ipaddress.ip_network("127.0.0.1/32") in parse_networks(["self"])
    for network in own_addresses():
        reason = blocked_reason(str(network.network_address), 80, DEFAULT)
        assert reason is not None and str(network.network_address) in reason


def test_without_resolving_only_addresses_written_as_such_are_checked() -> None:
    assert blocked_reason("localhost", 80, DEFAULT, resolve=False) is None
    assert blocked_reason("127.0.0.1", 80, DEFAULT, resolve=False) is not None
    assert blocked_reason("127.0.0.1", 80, ()) is None  # [] allows every host


@pytest.mark.parametrize("url", [
    # Read as 127.0.0.1 by FFmpeg (the host up to the first ':', atoi for the port), not by urlsplit.
    "rtsp://127.0.0.1:554[fd00::1]/cam", "http://user:pw@127.0.0.1:80[v1.x]/latest/meta-data/",
    "http://127.0.0.1 /x", "http://cam;127.0.0.1/", "http://ca*m/", "http://cam%00/", "http://cafe%00/",
    "http://[v1.x]/", "http://[::1]x/"])
def test_an_authority_another_url_parser_could_read_otherwise_is_refused(url: str) -> None:
    with pytest.raises(BadParam, match="its host may be a name"):
        SourcePolicy().check(url)
    # Even where nothing is blocked: the check is of the URL's shape.
    with pytest.raises(BadParam, match="its host may be a name"):
        SourcePolicy(blocked_networks=()).check(url)


def test_the_source_policy_refuses_them_as_a_bad_url() -> None:
    policy = SourcePolicy()  # blocks the defaults unless told otherwise
    with pytest.raises(BadParam, match="127.0.0.0/8") as refused:
        policy.check("rtsp://localhost:8554/cam")
    assert refused.value.param == "url"
    policy.check("rtsp://192.168.1.20:554/stream1")
    SourcePolicy(blocked_networks=()).check("rtsp://127.0.0.1:8554/cam")


def test_the_blocked_networks_setting_is_validated_and_may_be_emptied() -> None:
    assert parse_config({}, environ={}).watcher.blocked_networks == list(DEFAULT_BLOCKED_NETWORKS)
    assert parse_config({}, environ={"FACEWATCH_WATCHER__BLOCKED_NETWORKS": "[]"}).watcher.blocked_networks == []
    with pytest.raises(ConfigError, match="not an IP network"):
        parse_config({"watcher": {"blocked_networks": ["127.0.0.0/8", "loopback"]}}, environ={})
