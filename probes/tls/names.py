"""RFC 6125 host name matching: what a leaf's subjectAltNames say about a host name.

OpenSSL's ``X509_check_host`` rules, which Postfix and Exim use: case-insensitive,
IDNA names compared as A-labels, a wildcard only as the entire left-most label
standing for exactly one label (and never directly over a public suffix-like
single label: "*.com" matches nothing).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["is_address_literal", "match_hostname", "normalise_host"]

_IPV4_CHARS = frozenset("0123456789.")


def is_address_literal(host: str) -> bool:
    """Whether ``host`` could be an IP address (IPv6 has a colon, IPv4 only digits and
    dots); checked before parsing it as one, because a failed parse costs an exception
    for every ordinary name."""
    return ":" in host or _IPV4_CHARS.issuperset(host)


def normalise_host(host: str) -> str | None:
    """``host`` lowercased, without a trailing dot, as A-labels; None if not a name or address."""
    host = host.strip().rstrip(".").lower()
    if not host:
        return None
    if is_address_literal(host):
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = host.split(".")
    if any(not label or len(label) > 63 for label in labels) or len(host) > 253:
        return None
    return host


def _pattern_matches(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if not pattern.isascii() or not pattern:
        return False  # dNSName is IA5String; a U-label here is malformed
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    # RFC 6125 §6.4.3: the wildcard is the whole left-most label and stands
    # for exactly one label; require two labels after it (no "*.com").
    rest = pattern[2:]
    if "*" in rest or rest.count(".") < 1:
        return False
    head, dot, tail = host.partition(".")
    return bool(head) and bool(dot) and tail == rest


def match_hostname(host: str, san_dns: Sequence[str], san_ip: Sequence[str] = ()) -> bool:
    """RFC 6125 matching of ``host`` against a leaf's SAN entries (no CN fallback)."""
    name = normalise_host(host)
    if name is None:
        return False
    try:
        address = ipaddress.ip_address(name) if is_address_literal(name) else None
    except ValueError:
        address = None
    if address is None:
        return any(_pattern_matches(p, name) for p in san_dns)
    return any(_same_ip(address, ip) for ip in san_ip)


def _same_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address, text: str) -> bool:
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:
        return False
