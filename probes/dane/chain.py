"""Matching usable TLSA records against a presented chain (RFC 6698, RFC 7671, RFC 7672).

Theory of operation
-------------------
DANE-EE(3): the leaf's full DER (selector 0) or SPKI (selector 1), exact (0),
SHA-256 (1) or SHA-512 (2), equals the data.  Nothing else is checked: not
the name, not the dates, not the issuer (RFC 7672 §3.1.1).

DANE-TA(2): a trust anchor authenticates the chain.  The anchor is one of:

1. *presented*: a certificate the server sent, other than the leaf, that the
   record matches (any selector and matching type);
2. *a certificate from DNS*: a "2 0 0" record's data is the anchor's
   certificate, so the server need not send it (RFC 7671 §5.2.2);
3. *a key from DNS*: a "2 1 0" record's data is the anchor's
   SubjectPublicKeyInfo: a bare key, with no name of its own.

A digest (matching type 1 or 2) can only name an anchor the server sends.  A
server that sends a cross-signed copy of the anchor (same subject and key,
another issuer) instead of the anchor itself is authenticated by (2): the chain
is verified up to a certificate the anchor issued and the copy is not needed;
and by (1) for a selector-1 digest, which the copy's key matches.

Then the leaf must chain to the anchor through presented certificates (issuer
name and signature; for a bare key the signature alone, as OpenSSL's DANE
does), every certificate below the anchor must be within its validity at
``at`` (the anchor's own dates are not checked, as for any trust anchor), and
the leaf's name must match the MX host name, the reference identifier of
RFC 7672 §3.2.3 (subjectAltName dNSName with RFC 6125 wildcards; the CN only
when there is no dNSName, as OpenSSL's DANE does).

The path is built as OpenSSL 3.0 builds it (``find_issuer`` in
crypto/x509/x509_vfy.c), which is what Postfix's DANE delivers by: of the
presented certificates that issued the current one, the first within its
validity, else the one whose validity ends last; and no backtracking.  So a
server that sends an expired copy of its intermediate before the renewed one
is authenticated through the renewed copy, and one whose first valid issuer
leads nowhere is not, though another presented issuer would have led to the
anchor (OpenSSL fails it: "unable to get local issuer certificate").  Every
step adds a certificate not yet on the path, so a path has at most
``MAX_CHAIN_CERTS`` steps, and each (certificate, issuer) signature is checked
once per chain however many records and anchors ask.

Which match is reported (any match makes the chain valid): the one OpenSSL
reports (``SSL_get0_dane_authority``).  DANE-EE at depth 0 first; then the
certificate anchor (1 or 2) nearest the leaf, its depth being its position in
the chain built from the leaf (a certificate from DNS sits just above the last
presented certificate of the path); a bare key only when no certificate
anchored the chain, at the depth of the certificate it signed.  Ties go to
the earlier record.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

from probes.dane.record import TlsaRecord
from probes.tls.certs import EXTENSION_ERRORS, MAX_CHAIN_CERTS, CertParseError, is_issued_by, load_der
from probes.tls.verify import match_hostname

__all__ = ["ChainMatch", "match_chain"]

#: What a signature check may raise for a peer's certificate.  Not TypeError: the key and
#: parameter types are matched before ``verify`` is called, so a TypeError is our mistake.
_SIGNATURE_ERRORS = (InvalidSignature, ValueError, UnsupportedAlgorithm)
#: Ranks of a match, best first: DANE-EE, a certificate anchor, a bare key from DNS.
_EE, _CERT, _KEY = 0, 1, 2


@dataclass(frozen=True, slots=True)
class ChainMatch:
    """The outcome of matching usable records against one chain.

    Fields:
      record: the record that authenticated the chain, or None.
      depth: where it matched, as OpenSSL counts (see the module docstring); None without a match.
      misses: why each record did not authenticate the chain (empty with a match).
    """

    record: TlsaRecord | None
    depth: int | None
    misses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Chain:
    """One presented chain as every record is matched against it.

    Fields:
      certs: the parsed certificates, leaf first (None where one does not parse).
      ders: their DER, in the same order.
      issued: ``is_issued_by`` remembered for this chain: one signature check per pair of
        certificates, however many records and anchors ask (bounded by MAX_CHAIN_CERTS squared
        plus the anchors from DNS).
      at: the time validity is judged at (UTC).
    """

    certs: Sequence[x509.Certificate | None]
    ders: Sequence[bytes]
    issued: Callable[[x509.Certificate, x509.Certificate], bool]
    at: dt.datetime


def match_chain(
    records: Sequence[TlsaRecord], chain: Sequence[bytes], *, host: str, at: dt.datetime
) -> ChainMatch:
    """Match usable records (usage 2 or 3, see ``record.unusable_reason``) against a
    non-empty chain, leaf first, by the rules in the module docstring."""
    at = at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
    ders = list(chain[:MAX_CHAIN_CERTS])
    certs = [_load(der) for der in ders]
    presented = _Chain(certs, ders, functools.cache(is_issued_by), at)
    best: tuple[int, int, int] | None = None  # (rank, depth, record index)
    misses: list[str] = []
    for index, record in enumerate(records):
        if record.usage == 3:
            if _matches(record, certs[0], ders[0]):
                return ChainMatch(record, 0, ())
            misses.append(f"{_head(record)}: leaf does not match")
            continue
        found = _dane_ta(record, presented, host)
        if isinstance(found, str):
            misses.append(f"{_head(record)}: {found}")
        elif best is None or (*found, index) < best:
            best = (*found, index)
    if best is None:
        return ChainMatch(None, None, tuple(misses))
    return ChainMatch(records[best[2]], best[1], ())


def _head(record: TlsaRecord) -> str:
    return f"{record.usage} {record.selector} {record.mtype}"


def _load(der: bytes) -> x509.Certificate | None:
    try:
        return load_der(der)
    except CertParseError:
        return None


def _spki(cert: x509.Certificate) -> bytes | None:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):  # an unreadable key cannot match selector 1
        return None
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _matches(record: TlsaRecord, cert: x509.Certificate | None, der: bytes) -> bool:
    selected = der if record.selector == 0 else None if cert is None else _spki(cert)
    if selected is None:
        return False
    if record.mtype == 1:
        selected = hashlib.sha256(selected).digest()
    elif record.mtype == 2:
        selected = hashlib.sha512(selected).digest()
    return selected.hex() == record.data


def _signed_by_key(key: PublicKeyTypes, cert: x509.Certificate) -> bool:
    """Whether ``key`` made ``cert``'s signature (a bare key has no name to compare)."""
    signature, tbs = cert.signature, cert.tbs_certificate_bytes
    try:
        params = cert.signature_algorithm_parameters
        digest = cert.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey) and isinstance(params, padding.PKCS1v15 | padding.PSS):
            if digest is None:
                return False
            key.verify(signature, tbs, params, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
            key.verify(signature, tbs, params)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, tbs)
        elif isinstance(key, dsa.DSAPublicKey) and digest is not None:
            key.verify(signature, tbs, digest)
        else:
            return False
    except _SIGNATURE_ERRORS:
        return False
    return True


