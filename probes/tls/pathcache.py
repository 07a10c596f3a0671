"""Chains already verified, so a chain many hosts present is path-checked once.

Providers present one certificate on thousands of MX hosts (a wildcard or a SAN
list); building and checking its path (signatures, validity, EKU, name
constraints) is most of PKIX's cost and does not depend on which of those hosts
presented it.  Only the name does, and that is checked per host.

What is remembered: for a chain that cryptography's server verifier accepted
(for some host name), the anchor's subject and the time window in which every
certificate of the verified path is valid.  A later lookup at a time outside
that window misses, so expiry is never served from the cache.  Refusals are not
remembered: they are rare and need their reason classified anyway.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from cryptography import x509

__all__ = ["PathCache", "VerifiedPath", "surely_matches"]

#: A host name label the verifier surely takes: letters, digits, inner hyphens.
_LDH = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class VerifiedPath:
    anchor: str
    valid_from: dt.datetime
    valid_until: dt.datetime


class PathCache:
    """Bounded map: (trust store, presented chain) -> the path that verified."""

    def __init__(self, size: int = 65_536) -> None:
        self.size = size
        self._paths: OrderedDict[tuple[Hashable, bytes], VerifiedPath] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(store: Hashable, chain: Sequence[bytes]) -> tuple[Hashable, bytes]:
        """``store`` identifies the trust store by value (its roots' fingerprints): an id()
        could be reused by another store once the first is gone."""
        digest = hashlib.sha256()
        for der in chain:
            digest.update(len(der).to_bytes(4, "big"))
            digest.update(der)
        return store, digest.digest()

    def get(self, key: tuple[Hashable, bytes], at: dt.datetime) -> VerifiedPath | None:
        path = self._paths.get(key)
        if path is None or not path.valid_from <= at <= path.valid_until:
            self.misses += 1
            return None
        self.hits += 1
        return path

    def put(self, key: tuple[Hashable, bytes], path: Sequence[x509.Certificate], anchor: str) -> None:
        if not path:
            return
        valid_from = max(c.not_valid_before_utc for c in path)
        valid_until = min(c.not_valid_after_utc for c in path)
        self._paths[key] = VerifiedPath(anchor, valid_from, valid_until)
        self._paths.move_to_end(key)
        if len(self._paths) > self.size:
            self._paths.popitem(last=False)

    def clear(self) -> None:
        self._paths.clear()
        self.hits = self.misses = 0


def surely_matches(name: str, san_dns: Sequence[str]) -> bool:
    """Whether cryptography's server verifier certainly accepts ``name`` (normalised) for a
    leaf with these dNSName SANs: an exact match, or a whole-left-label wildcard over at
    least two labels for a label that is not an A-label.  Anything else (no match, IDN, odd
    patterns) goes to the verifier, so a cached path only ever repeats a verdict it would give."""
    if not all(_LDH.fullmatch(label) for label in name.split(".")):
        return False
    head, _, tail = name.partition(".")
    for pattern in san_dns:
        pattern = pattern.lower()
        if pattern == name:
            return True
        wild_tail = pattern[2:] if pattern.startswith("*.") else ""
        plain_label = bool(head) and not head.startswith("xn--")
        if wild_tail and wild_tail == tail and "*" not in tail and "." in tail and plain_label:
            return True
    return False
