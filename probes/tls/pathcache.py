"""Chains and issuers already verified, so what many hosts share is checked once.

Providers present one certificate on thousands of MX hosts (a wildcard or a SAN
list); building and checking its path (signatures, validity, EKU, name
constraints) is most of PKIX's cost and does not depend on which of those hosts
presented it.  Only the name does, and that is checked per host.

What is remembered: for a chain that cryptography's server verifier accepted
(for some host name), the anchor's subject and the time window in which every
certificate of the verified path is valid.  A later lookup at a time outside
that window misses, so expiry is never served from the cache.  Windows and
lookups count time as the verifier does, in whole seconds (``verifier_time``):
it takes a certificate until notAfter + 0.999999 s, and a chain it accepted in
that last second, counted from notAfter + 1 µs as "already expired", would have
been remembered valid until the next validity change of anything reachable.  Refusals are not
remembered: they are rare and need their reason classified anyway.

``IssuerCache``: hosts of one CA customer present *different* leaves under the
same intermediates, and cryptography's verifier re-checks the intermediate's own
signature (and every check above it) for each new leaf.  After a chain verified,
its leaf's issuer is remembered as a stand-in trust anchor, so a later leaf under
the same presented intermediates costs one signature check.  That gives exactly
the verifier's verdict only under conditions ``IssuerCache.put`` checks (see
``_stand_in_reach`` for why each is needed); the caller still falls back to the
full verification for anything the stand-in refuses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import Store

from probes.tls.certs import EXTENSION_ERRORS

__all__ = [
    "IssuerCache",
    "PathCache",
    "RootIndex",
    "VerifiedIssuer",
    "VerifiedPath",
    "chain_digest",
    "search_window",
    "steady_window",
    "surely_matches",
    "verifier_time",
]

#: Trusted roots by subject name (``TrustStore.by_subject``).
RootIndex = Mapping[x509.Name, tuple[x509.Certificate, ...]]

#: A host name label the verifier surely takes: letters, digits, inner hyphens.
_LDH = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class _Windowed(Protocol):
    @property
    def valid_from(self) -> dt.datetime: ...
    @property
    def valid_until(self) -> dt.datetime: ...


V = TypeVar("V", bound=_Windowed)
T = TypeVar("T")

#: The verifier's clock step: validity times are whole seconds (RFC 5280 §4.1.2.5.1-2:
#: UTCTime and GeneralizedTime with seconds, no fractions).
_SECOND = dt.timedelta(seconds=1)


def verifier_time(at: dt.datetime) -> dt.datetime:
    """``at`` as cryptography's verifier sees it: in UTC (naive means UTC), cut to the whole
    second.  The verifier drops the microseconds, so it takes a certificate until notAfter
    + 0.999999 s; anything that predicts its verdict must count time the same way."""
    at = at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
    return at.replace(microsecond=0)


class _WindowCache(Generic[V]):
    """Bounded map of things verified, each true only inside its validity window; a lookup
    at a time outside the window misses, so expiry is never served from the cache."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, at: dt.datetime) -> V | None:
        entry = self._entries.get(key)
        if entry is None or not entry.valid_from <= verifier_time(at) <= entry.valid_until:
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def _remember(self, key: Hashable, entry: V) -> None:
        _bounded_put(self._entries, key, entry, self.size)


@dataclass(frozen=True, slots=True)
class VerifiedPath:
    anchor: str
    valid_from: dt.datetime
    valid_until: dt.datetime


class PathCache(_WindowCache[VerifiedPath]):
    """Bounded map: (trust store, presented chain) -> the path that verified."""

    def __init__(self, size: int = 65_536) -> None:
        super().__init__(size)

    @staticmethod
    def key(store: Hashable, chain: Sequence[bytes]) -> tuple[Hashable, bytes]:
        """``store`` identifies the trust store by value (its roots' fingerprints): an id()
        could be reused by another store once the first is gone."""
        return store, chain_digest(chain)

    def put(self, key: tuple[Hashable, bytes], anchor: str, window: tuple[dt.datetime, dt.datetime]) -> None:
        """``window``: ``search_window`` of the verification (or narrower)."""
        self._remember(key, VerifiedPath(anchor, *window))


