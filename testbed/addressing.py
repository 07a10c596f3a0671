"""Loopback addresses for simulated hosts: one distinct 127.x.y.z each.

The whole 127.0.0.0/8 routes to the loopback interface on Linux without any
configuration (measured on Debian 12), so every simulated machine gets its own address and
servers can bind exactly it.  127.0.0.0/16 is kept for the servers' own
endpoints (the DNS resolver at 127.0.0.53, 127.0.0.1 for everything else on the
machine); hosts start at 127.1.0.1.  Last octets 0 and 255 are skipped so no
host has an address that looks like a network or broadcast address.
"""

from __future__ import annotations

import ipaddress

__all__ = ["IPV6_LOOPBACK", "AddressAllocator", "is_world_address"]

#: The only IPv6 loopback address, so one listener: the catalogue's IPv6-only host works there;
#: in an Internet-like world it is every "silent IPv6" host's SYN-dropping AAAA instead.
IPV6_LOOPBACK = "::1"

_FIRST = (1 << 24) * 127 + (1 << 16)  # 127.1.0.0
_END = (1 << 24) * 128  # first address after 127/8


class AddressAllocator:
    """Hands out 127.x.y.z addresses in order, deterministically.

    >>> alloc = AddressAllocator()
    >>> alloc.next(), alloc.next()
    ('127.1.0.1', '127.1.0.2')
    """

    __slots__ = ("_next",)

    def __init__(self, start: str = "127.1.0.1") -> None:
        value = int(ipaddress.IPv4Address(start))
        if not _FIRST <= value < _END:
            raise ValueError(f"start {start} is outside 127.1.0.0-127.255.255.255")
        self._next = value

    def next(self) -> str:
        value = self._next
        while value & 0xFF in (0, 255):
            value += 1
        if value >= _END:
            raise OverflowError("127.0.0.0/8 exhausted")
        self._next = value + 1
        return f"127.{(value >> 16) & 0xFF}.{(value >> 8) & 0xFF}.{value & 0xFF}"


def is_world_address(address: str) -> bool:
    """True for an address a simulated host may have: 127.1.0.0 and up, or ::1."""
    if address == IPV6_LOOPBACK:
        return True
    try:
        value = int(ipaddress.IPv4Address(address))
    except ValueError:
        return False
    return _FIRST <= value < _END and value & 0xFF not in (0, 255)
