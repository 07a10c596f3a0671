"""PKIX verification of a presented chain for an MX host name, with a reason.

Theory of operation
-------------------
cryptography's ``x509.verification`` (the RFC 5280 / CA/B Forum profile, the
same Rust verifier pyca ships) is the sole authority on *whether* a chain is
valid: the server verifier for ``DNSName(host)`` at time ``at`` with the trust
store's roots, the presented certificates after the leaf as untrusted
intermediates.  Tests hold its verdict equal to OpenSSL's on every test-world
certificate kind.

When it says no, ``classify`` names *why* with checks of its own, in this fixed
precedence (the first that applies wins):

1. ``self-signed``: the leaf is its own issuer (name and signature) and is not
   itself a trust anchor.
2. ``expired`` / ``not-yet-valid``: ``at`` lies outside the leaf's validity.
3. ``hostname-mismatch``: no subjectAltName of the leaf matches ``host``
   (RFC 6125 §6.4: case-insensitive, IDNA names as A-labels, a wildcard only
   as the entire left-most label and matching exactly one label; the CN
   counts only when the leaf has no dNSName SAN, see below).
4. ``chain-too-long``: the server presented more than ``MAX_CHAIN_CERTS``
   certificates and the first ones do not verify.  Only those are read (a
   bound on hostile input), so whatever the rest could change (the path,
   hence everything below) is not judged; the leaf's own faults above are
   judged all the same.
5. walking issuers up from the leaf through the presented certificates:
   the walk reaches a trust anchor → the chain is complete and something else
   is wrong (an expired intermediate, a bad extension…) → ``other``;
   it reaches one only through the ``intermediates`` pool (known
   intermediates, like Firefox's preload list) → ``incomplete-chain``;
   it reaches none → ``unknown-issuer``.
6. anything unparsable (empty chain, garbage DER, an invalid host) → ``other``.

The verifier's own message rides along in ``detail`` (bounded).

CN fallback: cryptography's server verifier insists on a subjectAltName, but
OpenSSL (``X509_check_host``, used by Python's ssl module, Postfix and Exim)
falls back to the subject CN when the leaf has no dNSName SAN (an iPAddress SAN
does not stop it), as RFC 6125 §6.4.4 permits.  To keep the verdict equal to
OpenSSL's, such a leaf whose CN matches the host is verified by cryptography's
path builder with the name check replaced by ours (a client verifier whose EKU
rules demand serverAuth), and, as OpenSSL does, every CN that looks like a host
name must then lie within the dNSName name constraints of every certificate
above the leaf (cryptography reads constraints against SANs only); outside →
``other``.  ``detail`` says "CN fallback" when it verifies.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    VerificationError,
)

from engine.peertext import bound_line
from probes.tls.certs import EXTENSION_ERRORS, MAX_CHAIN_CERTS, CertParseError, is_issued_by, load_der
from probes.tls.names import cn_dns_id, dns_name_permitted, is_address_literal, match_hostname, normalise_host
from probes.tls.pathcache import (
    IssuerCache,
    PathCache,
    VerifiedIssuer,
    search_window,
    surely_matches,
    verifier_time,
)
from probes.tls.truststore import TrustStore

__all__ = [
    "IntermediatePool",
    "PkixReason",
    "PkixResult",
    "Verifier",
    "classify",
    "match_hostname",
    "normalise_host",
    "verify_chain",
]

_DETAIL_LIMIT = 300
#: OpenSSL's bound on (name, constraint) pairs checked per CA (NAME_CHECK_MAX, v3_ncons.c):
#: beyond it the check is refused, not run (quadratic work from a hostile chain).
_NAME_CHECK_MAX = 1 << 20


class PkixReason(StrEnum):
    #: The chain verifies to a trusted root for the host at the given time.
    OK = "ok"
    #: The leaf's notAfter is before the verification time.
    EXPIRED = "expired"
    #: The leaf's notBefore is after the verification time.
    NOT_YET_VALID = "not-yet-valid"
    #: The leaf signed itself and is not a trust anchor.
    SELF_SIGNED = "self-signed"
    #: No path from the leaf to a trusted root, even with known intermediates.
    UNKNOWN_ISSUER = "unknown-issuer"
    #: No subjectAltName of the leaf matches the host (RFC 6125).
    HOSTNAME_MISMATCH = "hostname-mismatch"
    #: The server left out an intermediate that a known-intermediates pool supplies.
    INCOMPLETE_CHAIN = "incomplete-chain"
    #: More certificates presented than are read, and the ones read do not verify.
    CHAIN_TOO_LONG = "chain-too-long"
    #: Anything else: a bad intermediate, a policy violation, unparsable input.
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class PkixResult:
    """The PKIX verdict on one presented chain for one host name.

    Fields:
      valid: cryptography's verifier accepted the chain for the host at the time.
      reason: ok / expired / not-yet-valid / self-signed / unknown-issuer / hostname-mismatch /
        incomplete-chain / chain-too-long / other (see verify.py for the precedence).
      detail: a short explanation, with the verifier's message when it refused (bounded).
      anchor: the RFC 4514 subject of the trusted root the chain led to; "" unless valid.
    """

    valid: bool
    reason: PkixReason
    detail: str
    anchor: str


class IntermediatePool:
    """Known intermediate CA certificates, parsed once and indexed by subject.

    Used only to tell ``incomplete-chain`` from ``unknown-issuer``; never to
    make a chain valid.
    """

    __slots__ = ("_by_subject",)

    def __init__(self, certs: Iterable[x509.Certificate] = ()) -> None:
        self._by_subject: dict[bytes, list[x509.Certificate]] = {}
        for cert in certs:
            self._by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)

    @classmethod
    def from_der(cls, ders: Iterable[bytes]) -> IntermediatePool:
        """A pool from DER certificates; unparsable ones are skipped."""
        certs = []
        for der in ders:
            try:
                certs.append(load_der(der))
            except CertParseError:
                continue
        return cls(certs)

    def issuers_of(self, cert: x509.Certificate) -> list[x509.Certificate]:
        candidates = self._by_subject.get(cert.issuer.public_bytes(), [])
        return [c for c in candidates if is_issued_by(cert, c)]

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_subject.values())


def _require_server_auth(_policy: Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
    # CA/B BR §7.1.2: absent EKU on a CA means unrestricted; present, it must allow serverAuth.
    if eku is not None and not {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    } & set(eku):
        raise ValueError("extendedKeyUsage does not allow serverAuth")


def _subject_cns(leaf: x509.Certificate) -> list[str]:
    return [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _cn_fallback_applies(leaf: x509.Certificate, host: str) -> bool:
    """No dNSName SAN, and a subject CN that matches ``host`` (RFC 6125 §6.4.4); OpenSSL
    looks at the subject whenever no SAN of the host's own type (dNSName) is present."""
    if _leaf_names(leaf)[0]:
        return False
    return match_hostname(host, _subject_cns(leaf))