@dataclass(frozen=True, slots=True)
class VerifiedIssuer:
    #: The leaf's issuer alone, as the only trust anchor.
    store: Store
    anchor: str
    valid_from: dt.datetime
    valid_until: dt.datetime


def chain_digest(chain: Sequence[bytes]) -> bytes:
    """SHA-256 over a list of DER certificates, length-prefixed so no two lists collide."""
    digest = hashlib.sha256()
    for der in chain:
        digest.update(len(der).to_bytes(4, "big"))
        digest.update(der)
    return digest.digest()


class IssuerCache(_WindowCache[VerifiedIssuer]):
    """Bounded map: (trust store, presented intermediates, leaf's issuer name) -> that issuer."""

    def __init__(self, size: int = 16_384) -> None:
        super().__init__(size)
        #: Keys whose issuer cannot stand in, not checked again: the conditions depend on the
        #: key (the leaf's issuer name picks the one candidate), and a refusal is always safe
        #: (the full verification runs), so a leaf that refused for its own reasons costs at
        #: most later leaves' shortcut.
        self._refused: OrderedDict[Hashable, None] = OrderedDict()

    @staticmethod
    def key(store: Hashable, rest: Sequence[bytes], issuer_name: bytes) -> tuple[Hashable, bytes, bytes]:
        """``rest``: the presented certificates after the leaf, in order, as DER."""
        return store, chain_digest(rest), issuer_name

    def put(
        self,
        key: tuple[Hashable, bytes, bytes],
        path: Sequence[x509.Certificate],
        rest: Sequence[x509.Certificate],
        roots: RootIndex | None,
        anchor: str,
        at: dt.datetime,
    ) -> bool:
        """Remember ``path[1]`` (the issuer of the leaf of a ``path`` cryptography's verifier
        just accepted at ``at``, ``rest`` presented after that leaf, ``roots`` the trusted
        roots by subject, None if unknown) when it can stand in (``_stand_in_reach``); True
        if taken.  A later leaf with the same issuer name, the same ``rest`` and trust store
        is then verified with ``path[1]`` as its only anchor, within the window in which
        every certificate the search can reach keeps its state of validity."""
        if key in self._refused:
            return False
        reachable = _stand_in_reach(path, rest, roots)
        if reachable is None:
            _bounded_put(self._refused, key, None, self.size)
            return False
        valid_from, valid_until = steady_window(reachable, at)
        issuer = VerifiedIssuer(
            store=Store([path[1]]), anchor=anchor, valid_from=valid_from, valid_until=valid_until
        )
        self._remember(key, issuer)
        return True


def _stand_in_reach(
    path: Sequence[x509.Certificate], rest: Sequence[x509.Certificate], roots: RootIndex | None
) -> list[x509.Certificate] | None:
    """Every certificate the verifier's search can reach from ``path[1]``, if ``path[1]`` as
    the only anchor gives any later leaf L under it exactly the full verifier's verdict;
    None if that cannot be proven.

    The verifier searches from L: at each step it tries, in an order of its own, the
    certificates (roots, then ``rest``) whose subject is the working certificate's issuer,
    applies to each its CA checks, signature, validity and path-length limit, and to the
    working certificate the name constraints of every certificate above it; the first branch
    that reaches a root wins.  The stand-in runs exactly L's own checks and the L -> path[1]
    step.  The rest of the full search is then the same for every leaf, and already
    succeeded with this path, provided that:

    * L's step has exactly one candidate, path[1] (distinct DER): a leaf's
      authorityKeyIdentifier orders the candidates of its own step, so with two, a new leaf
      could take another branch;
    * no certificate the search can reach from path[1] carries name constraints: they are
      the only check above L's step that reads L (its names).  Everything else the search
      does above path[1] (candidates, their order, checks, budget) does not depend on the leaf;
    * the time lies between the same validity boundaries of every reachable certificate as
      the first verification's (``get`` misses outside that window; for a search with one
      line this is the intersection of the path's validity);
    * the path has an intermediate: a leaf issued straight by a root gains nothing.
    """
    if roots is None or len(path) < 3:
        return None
    try:
        if not _sole_candidate(path[0], path[1], rest, roots):
            return None
        reachable = _reachable(path[1], rest, roots)
        return None if _constrained(reachable) else reachable
    except (ValueError, TypeError):  # a name or extension that cannot be read: not provable
        return None