def _path_to(
    leaf: x509.Certificate,
    signs: Callable[[x509.Certificate], bool],
    pool: Sequence[x509.Certificate],
    chain: _Chain,
) -> list[x509.Certificate] | None:
    """The certificates from the leaf up to the first one ``signs`` accepts as issued by the
    anchor (inclusive), each next one the issuer OpenSSL picks from ``pool`` (see the module
    docstring); None when the picked issuers end before the anchor."""
    path = [leaf]
    while not signs(path[-1]):
        step = _issuer(path[-1], [c for c in pool if c not in path], chain)
        if step is None:
            return None
        path.append(step)  # never on the path before: the path ends within len(pool) steps
    return path


def _issuer(
    cert: x509.Certificate, candidates: Sequence[x509.Certificate], chain: _Chain
) -> x509.Certificate | None:
    """OpenSSL 3.0's ``find_issuer``: the first candidate that issued ``cert`` and is within its
    validity at ``chain.at``, else the one of them whose validity ends last (the first of equals)."""
    fallback: x509.Certificate | None = None
    for candidate in candidates:
        if not chain.issued(cert, candidate):
            continue
        if _valid_at(candidate, chain.at):
            return candidate
        if fallback is None or candidate.not_valid_after_utc > fallback.not_valid_after_utc:
            fallback = candidate
    return fallback


def _valid_at(cert: x509.Certificate, at: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


def _leaf_names(leaf: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns, ips = (
            san.get_values_for_type(x509.DNSName),
            [str(i) for i in san.get_values_for_type(x509.IPAddress)],
        )
    except x509.ExtensionNotFound:
        dns, ips = [], []
    if not dns:
        dns = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return dns, ips


def _anchors(
    record: TlsaRecord, chain: _Chain
) -> list[tuple[int, Callable[[x509.Certificate], bool], x509.Certificate | None]]:
    """(rank, "issued by the anchor" test, the anchor certificate when presented) per candidate."""
    found: list[tuple[int, Callable[[x509.Certificate], bool], x509.Certificate | None]] = []
    for cert, der in zip(chain.certs[1:], chain.ders[1:], strict=True):
        if cert is not None and _matches(record, cert, der):
            found.append((_CERT, functools.partial(_issued_by, chain, cert), cert))
    if record.mtype == 0:
        data = bytes.fromhex(record.data)
        if record.selector == 0 and (dns_cert := _load(data)) is not None:
            found.append((_CERT, functools.partial(_issued_by, chain, dns_cert), None))
        elif record.selector == 1:
            try:
                key = serialization.load_der_public_key(data)
            except (ValueError, UnsupportedAlgorithm):
                return found
            found.append((_KEY, functools.partial(_signed_by_key, key), None))
    return found


def _issued_by(chain: _Chain, anchor: x509.Certificate, cert: x509.Certificate) -> bool:
    return chain.issued(cert, anchor)


def _dane_ta(record: TlsaRecord, chain: _Chain, host: str) -> tuple[int, int] | str:
    """(rank, depth) of the best anchor the record gives the chain, else why there is none."""
    leaf = chain.certs[0]
    if leaf is None:
        return "leaf unparsable"
    anchors = _anchors(record, chain)
    if not anchors:
        return "no presented CA certificate matches and the record holds no full certificate or key"
    pool = [c for c in chain.certs[1:] if c is not None]
    best: tuple[int, int] | None = None
    why = "leaf does not chain to the trust anchor"
    for rank, signs, presented in anchors:
        path = _path_to(leaf, signs, [c for c in pool if c is not presented], chain)
        if path is None:
            continue
        if not all(_valid_at(c, chain.at) for c in path):
            why = "a certificate below the trust anchor is outside its validity"
            continue
        try:
            dns, ips = _leaf_names(leaf)
        except EXTENSION_ERRORS as exc:  # parsed on first read; TypeError too (see EXTENSION_ERRORS)
            return f"malformed certificate: {exc}"
        if not match_hostname(host, dns, ips):
            return f"leaf name does not match {host}"
        # A certificate anchor sits above the path; a bare key's depth is the certificate it signed.
        found = (rank, len(path) if rank == _CERT else len(path) - 1)
        best = found if best is None or found < best else best
    return why if best is None else best
