"""Opt-out list (``--exclude FILE``): names and address ranges never contacted.

One entry per line; ``#`` starts a comment; blank lines are ignored::

    example.com          # the domain and every name below it (mx.example.com, …)
    *.example.org        # the same as example.org
    mx.provider.net      # an MX host (same suffix rule)
    192.0.2.0/24         # an IPv4 range; a bare address means /32
    2001:db8::/32        # an IPv6 range; a bare address means /128

Matching is on label boundaries: ``example.com`` excludes ``a.example.com``
but not ``notexample.com``.  Names are compared as lowercase A-labels
(``engine.names``), so ``Bücher.de`` and ``xn--bcher-kva.de`` are one entry.

Lookups stay fast for large lists: a name costs one set lookup per label
(at most 127), an address one set lookup per distinct prefix length in the
list (at most 33 for IPv4, 129 for IPv6).  An IPv4-mapped IPv6 address
(``::ffff:192.0.2.1``) is also checked against the IPv4 ranges.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from engine.names import normalise_domain
from engine.textfile import not_utf8, utf8_error_offset

__all__ = ["ExcludeError", "ExcludeList"]

#: A line longer than this is refused (no name or range is anywhere near it).
MAX_LINE_CHARS = 1024


class ExcludeError(ValueError):
    """An exclude list line is not a name, an address or a range.

    ``line`` is its 1-based line number.
    """

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ExcludeList:
    """Names (suffix rule) and address ranges to leave alone."""

    def __init__(self, names: Iterable[str] = (), networks: Iterable[IpNetwork] = ()) -> None:
        self._names = frozenset(names)
        # version -> prefix length -> network addresses as integers
        self._ranges: dict[int, dict[int, set[int]]] = {4: {}, 6: {}}
        self._count = len(self._names)
        for net in networks:
            by_len = self._ranges[net.version].setdefault(net.prefixlen, set())
            if int(net.network_address) not in by_len:
                by_len.add(int(net.network_address))
                self._count += 1

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> ExcludeList:
        """Parse lines; ExcludeError (with the line number) for an invalid one."""
        names: list[str] = []
        networks: list[IpNetwork] = []
        for number, raw in enumerate(lines, start=1):
            if len(raw) > MAX_LINE_CHARS:
                raise ExcludeError(number, f"line longer than {MAX_LINE_CHARS} characters")
            entry = raw.partition("#")[0].strip()
            if not entry:
                continue
            if len(entry.split()) > 1:
                raise ExcludeError(number, f"one entry per line, got {entry!r}")
            network = _network(entry)
            if network is not None:
                networks.append(network)
                continue
            name, reason = normalise_domain(entry[2:] if entry.startswith("*.") else entry)
            if name is None:
                raise ExcludeError(number, f"not a name, address or range: {entry!r} ({reason})")
            names.append(name)
        return cls(names, networks)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ExcludeList:
        """The list in the file at ``path``; ExcludeError for a line that is not an entry,
        ValueError for bytes that are not UTF-8 (with their offset in the file), OSError as
        ``open`` raises it."""
        try:
            with Path(path).open(encoding="utf-8") as stream:
                # Lines read up to the cap, so a line without end (``/dev/zero``) is refused
                # as too long once the cap is passed, not read until memory runs out.
                return cls.from_lines(iter(lambda: stream.readline(MAX_LINE_CHARS + 1), ""))
        except UnicodeDecodeError:
            offset = utf8_error_offset(path)
            raise ValueError(f"{not_utf8(offset or 0)}, expected an opt-out list") from None

    def __len__(self) -> int:
        return self._count

    def excludes_name(self, name: str) -> bool:
        """True if ``name`` or a parent of it is listed; False for names that are not valid."""
        if not self._names:
            return False
        normal, _ = normalise_domain(name)
        if normal is None:
            return False
        if normal in self._names:
            return True
        dot = normal.find(".")
        while dot != -1:
            if normal[dot + 1 :] in self._names:
                return True
            dot = normal.find(".", dot + 1)
        return False

    def excludes_address(self, ip: str) -> bool:
        """True if ``ip`` is inside a listed range; False for text that is not an address."""
        try:
            address: IpAddress = ipaddress.ip_address(ip.strip())
        except ValueError:
            return False
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if mapped is not None and self._in_ranges(mapped):
            return True
        return self._in_ranges(address)

    def _in_ranges(self, address: IpAddress) -> bool:
        bits = address.max_prefixlen
        value = int(address)
        for prefixlen, starts in self._ranges[address.version].items():
            shift = bits - prefixlen
            if (value >> shift) << shift in starts:
                return True
        return False


def _network(entry: str) -> IpNetwork | None:
    """The range an entry names, or None if it is not an address or range.

    Host bits after the prefix are ignored (``192.0.2.7/24`` is ``192.0.2.0/24``):
    the writer's intent is clear and an opt-out should err on the side of excluding.
    """
    if "/" not in entry and ":" not in entry and not entry.replace(".", "").isdigit():
        return None  # a name: skip the exception-driven parse
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None