def _bounded_put(entries: OrderedDict[Hashable, T], key: Hashable, value: T, size: int) -> None:
    """Insert as newest; drop the oldest beyond ``size``."""
    entries[key] = value
    entries.move_to_end(key)
    if len(entries) > size:
        entries.popitem(last=False)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _candidates(
    name: x509.Name, rest: Sequence[x509.Certificate], roots: RootIndex
) -> tuple[x509.Certificate, ...]:
    """The certificates named ``name`` among the roots and ``rest``: what the verifier tries
    as issuers of a certificate whose issuer is ``name``.  Python's name equality is no finer
    than the verifier's (parsed attributes against encoded names), so none is missed."""
    return (*roots.get(name, ()), *(c for c in rest if c.subject == name))


def _sole_candidate(
    leaf: x509.Certificate, issuer: x509.Certificate, rest: Sequence[x509.Certificate], roots: RootIndex
) -> bool:
    """Whether ``issuer`` is the only certificate (by distinct DER) that could issue ``leaf``."""
    return {_der(c) for c in _candidates(leaf.issuer, rest, roots)} == {_der(issuer)}


def _reachable(
    start: x509.Certificate, rest: Sequence[x509.Certificate], roots: RootIndex
) -> list[x509.Certificate]:
    """Every certificate the verifier's search can visit from ``start`` (included): issuer-name
    links through ``rest`` and the roots, stopping at roots (the search ends there)."""
    found: dict[bytes, x509.Certificate] = {_der(start): start}
    frontier = [start]
    while frontier:
        cert = frontier.pop()
        if any(_der(r) == _der(cert) for r in roots.get(cert.subject, ())):
            continue
        for candidate in _candidates(cert.issuer, rest, roots):
            der = _der(candidate)
            if der not in found:
                found[der] = candidate
                frontier.append(candidate)
    return list(found.values())


def steady_window(certs: Sequence[x509.Certificate], at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The longest span around ``at`` in which no certificate of ``certs`` becomes valid or
    stops being valid (RFC 5280 §4.1.2.5: valid from notBefore to notAfter, both included),
    in whole seconds as the verifier counts them (``verifier_time``): a certificate is still
    valid throughout the second of its notAfter."""
    at = verifier_time(at)
    lower = [c.not_valid_before_utc for c in certs if c.not_valid_before_utc <= at]
    lower += [c.not_valid_after_utc + _SECOND for c in certs if c.not_valid_after_utc < at]
    upper = [c.not_valid_before_utc - _SECOND for c in certs if c.not_valid_before_utc > at]
    upper += [c.not_valid_after_utc for c in certs if c.not_valid_after_utc >= at]
    never = dt.datetime.min.replace(tzinfo=dt.UTC), dt.datetime.max.replace(tzinfo=dt.UTC)
    return max(lower, default=never[0]), min(upper, default=never[1])


def search_window(
    leaf: x509.Certificate, rest: Sequence[x509.Certificate], roots: RootIndex | None, at: dt.datetime
) -> tuple[dt.datetime, dt.datetime] | None:
    """Around ``at``, the span in which the verifier's search from ``leaf`` meets every
    certificate in the same state of validity, so it ends with the same path and anchor; None
    when that cannot be known (roots not indexed, a name that cannot be read)."""
    if roots is None:
        return None
    try:
        return steady_window(_reachable(leaf, rest, roots), at)
    except (ValueError, TypeError):
        return None


def _constrained(certs: Sequence[x509.Certificate]) -> bool:
    """Whether any of ``certs`` has (or may have: unreadable extensions) name constraints."""
    for cert in certs:
        try:
            cert.extensions.get_extension_for_class(x509.NameConstraints)
        except x509.ExtensionNotFound:
            continue
        except EXTENSION_ERRORS:  # unreadable: not provably unconstrained
            return True
        return True
    return False


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