def _name_count(leaf: x509.Certificate) -> int:
    """Subject attributes plus subjectAltName entries: the names OpenSSL holds to constraints."""
    try:
        sans = len(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except (x509.ExtensionNotFound, *EXTENSION_ERRORS):
        sans = 0
    return len(leaf.subject) + sans


def _cn_outside_constraints(leaf: x509.Certificate, above: Sequence[x509.Certificate]) -> str:
    """Why the leaf's CNs break the dNSName constraints of a certificate ``above`` it (the
    rest of its path, anchor included), or "" if they do not; OpenSSL's CN rule, see names.py.
    Like OpenSSL, it refuses more than 2**20 (name, constraint) pairs rather than check them."""
    names = _name_count(leaf)
    for cert in above:
        try:
            constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            continue
        except EXTENSION_ERRORS as exc:
            return f"unreadable name constraints on {cert.subject.rfc4514_string()}: {exc}"
        permitted, excluded = constraints.permitted_subtrees or (), constraints.excluded_subtrees or ()
        if names and len(permitted) + len(excluded) > _NAME_CHECK_MAX // names:
            return (
                f"{names} names against {len(permitted) + len(excluded)} name constraints: too many to check"
            )
        for cn in _subject_cns(leaf):
            try:
                dns_id = cn_dns_id(cn)
            except ValueError as exc:
                return f"subject CN refused for name constraints: {exc}"
            permits = [n.value for n in permitted if isinstance(n, DNSName)]
            excludes = [n.value for n in excluded if isinstance(n, DNSName)]
            if dns_id is not None and not dns_name_permitted(dns_id, permits, excludes):
                return f"CN {dns_id!r} outside the name constraints of {cert.subject.rfc4514_string()}"
    return ""


def _verify_path_only(
    store: TrustStore, at: dt.datetime, leaf: x509.Certificate, rest: list[x509.Certificate]
) -> list[x509.Certificate]:
    """cryptography's path building and checks without its SAN name check."""
    ee = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _require_server_auth)
    )
    ca = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _require_server_auth
    )
    builder = PolicyBuilder().store(store.store).time(at).extension_policies(ca_policy=ca, ee_policy=ee)
    return list(builder.build_client_verifier().verify(leaf, rest).chain)


