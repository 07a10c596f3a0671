"""Matching MX host names against MTA-STS ``mx`` patterns (RFC 8461 §4.1).

RFC 8461 §4.1: an MX host is valid for a policy when its name matches one of
the policy's ``mx`` patterns, "with restriction that the wildcard character
'*' may only be used to match the entire left-most label".  So
``*.example.com`` matches ``mail.example.com`` but neither ``example.com``
nor ``foo.bar.example.com``.  Names compare as DNS names do: ASCII case is
ignored (RFC 4343), a final root dot is not part of the comparison, and an
internationalised label compares in its A-label form (§3.2 requires A-labels
in policies; a U-label here is converted with Python's IDNA 2003 codec, so
the rare labels on which IDNA 2003 and 2008 differ, such as "ß", may not
match).

Everything here is pure and never raises.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Coverage", "HostCoverage", "coverage", "mx_matches", "normalize_name"]


@dataclass(frozen=True, slots=True)
class HostCoverage:
    """One MX host and the policy pattern that covers it.

    Fields:
      host: the MX host name as given.
      pattern: the first policy mx pattern (in policy order) that matches the host; null when none does.
    """

    host: str
    pattern: str | None


@dataclass(frozen=True, slots=True)
class Coverage:
    """How a policy's mx patterns line up with the domain's MX hosts (RFC 8461 §4.1).

    Fields:
      hosts: each distinct MX host (in the order given) with the pattern covering it.
      uncovered: MX hosts that no pattern matches: a sender applying the policy refuses them.
      stale_patterns: patterns that match none of the MX hosts (left over, or a typo), in policy order.
      all_covered: every MX host is matched by some pattern; false when there are no MX hosts.
    """

    hosts: tuple[HostCoverage, ...]
    uncovered: tuple[str, ...]
    stale_patterns: tuple[str, ...]
    all_covered: bool


def normalize_name(name: str) -> str | None:
    """``name`` as lowercase A-labels without the final dot.

    None when it is no usable name: empty, an empty label ("a..b", the null MX "."), or a label
    that cannot be made an A-label.
    """
    labels = name.removesuffix(".").split(".")
    out: list[str] = []
    for label in labels:
        if not label:
            return None
        if label.isascii():
            out.append(label.lower())
            continue
        try:
            out.append(label.encode("idna").decode("ascii").lower())
        except UnicodeError:
            return None
    return ".".join(out)


def _matches_normalized(pattern: str, host: str) -> bool:
    if not host or not pattern:
        return False
    if pattern.startswith("*."):
        suffix = pattern[2:]
        _first, dot, rest = host.partition(".")
        # The wildcard stands for exactly one whole leftmost label (non-empty:
        # normalize_name refuses empty labels).
        return bool(suffix) and "*" not in suffix and bool(dot) and rest == suffix
    # A "*" anywhere else is no wildcard RFC 8461 §4.1 knows: such a pattern matches nothing.
    return "*" not in pattern and pattern == host


def mx_matches(pattern: str, host: str) -> bool:
    """Whether the policy ``mx`` pattern matches the MX host name (RFC 8461 §4.1)."""
    p = normalize_name(pattern)
    h = normalize_name(host)
    return p is not None and h is not None and _matches_normalized(p, h)


def coverage(patterns: Iterable[str], mx_hosts: Iterable[str]) -> Coverage:
    """Which pattern covers each MX host, which hosts are uncovered, which patterns are stale."""
    pattern_list = list(dict.fromkeys(patterns))
    normalized = [(p, normalize_name(p)) for p in pattern_list]
    seen: set[str] = set()
    hosts: list[HostCoverage] = []
    used: set[str] = set()
    for host in mx_hosts:
        key = normalize_name(host)
        dedupe_key = host if key is None else key
        if dedupe_key in seen:
            continue
        seen.add(dedupe_key)
        match: str | None = None
        for raw, norm in normalized:
            if key is not None and norm is not None and _matches_normalized(norm, key):
                used.add(raw)
                if match is None:
                    match = raw
        hosts.append(HostCoverage(host, match))
    uncovered = tuple(h.host for h in hosts if h.pattern is None)
    stale = tuple(p for p in pattern_list if p not in used)
    return Coverage(tuple(hosts), uncovered, stale, bool(hosts) and not uncovered)
