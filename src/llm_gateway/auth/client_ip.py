"""The caller's address, for anonymous callers: the socket peer, or ``X-Forwarded-For`` from a trusted proxy.

The header is read right to left, skipping our own proxies; the first address they did not add
is the client. IPv6 clients are keyed by their /64, the block one host usually holds.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(items: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("["):  # "[2001:db8::1]:443"
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:  # "203.0.113.5:1234"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network for network in proxies)


def from_trusted_proxy(peer: str | None, proxies: Sequence[Network]) -> bool:
    """Whether the socket peer is one of our proxies, whose ``X-Forwarded-*`` headers count."""
    address = _address(peer) if peer else None
    return address is not None and _trusted(address, proxies)


def client_address(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> Address | None:
    """The client's address; ``forwarded_for`` counts only when the peer is a trusted proxy."""
    current = _address(peer) if peer else None
    if current is None or not forwarded_for or not _trusted(current, proxies):
        return current
    for hop in reversed(forwarded_for.split(",")):
        address = _address(hop)
        if address is None:
            return current  # garbage: stop at the last hop a trusted proxy vouched for
        current = address
        if not _trusted(address, proxies):
            return address
    return current


def anonymous_key(address: Address | None) -> str:
    """What anonymous limits are counted by: the IPv4 address, or the IPv6 /64."""
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