def _leaf_names(leaf: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    except EXTENSION_ERRORS:
        return [], []
    return san.get_values_for_type(x509.DNSName), [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def _walk_to_anchor(
    leaf: x509.Certificate,
    presented: Sequence[x509.Certificate],
    store: TrustStore,
    pool: IntermediatePool | None,
) -> tuple[bool, bool]:
    """(reached a trust anchor, needed the pool to get there), walking issuer links up."""
    current, used_pool = leaf, False
    seen = {current.public_bytes(serialization.Encoding.DER)}
    for _ in range(MAX_CHAIN_CERTS + 8):  # bounded: every step adds a new certificate
        if store.contains(current.public_bytes(serialization.Encoding.DER)) or store.issuers_of(current):
            return True, used_pool
        step = next(
            (
                c
                for c in presented
                if c.public_bytes(serialization.Encoding.DER) not in seen and is_issued_by(current, c)
            ),
            None,
        )
        if step is None and pool is not None:
            step = next(
                (
                    c
                    for c in pool.issuers_of(current)
                    if c.public_bytes(serialization.Encoding.DER) not in seen
                ),
                None,
            )
            used_pool = used_pool or step is not None
        if step is None:
            return False, used_pool
        seen.add(step.public_bytes(serialization.Encoding.DER))
        current = step
    return False, used_pool


def classify(
    certs: Sequence[x509.Certificate],
    host: str,
    *,
    store: TrustStore,
    at: dt.datetime,
    pool: IntermediatePool | None = None,
    verifier_message: str = "",
) -> tuple[PkixReason, str]:
    """Why a chain the verifier refused is not valid, by the precedence in the module docstring."""
    leaf, at = certs[0], verifier_time(at)
    said = f"; verifier: {verifier_message}" if verifier_message else ""
    leaf_der = leaf.public_bytes(serialization.Encoding.DER)
    if leaf.subject == leaf.issuer and is_issued_by(leaf, leaf) and not store.contains(leaf_der):
        return PkixReason.SELF_SIGNED, f"leaf is self-signed: {leaf.subject.rfc4514_string()}{said}"
    if at < leaf.not_valid_before_utc:
        return PkixReason.NOT_YET_VALID, f"leaf valid from {leaf.not_valid_before_utc.isoformat()}{said}"
    if at > leaf.not_valid_after_utc:
        return PkixReason.EXPIRED, f"leaf expired {leaf.not_valid_after_utc.isoformat()}{said}"
    san_dns, san_ip = _leaf_names(leaf)
    if not match_hostname(host, san_dns, san_ip) and not _cn_fallback_applies(leaf, host):
        shown = ", ".join(san_dns[:5] + san_ip[:5]) or "no subjectAltName"
        return PkixReason.HOSTNAME_MISMATCH, f"{host} not in [{shown}]{said}"
    anchored, used_pool = _walk_to_anchor(leaf, certs[1:], store, pool)
    if anchored and used_pool:
        return PkixReason.INCOMPLETE_CHAIN, f"server omitted an intermediate the pool knows{said}"
    if anchored:
        return PkixReason.OTHER, f"chain reaches a trusted root but is refused{said}"
    return PkixReason.UNKNOWN_ISSUER, f"no path to a trusted root from {leaf.issuer.rfc4514_string()}{said}"


_VERIFIED = "chain verifies to a trusted root"

#: Reasons that are facts of the leaf alone: no other certificate presented could change them.
_LEAF_REASONS = frozenset(
    {PkixReason.SELF_SIGNED, PkixReason.EXPIRED, PkixReason.NOT_YET_VALID, PkixReason.HOSTNAME_MISMATCH}
)


@functools.lru_cache(maxsize=1024)
def _subject_text(anchor: x509.Certificate) -> str:
    """A root's subject as text; a scan meets a few hundred roots, each thousands of times."""
    return anchor.subject.rfc4514_string()


@dataclass(frozen=True, slots=True)
class _Chain:
    """One verification's input, parsed: the certificates read (the first ``MAX_CHAIN_CERTS``
    presented), the host name normalised and as the verifier's subject, the verifier's time."""

    presented: int
    considered: Sequence[bytes]
    certs: list[x509.Certificate]
    name: str
    subject: DNSName | IPAddress
    at: dt.datetime


def _parse(chain: Sequence[bytes], host: str, at: dt.datetime) -> _Chain | PkixResult:
    """The chain and host ready to verify, or the verdict on input that cannot be verified."""
    if not chain:
        return PkixResult(False, PkixReason.OTHER, "no certificate", "")
    considered = chain[:MAX_CHAIN_CERTS]
    try:
        certs = [load_der(der) for der in considered]
    except CertParseError as exc:
        return PkixResult(
            False, PkixReason.OTHER, bound_line(f"unparsable certificate: {exc}", _DETAIL_LIMIT), ""
        )
    name = normalise_host(host)
    if name is None:
        return PkixResult(
            False, PkixReason.OTHER, bound_line(f"not a host name: {host!r}", _DETAIL_LIMIT), ""
        )
    subject: DNSName | IPAddress = DNSName(name)
    if is_address_literal(name):
        try:
            subject = IPAddress(ipaddress.ip_address(name))
        except ValueError:
            pass
    # One clock for the verifier, the caches and the classifier.
    return _Chain(len(chain), considered, certs, name, subject, verifier_time(at))


def _issuer_key(store: TrustStore, job: _Chain) -> tuple[Hashable, bytes, bytes] | None:
    """The ``IssuerCache`` key of the chain's leaf; None when the leaf's issuer name does not
    encode again (a parsed name can fail to), so no stand-in anchor can be found for it."""
    try:
        issuer_name = job.certs[0].issuer.public_bytes()
    except ValueError:
        return None
    return IssuerCache.key(store.fingerprints, job.considered[1:], issuer_name)


class Verifier:
    """PKIX verification for one scan: the trust store, the known intermediates, and what
    already verified (``pathcache.py``), shared by every probe that verifies a chain.

    Made once per scan and passed to the SMTP prober and the MTA-STS policy fetcher; each
    scan (and each test) has its own, so nothing verified outlives the object.  The caches
    only ever repeat a verdict the verifier would give (see ``pathcache.py``), so whether a
    verification is served from them changes its cost, never its result.
    """

    __slots__ = ("full_verifications", "intermediates", "issuers", "paths", "store")

    def __init__(
        self,
        store: TrustStore,
        intermediates: Sequence[bytes] | IntermediatePool = (),
        *,
        paths: PathCache | None = None,
        issuers: IssuerCache | None = None,
    ) -> None:
        """``intermediates``: known intermediates (DER, or a pool parsed once); they only decide
        between ``incomplete-chain`` and ``unknown-issuer``.  ``paths`` / ``issuers``: caches
        to share (keyed by trust store, so Verifiers over different stores may share them)."""
        self.store = store
        if not isinstance(intermediates, IntermediatePool):
            intermediates = IntermediatePool.from_der(intermediates)
        self.intermediates = intermediates
        self.paths = PathCache() if paths is None else paths
        self.issuers = IssuerCache() if issuers is None else issuers
        #: Chains neither cache could serve, verified in full (what the caches did not save).
        self.full_verifications = 0

    def verify(self, chain: Sequence[bytes], host: str, at: dt.datetime) -> PkixResult:
        """Verify a presented chain (DER, leaf first) for ``host`` at ``at``; only the first
        ``MAX_CHAIN_CERTS`` certificates are considered."""
        job = _parse(chain, host, at)
        if isinstance(job, PkixResult):
            return job
        key = PathCache.key(self.store.fingerprints, job.considered)
        known = self.paths.get(key, job.at)
        leaf = job.certs[0]
        if (
            known is not None
            and isinstance(job.subject, DNSName)
            and surely_matches(job.name, _leaf_names(leaf)[0])
        ):
            return PkixResult(True, PkixReason.OK, _VERIFIED, known.anchor)
        issuer_key = _issuer_key(self.store, job)
        if issuer_key is not None and (issuer := self._known_issuer_accepts(issuer_key, job)):
            # The search from the leaf meets the leaf and what the issuer's window covers.
            since = max(issuer.valid_from, leaf.not_valid_before_utc)
            self.paths.put(key, issuer.anchor, (since, min(issuer.valid_until, leaf.not_valid_after_utc)))
            return PkixResult(True, PkixReason.OK, _VERIFIED, issuer.anchor)
        return self._verify_full(job, key, issuer_key)

    def _known_issuer_accepts(self, key: tuple[Hashable, bytes, bytes], job: _Chain) -> VerifiedIssuer | None:
        """The remembered issuer of this leaf, if the verifier accepts the leaf with that issuer
        as its anchor (see ``pathcache._stand_in_reach`` for why that equals the full verification)."""
        issuer = self.issuers.get(key, job.at)
        if issuer is None or self.store.contains(job.considered[0]):  # a trusted leaf ends its own path
            return None
        try:
            PolicyBuilder().store(issuer.store).time(job.at).build_server_verifier(job.subject).verify(
                job.certs[0], []
            )
        except (VerificationError, ValueError, *EXTENSION_ERRORS):
            return None  # the full verification decides, and says why
        return issuer

    def _verify_full(
        self, job: _Chain, key: tuple[Hashable, bytes], issuer_key: tuple[Hashable, bytes, bytes] | None
    ) -> PkixResult:
        """cryptography's server verifier over the whole chain; remembered when it accepts."""
        self.full_verifications += 1
        try:
            verifier = PolicyBuilder().store(self.store.store).time(job.at).build_server_verifier(job.subject)
        except ValueError as exc:  # "*.example.com" or "a_b.example.com" from a hostile MX record
            detail = f"host name the verifier refuses: {job.name!r} ({exc})"
            return PkixResult(False, PkixReason.OTHER, bound_line(detail, _DETAIL_LIMIT), "")
        leaf, rest = job.certs[0], job.certs[1:]
        try:
            path = verifier.verify(leaf, rest)
        except VerificationError as exc:
            return self._refused(job, str(exc))
        except EXTENSION_ERRORS as exc:  # a malformed extension met while verifying
            return self._refused(job, f"malformed certificate: {exc}")
        anchor = _subject_text(path[-1]) if path else ""
        if (searched := search_window(leaf, rest, self.store.by_subject, job.at)) is not None:
            self.paths.put(key, anchor, searched)
        if issuer_key is not None:
            self.issuers.put(issuer_key, path, rest, self.store.by_subject, anchor, job.at)
        return PkixResult(True, PkixReason.OK, _VERIFIED, anchor)

    def _refused(self, job: _Chain, message: str) -> PkixResult:
        """The verdict on a chain the server verifier refused: valid by the CN fallback, or
        why not (``classify``, then ``chain-too-long`` over what was left unread)."""
        leaf, rest = job.certs[0], job.certs[1:]
        try:
            if _cn_fallback_applies(leaf, job.name):
                path = _verify_path_only(self.store, job.at, leaf, rest)
                outside = _cn_outside_constraints(leaf, path[1:])
                if not outside:
                    anchor = _subject_text(path[-1]) if path else ""
                    detail = "chain verifies to a trusted root; name matched by CN fallback (no dNSName)"
                    return PkixResult(True, PkixReason.OK, detail, anchor)
                message = f"CN fallback: {outside}"
        except (VerificationError, *EXTENSION_ERRORS):
            pass  # classified below like any refused chain
        try:
            reason, detail = classify(
                job.certs,
                job.name,
                store=self.store,
                at=job.at,
                pool=self.intermediates,
                verifier_message=message,
            )
        except EXTENSION_ERRORS as exc:  # an extension the classifier could not read
            reason, detail = PkixReason.OTHER, f"{message}; classifier: {exc}"
        if job.presented > MAX_CHAIN_CERTS:
            detail = f"only the first {MAX_CHAIN_CERTS} of {job.presented} certificates considered; {detail}"
            if reason not in _LEAF_REASONS:  # the certificates left unread could give another path
                reason = PkixReason.CHAIN_TOO_LONG
        return PkixResult(False, reason, bound_line(detail, _DETAIL_LIMIT), "")


def verify_chain(
    chain: Sequence[bytes],
    host: str,
    *,
    store: TrustStore,
    at: dt.datetime,
    intermediates: Sequence[bytes] | IntermediatePool = (),
) -> PkixResult:
    """One verification with nothing remembered before or after it: a new ``Verifier``'s
    verdict (what a scan's ``Verifier`` gives too, at a different cost)."""
    return Verifier(store, intermediates).verify(chain, host, at)
