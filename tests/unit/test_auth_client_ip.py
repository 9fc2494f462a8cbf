"""Whose address an anonymous caller is counted by: X-Forwarded-For only through trusted proxies."""

from __future__ import annotations

import pytest

from llm_gateway.auth.client_ip import anonymous_key, client_address, parse_networks

PROXIES = parse_networks(["10.0.0.0/8", "192.168.1.1", "fd00::/8"])


def key(peer: str | None, forwarded_for: str | None, proxies: object = PROXIES) -> str:
    return anonymous_key(client_address(peer, forwarded_for, proxies))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("203.0.113.7", None, "203.0.113.7"),
        ("203.0.113.7", "1.2.3.4", "203.0.113.7"),  # an untrusted peer cannot choose its address
        ("10.1.2.3", "198.51.100.9", "198.51.100.9"),
        ("10.1.2.3", "6.6.6.6, 198.51.100.9", "198.51.100.9"),  # the client prepended a lie
        ("10.1.2.3", "198.51.100.9, 10.9.9.9", "198.51.100.9"),  # two proxies of ours
        ("10.1.2.3", "10.9.9.9, 192.168.1.1", "10.9.9.9"),  # every hop ours: the farthest one
        ("10.1.2.3", "not-an-ip, 198.51.100.9", "198.51.100.9"),
        ("10.1.2.3", "198.51.100.9, garbage", "10.1.2.3"),  # stop where the chain stops making sense
        ("10.1.2.3", "198.51.100.9:4711", "198.51.100.9"),
        ("10.1.2.3", "[2001:db8::1]:443", "2001:db8::/64"),
        ("10.1.2.3", "", "10.1.2.3"),
        ("::ffff:203.0.113.7", None, "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", None, "2001:db8:1:2::/64"),
        ("fd00::1", "2001:db8::9", "2001:db8::/64"),
        (None, "1.2.3.4", "unknown"),
        ("testclient", None, "unknown"),
    ],
)
def test_client_address(peer: str | None, forwarded_for: str | None, expected: str) -> None:
    assert key(peer, forwarded_for) == expected


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert key("10.1.2.3", "198.51.100.9", proxies=()) == "10.1.2.3"
