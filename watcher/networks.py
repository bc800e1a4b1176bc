"""Which hosts a network camera may name: not the server's own (loopback), nor the cloud's metadata
service (link-local), unless the operator says so.

A tenant registers a camera by URL and the server connects to it, so without this a tenant could make
the server fetch from services that trust this host: a database listening on 127.0.0.1 with trust
authentication, a cloud's credentials at 169.254.169.254, the server's own broker. The URL's host is
checked as written and as every address its name resolves to, when the camera is registered or changed
and again by the worker each time it opens the stream (a name that resolved elsewhere at registration
may resolve here later). FFmpeg then resolves the name once more itself; a name whose owner switches
its answer between those two lookups (DNS rebinding) is not caught: a deployment that must rule that
out lets cameras reach only the networks they are on, with a firewall.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

import psutil

__all__ = ("IPNetwork", "NETWORK_SCHEMES", "SELF", "DEFAULT_BLOCKED_NETWORKS", "parse_networks", "own_addresses",
           "url_host", "blocked_reason")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")  # the camera URLs that name a host to connect to

# "self": this host's own addresses on every interface (its services bound to 0.0.0.0 answer there too).
SELF = "self"

# This host (loopback, its own addresses, 0.0.0.0), link-local (cloud metadata services, zero-conf),
# multicast and broadcast. Private LANs are not here: that is where cameras are.
DEFAULT_BLOCKED_NETWORKS = ("127.0.0.0/8", "::1/128", SELF, "0.0.0.0/8", "::/128", "169.254.0.0/16", "fe80::/10",
                            "224.0.0.0/4", "ff00::/8", "255.255.255.255/32")


# The host and port after the userinfo: a name, or an IPv6 address in brackets (with a zone id), and digits.
# Nothing else, so that FFmpeg's URL parser (av_url_split: the host up to the first ':', a port read by
# atoi, brackets only at the start) reads the same host as this one: "127.0.0.1:554[fd00::1]" is
# 127.0.0.1 to FFmpeg and fd00::1 to urlsplit.
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?)\]"
                        r"|(?P<name>[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?))(?::(?P<port>[0-9]{1,5}))?$")


def url_host(url: str) -> tuple[str, int | None]:
    """The host and port a network camera's URL names; ValueError when its authority is anything but
    ``[userinfo@]host[:port]`` with a plain host name, IPv4 or bracketed IPv6 address, and a numeric port."""
    netloc = urlsplit(url).netloc
    found = _HOST_PORT.match(netloc.rpartition("@")[2])
    if found is None:
        raise ValueError("its host may be a name (letters, digits, '.', '-', '_'), an IPv4 address or an IPv6 one "
                         "in brackets, and its port only digits")
    port = int(found["port"]) if found["port"] else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return found["v6"] or found["name"], port


def parse_networks(values: Sequence[str]) -> tuple[IPNetwork, ...]:
    """CIDR blocks ("127.0.0.0/8", "::1/128", or one address), and ``self`` for this host's own addresses
    as its interfaces have them now; ValueError naming a bad one."""
    networks: list[IPNetwork] = []
    for value in values:
        if value.strip() == SELF:
            networks += own_addresses()
            continue
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP network (such as 127.0.0.0/8 or ::1/128) or 'self'") from None
    return tuple(dict.fromkeys(networks))


def own_addresses() -> list[IPNetwork]:
    """Every address of this host's interfaces, each as a network of one."""
    found: list[IPNetwork] = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                found.append(ipaddress.ip_network(address.address.split("%")[0]))
    return found


def blocked_reason(host: str, port: int | None, blocked: Sequence[IPNetwork], resolve: bool = True) -> str | None:
    """Why a camera may not connect to ``host`` (None: it may). ``resolve``: a name is checked by the
    addresses it resolves to (blocking); otherwise only an address written as one is checked. A name that
    does not resolve here is let through: the camera may be on a network this node cannot see yet, and
    FFmpeg will fail on it the same way."""
    if not blocked:
        return None
    for address in _addresses(host, port, resolve):
        inside = _blocking_network(address, blocked)
        if inside is not None:
            named = host if host == str(address) else f"{host} ({address})"
            return (f"the camera's host {named} is in {inside}, a network cameras may not reach (the server's own "
                    "services or the cloud's metadata); an operator who means it (a camera relay on this host) "
                    "takes that network out of watcher.blocked_networks in the config file (or "
                    "FACEWATCH_WATCHER__BLOCKED_NETWORKS='[\"169.254.0.0/16\"]') and restarts facewatch")
    return None


def _addresses(host: str, port: int | None, resolve: bool) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    literal = host.strip("[]").split("%")[0]  # an IPv6 literal's brackets, a zone id
    try:
        return [ipaddress.ip_address(literal)]
    except ValueError:
        if not resolve:
            return []
    try:
        found = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]


def _blocking_network(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                      blocked: Sequence[IPNetwork]) -> IPNetwork | None:
    for candidate in (address, *_embedded_ipv4(address)):
        for network in blocked:
            if candidate.version == network.version and candidate in network:
                return network
    return None


# Prefixes whose last 32 bits are an IPv4 address a translator connects to: NAT64 (well-known and local
# use), SIIT's IPv4-translated form.
_TRANSLATED = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"),
               ipaddress.IPv6Network("::ffff:0:0:0/96"))
_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one carries to a host that translates it: IPv4-mapped (::ffff:127.0.0.1 is
    127.0.0.1 to the kernel), 6to4, Teredo, NAT64 and SIIT prefixes, the old IPv4-compatible form."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    carried = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if any(address in prefix for prefix in _TRANSLATED) or (address in _COMPATIBLE and int(address) > 1):
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))  # (:: and ::1 are themselves)
    return [a for a in carried if a is not None]
