"""RFC 6125 host name matching: what a leaf's subjectAltNames say about a host name.

OpenSSL's ``X509_check_host`` rules, which Postfix and Exim use: case-insensitive,
IDNA names compared as A-labels, a wildcard only as the entire left-most label
standing for exactly one label (and never directly over a public suffix-like
single label: "*.com" matches nothing).

When a leaf has no dNSName, OpenSSL also holds the subject CNs that look like host
names to the dNSName name constraints above it (RFC 5280 §4.2.1.10 speaks only of
subjectAltName; OpenSSL closes the CN fallback's loophole): ``cn_dns_id`` and
``dns_name_permitted`` follow its ``cn2dnsid`` and ``nc_dns`` (crypto/x509/v3_ncons.c).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["cn_dns_id", "dns_name_permitted", "is_address_literal", "match_hostname", "normalise_host"]

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


_DNS_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def cn_dns_id(cn: str) -> str | None:
    """A subject CN as a host name for name constraints, None when it does not look like one.

    OpenSSL's rules: trailing NULs dropped; letters, digits and "_", with "-" and "." inside
    only, no "." next to another "." or a "-", and at least two labels (so "CN=localhost"
    escapes every constraint, as there).  An embedded NUL raises ``ValueError``: OpenSSL
    refuses such a CN outright (unsupported name syntax)."""
    cn = cn.rstrip("\x00")
    if "\x00" in cn:
        raise ValueError("embedded NUL in the subject CN")
    dotted = False
    for i, c in enumerate(cn):
        if c in _DNS_ID_CHARS:
            continue
        inner = 0 < i < len(cn) - 1
        if inner and c == "-":
            continue
        if inner and c == "." and cn[i + 1] not in ".-" and cn[i - 1] != "-":
            dotted = True
            continue
        return None
    return cn if dotted else None


def _dns_subtree_holds(name: bytes, base: bytes) -> bool:
    # nc_dns: labels may be added on the left; "example.com" covers itself and
    # "a.example.com", ".example.com" only names below it.  ASCII case-insensitive.
    if not base:
        return True
    if len(name) < len(base):
        return False
    tail = name[len(name) - len(base) :]
    if len(name) > len(base) and not base.startswith(b".") and name[-len(base) - 1 : -len(base)] != b".":
        return False
    return tail.lower() == base.lower()


def dns_name_permitted(name: str, permitted: Sequence[str], excluded: Sequence[str]) -> bool:
    """Whether host name ``name`` is inside one of the ``permitted`` dNSName subtrees (when there
    are any) and outside every ``excluded`` one (RFC 5280 §4.2.1.10)."""
    raw = name.encode("utf-8")
    if permitted and not any(_dns_subtree_holds(raw, base.encode("utf-8")) for base in permitted):
        return False
    return not any(_dns_subtree_holds(raw, base.encode("utf-8")) for base in excluded)
