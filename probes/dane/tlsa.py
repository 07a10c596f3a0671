"""DANE for SMTP: parse TLSA records and match them against a presented chain.

Theory of operation (RFC 6698, RFC 7671, RFC 7672)
-------------------------------------------------
DANE applies to an MX host only when both its MX RRset and its TLSA RRset
are DNSSEC-secure (RFC 7672 §2.2); the inputs say so with the DNS layer's
``Dnssec`` vocabulary.  ``assess_dane`` decides in this order, first match wins:

1. ``bogus``: the TLSA or MX answer failed validation (RFC 7672 §2.2: a
   sender must then not deliver, so this is a finding of its own).
2. ``undetermined``: the TLSA lookup gave no usable answer (timeout, SERVFAIL
   that is not bogus, resolver not validating).
3. ``none``: no TLSA records.
4. ``insecure``: records exist but the TLSA or MX answer is not secure: they
   never count as DANE.
5. ``undetermined``: no handshake, so no chain to match (``chain`` is None or empty).
6. each record is usable or not: usages 0/1 (PKIX-TA/PKIX-EE) are unusable
   for SMTP (RFC 7672 §3.1.3); unknown usage, selector or matching type, or a
   digest of the wrong length, make that record unusable (RFC 6698 §4.1).
   * usage 3 (DANE-EE): the leaf's full DER (selector 0) or SPKI (selector 1),
     exact (0), SHA-256 (1) or SHA-512 (2), equals the data; name and
     validity dates are ignored (RFC 7672 §3.1.1).
   * usage 2 (DANE-TA): a presented certificate other than the leaf matches;
     the leaf chains to it through presented certificates (issuer name and
     signature checked); every certificate below the trust anchor is within
     its validity at ``at`` (the anchor's own dates are not checked, as for any
     trust anchor); the leaf's name matches the MX host name, the reference
     identifier of RFC 7672 §3.2.3 (subjectAltName dNSName with RFC 6125
     wildcards; the CN only when there is no dNSName, as OpenSSL's DANE does).
7. ``valid`` if any usable record matched (the first, in the given order, is
   reported); ``mismatch`` if at least one was usable; else ``unusable``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from probes.dns.records import Dnssec
from probes.tls.certs import EXTENSION_ERRORS, MAX_CHAIN_CERTS, CertParseError, is_issued_by, load_der
from probes.tls.verify import match_hostname

__all__ = ["DaneResult", "DaneStatus", "TlsaParseError", "TlsaRecord", "assess_dane", "parse_tlsa"]

#: RDATA is at most 65,535 octets, so its hex is at most twice that.
MAX_TLSA_TEXT = 2 * 65535 + 64
_DIGEST_BYTES = {1: 32, 2: 64}
_HEX = frozenset(string.hexdigits)
_DETAIL_LIMIT = 300


class TlsaParseError(ValueError):
    """The text is not a TLSA record in presentation form ("3 1 1 <hex>")."""


class DaneStatus(StrEnum):
    #: No TLSA records for the MX host (NXDOMAIN or NODATA).
    NONE = "none"
    #: A usable TLSA record matches the presented chain.
    VALID = "valid"
    #: At least one usable TLSA record, none matches the presented chain.
    MISMATCH = "mismatch"
    #: TLSA records exist, secure, but none is usable for SMTP.
    UNUSABLE = "unusable"
    #: TLSA records exist but the TLSA or MX answer is not DNSSEC-secure.
    INSECURE = "insecure"
    #: The TLSA or MX answer failed DNSSEC validation.
    BOGUS = "bogus"
    #: Cannot tell: the TLSA lookup failed or there was no handshake.
    UNDETERMINED = "undetermined"


@dataclass(frozen=True, slots=True)
class TlsaRecord:
    """One TLSA record (RFC 6698 §2.1).

    Fields:
      usage: certificate usage: 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
      selector: 0 full certificate, 1 SubjectPublicKeyInfo.
      mtype: matching type: 0 exact, 1 SHA-256, 2 SHA-512.
      data: the certificate association data, lowercase hex.
    """

    usage: int
    selector: int
    mtype: int
    data: str

    @property
    def text(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data}"


@dataclass(frozen=True, slots=True)
class DaneResult:
    """The DANE verdict for one MX host's presented chain.

    Fields:
      status: none / valid / mismatch / unusable / insecure / bogus / undetermined.
      matched: the TLSA record (presentation text) that matched, or null.
      usable: how many of the records are usable for SMTP (RFC 7672 §3.1).
      detail: a short explanation (bounded).
    """

    status: DaneStatus
    matched: str | None
    usable: int
    detail: str


def parse_tlsa(text: str) -> TlsaRecord:
    """Parse "<usage> <selector> <mtype> <hex>" (hex may contain whitespace)."""
    if len(text) > MAX_TLSA_TEXT:
        raise TlsaParseError(f"record text longer than {MAX_TLSA_TEXT} characters")
    parts = text.split()
    if len(parts) < 4:
        raise TlsaParseError("expected '<usage> <selector> <mtype> <hex>'")
    fields = []
    for label, value in zip(("usage", "selector", "matching type"), parts[:3], strict=True):
        if not (value.isascii() and value.isdigit()) or int(value) > 255:
            raise TlsaParseError(f"{label} {value[:10]!r} is not an integer 0-255")
        fields.append(int(value))
    data = "".join(parts[3:]).lower()
    if not data.isascii() or not _HEX.issuperset(data):
        raise TlsaParseError("association data is not hexadecimal")
    if len(data) % 2:
        raise TlsaParseError("association data has an odd number of hex digits")
    return TlsaRecord(fields[0], fields[1], fields[2], data)


def _unusable_reason(record: TlsaRecord) -> str | None:
    if record.usage in (0, 1):
        return "PKIX usages are unusable for SMTP (RFC 7672 §3.1.3)"
    if record.usage not in (2, 3):
        return f"unknown usage {record.usage}"
    if record.selector not in (0, 1):
        return f"unknown selector {record.selector}"
    if record.mtype not in (0, 1, 2):
        return f"unknown matching type {record.mtype}"
    want = _DIGEST_BYTES.get(record.mtype)
    if want is not None and len(record.data) != 2 * want:
        return f"digest of {len(record.data) // 2} bytes for matching type {record.mtype}"
    if not record.data:
        return "empty association data"
    return None


def _selected(cert: x509.Certificate | None, der: bytes, selector: int) -> bytes | None:
    if selector == 0:
        return der
    if cert is None:
        return None
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):  # an unreadable key cannot match selector 1
        return None
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _matches(record: TlsaRecord, cert: x509.Certificate | None, der: bytes) -> bool:
    selected = _selected(cert, der, record.selector)
    if selected is None:
        return False
    if record.mtype == 1:
        selected = hashlib.sha256(selected).digest()
    elif record.mtype == 2:
        selected = hashlib.sha512(selected).digest()
    return selected.hex() == record.data


def _path_to(
    leaf: x509.Certificate, anchor: x509.Certificate, pool: Sequence[x509.Certificate]
) -> list[x509.Certificate] | None:
    """The certificates from the leaf up to (not including) ``anchor``, or None."""
    path, current = [leaf], leaf
    for _ in range(len(pool) + 1):
        if is_issued_by(current, anchor):
            return path
        step = next((c for c in pool if c not in path and c is not anchor and is_issued_by(current, c)), None)
        if step is None:
            return None
        path.append(step)
        current = step
    return None


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


def _dane_ta(
    record: TlsaRecord,
    certs: Sequence[x509.Certificate | None],
    ders: Sequence[bytes],
    host: str,
    at: dt.datetime,
) -> str | None:
    """None if the record authenticates the chain, else why not."""
    leaf = certs[0]
    if leaf is None:
        return "leaf unparsable"
    parsed = [c for c in certs[1:] if c is not None]
    anchors = [
        c for c, der in zip(certs[1:], ders[1:], strict=True) if c is not None and _matches(record, c, der)
    ]
    if not anchors:
        return "no presented CA certificate matches"
    for anchor in anchors:
        path = _path_to(leaf, anchor, parsed)
        if path is None:
            continue
        if any(not (c.not_valid_before_utc <= at <= c.not_valid_after_utc) for c in path):
            return "a certificate below the trust anchor is outside its validity"
        dns, ips = _leaf_names(leaf)
        if not match_hostname(host, dns, ips):
            return f"leaf name does not match {host}"
        return None
    return "leaf does not chain to the matching CA certificate"


def _bounded(text: str) -> str:
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"


def assess_dane(
    records: Sequence[TlsaRecord],
    *,
    tlsa_dnssec: Dnssec,
    mx_dnssec: Dnssec,
    chain: Sequence[bytes] | None,
    host: str,
    at: dt.datetime,
) -> DaneResult:
    """The DANE status of one MX host, by the rules in the module docstring."""
    if Dnssec.BOGUS in (tlsa_dnssec, mx_dnssec):
        which = "TLSA" if tlsa_dnssec is Dnssec.BOGUS else "MX"
        return DaneResult(DaneStatus.BOGUS, None, 0, f"{which} answer failed DNSSEC validation")
    if tlsa_dnssec in (Dnssec.INDETERMINATE, Dnssec.UNKNOWN):
        return DaneResult(DaneStatus.UNDETERMINED, None, 0, f"TLSA lookup {tlsa_dnssec.value}")
    if not records:
        return DaneResult(DaneStatus.NONE, None, 0, "no TLSA records")
    if tlsa_dnssec is not Dnssec.SECURE or mx_dnssec is not Dnssec.SECURE:
        return DaneResult(
            DaneStatus.INSECURE,
            None,
            0,
            f"TLSA {tlsa_dnssec.value}, MX {mx_dnssec.value}: DANE does not apply",
        )
    usable = [r for r in records if _unusable_reason(r) is None]
    if not chain:
        return DaneResult(DaneStatus.UNDETERMINED, None, len(usable), "no handshake, no chain to match")
    if not usable:
        reasons = sorted({str(_unusable_reason(r)) for r in records})
        return DaneResult(DaneStatus.UNUSABLE, None, 0, _bounded("; ".join(reasons)))
    at = at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
    ders = list(chain[:MAX_CHAIN_CERTS])
    certs: list[x509.Certificate | None] = []
    for der in ders:
        try:
            certs.append(load_der(der))
        except CertParseError:
            certs.append(None)
    misses: list[str] = []
    for record in usable:
        if record.usage == 3:
            if _matches(record, certs[0], ders[0]):
                return DaneResult(DaneStatus.VALID, record.text, len(usable), "DANE-EE matches the leaf")
            misses.append(f"{record.usage} {record.selector} {record.mtype}: leaf does not match")
            continue
        try:
            why = _dane_ta(record, certs, ders, host, at)
        except EXTENSION_ERRORS as exc:  # a malformed extension met while checking
            why = f"malformed certificate: {exc}"
        if why is None:
            return DaneResult(DaneStatus.VALID, record.text, len(usable), "DANE-TA anchors the chain")
        misses.append(f"{record.usage} {record.selector} {record.mtype}: {why}")
    return DaneResult(DaneStatus.MISMATCH, None, len(usable), _bounded("; ".join(misses)))
