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
import socket
from collections.abc import Sequence

__all__ = ("IPNetwork", "NETWORK_SCHEMES", "DEFAULT_BLOCKED_NETWORKS", "parse_networks", "blocked_reason")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")  # the camera URLs that name a host to connect to

# Loopback, "this host", link-local (cloud metadata services, zero-conf), multicast and broadcast.
# Private LANs are not here: that is where cameras are.
DEFAULT_BLOCKED_NETWORKS = ("127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128", "169.254.0.0/16", "fe80::/10",
                            "224.0.0.0/4", "ff00::/8", "255.255.255.255/32")


def parse_networks(values: Sequence[str]) -> tuple[IPNetwork, ...]:
    """CIDR blocks ("127.0.0.0/8", "::1/128", or one address); ValueError naming a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP network (such as 127.0.0.0/8 or ::1/128)") from None
    return tuple(networks)


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


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 address an IPv6 one carries to a host that translates it: IPv4-mapped (::ffff:127.0.0.1 is
    127.0.0.1 to the kernel), 6to4, NAT64's well-known prefix, the old IPv4-compatible form."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    carried = [address.ipv4_mapped, address.sixtofour]
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 1):  # not :: and ::1 themselves
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in carried if a is not None]
