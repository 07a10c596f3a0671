"""Facts about presented certificates, read from DER with no judgement attached.

``cert_facts`` turns one DER certificate into a ``CertFacts`` record;
``chain_facts`` does it for a presented chain under the caps below.  Whether
the chain is *trustworthy* is ``verify.py``'s business; this module only says
what the certificates contain.

cryptography parses extensions lazily, so a certificate whose outer structure
is fine can still hold a malformed extension.  Such a certificate keeps its
facts (the malformed parts empty) and names the problem in ``parse_issue``;
only a DER blob that is not a certificate at all raises ``CertParseError``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from engine.peertext import bound_text

__all__ = [
    "EXTENSION_ERRORS",
    "MAX_CERT_BYTES",
    "MAX_CHAIN_CERTS",
    "CertFacts",
    "CertParseError",
    "ChainFacts",
    "cert_facts",
    "chain_facts",
    "is_issued_by",
    "load_der",
]

#: Certificates considered per presented chain; real chains have 2-4, a
#: hostile server may send hundreds (RFC 8446 allows up to 16 MiB of them).
MAX_CHAIN_CERTS = 16
#: A single certificate larger than this is not parsed (real ones are < 8 KiB).
MAX_CERT_BYTES = 64 * 1024
#: Longest subject or issuer text recorded: real names are under 300 characters, a
#: hostile certificate can carry ~64 KiB of them.
NAME_TEXT_LIMIT = 1024
#: Longest text of a certificate that does not parse (the library's reason).
_ERROR_LIMIT = 200
#: Longest ``CertFacts.parse_issue`` (the problems found reading a parsed certificate).
_ISSUE_LIMIT = 512

_ISSUED_BY_ERRORS = (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm)
#: What reading a parsed certificate's extensions may raise for malformed input.  TypeError
#: too: cryptography raises it for a name attribute of the wrong type inside an extension
#: (a BIT STRING under another OID than x500UniqueIdentifier in a directoryName).
EXTENSION_ERRORS = (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


class CertParseError(ValueError):
    """The bytes are not a DER X.509 certificate (or exceed ``MAX_CERT_BYTES``)."""


@dataclass(frozen=True, slots=True)
class CertFacts:
    """What one certificate says about itself.

    Fields:
      subject: the subject as an RFC 4514 string ("" when empty), control characters escaped,
        at most NAME_TEXT_LIMIT (1024) characters ("…" marks a cut).
      issuer: the issuer as an RFC 4514 string, bounded like subject.
      serial: the serial number in lowercase hex.
      not_before: start of validity, ISO 8601 UTC ("2025-01-31T00:00:00Z").
      not_after: end of validity, ISO 8601 UTC.
      san_dns: dNSName entries of subjectAltName, in certificate order.
      san_ip: iPAddress entries of subjectAltName, in text form.
      key_type: rsa / ec / ed25519 / ed448 / dsa / unknown.
      key_bits: key size in bits (0 when unknown).
      curve: the named curve of an EC key ("secp256r1"), "" otherwise.
      signature_algorithm: the signature algorithm name ("ecdsa-with-SHA256") or its OID.
      sha256: SHA-256 of the DER certificate, lowercase hex.
      spki_sha256: SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex ("" when unreadable).
      is_ca: basicConstraints says CA:TRUE.
      self_issued: subject equals issuer (RFC 5280 §6.1; the signature is not checked here).
      parse_issue: "" or what could not be read (a malformed extension, an unsupported key).
    """

    subject: str
    issuer: str
    serial: str
    not_before: str
    not_after: str
    san_dns: tuple[str, ...]
    san_ip: tuple[str, ...]
    key_type: str
    key_bits: int
    curve: str
    signature_algorithm: str
    sha256: str
    spki_sha256: str
    is_ca: bool
    self_issued: bool
    parse_issue: str


@dataclass(frozen=True, slots=True)
class ChainFacts:
    """The facts of a presented chain, leaf first, under ``MAX_CHAIN_CERTS``.

    Fields:
      certs: facts of each parsed certificate, in presented order.
      presented: how many certificates the server sent.
      truncated: more than MAX_CHAIN_CERTS were sent; only the first were considered.
      errors: "cert <index>: <reason>" for each considered certificate that could not be parsed.
    """

    certs: tuple[CertFacts, ...]
    presented: int
    truncated: bool
    errors: tuple[str, ...]


#: Parsed certificates and their facts are kept by DER: the intermediates of big CAs and
#: the certificates of shared MX hosts recur across thousands of probes and policy hosts.
#: Both results are immutable, so sharing them is safe; a few thousand entries cover the
#: recurring ones while one-off leaves age out.
CACHED_CERTIFICATES = 4096


@functools.lru_cache(maxsize=CACHED_CERTIFICATES)
def load_der(der: bytes) -> x509.Certificate:
    """Parse one DER certificate under the size cap, or raise ``CertParseError``."""
    if len(der) > MAX_CERT_BYTES:
        raise CertParseError(f"certificate of {len(der)} bytes exceeds {MAX_CERT_BYTES}")
    try:
        with warnings.catch_warnings():
            # Peer data: a non-positive serial or an over-long country name is a
            # fact about the peer, not a warning for the operator.
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
            # cryptography parses lazily; touch what every caller reads so a
            # malformed name or validity fails here, once, as CertParseError.
            _ = (cert.subject, cert.issuer, cert.serial_number)
            _ = (cert.not_valid_before_utc, cert.not_valid_after_utc)
    except (ValueError, TypeError, x509.InvalidVersion) as exc:  # TypeError: a malformed name attribute
        raise CertParseError(bound_text(f"not a DER certificate: {exc}", _ERROR_LIMIT)) from None
    return cert


def is_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s name and key account for ``cert`` (name match + signature)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except _ISSUED_BY_ERRORS:
        return False
    return True


def _iso(moment: dt.datetime) -> str:
    """``moment`` (already UTC: cryptography's ``*_utc`` properties) as ISO 8601 with a Z
    ("2025-01-31T00:00:00Z"); isoformat is several times cheaper than strftime."""
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _name(name: x509.Name) -> str:
    try:
        return bound_text(name.rfc4514_string(), NAME_TEXT_LIMIT)
    except ValueError:  # an attribute value that cannot be rendered
        return "<unrenderable name>"


#: Issuer names as text by their DER: thousands of leaves share a few issuers, and
#: encoding a name costs a third of rendering it.
_ISSUER_TEXT: dict[bytes, str] = {}


def _issuer_text(issuer: x509.Name) -> str:
    try:
        key = issuer.public_bytes()
    except ValueError:
        return _name(issuer)
    text = _ISSUER_TEXT.get(key)
    if text is None:
        if len(_ISSUER_TEXT) >= CACHED_CERTIFICATES:
            _ISSUER_TEXT.clear()
        text = _ISSUER_TEXT[key] = _name(issuer)
    return text


def _key_facts(cert: x509.Certificate) -> tuple[str, int, str, str]:
    """(key_type, key_bits, curve, spki_sha256)."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unknown", 0, "", ""
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    spki_sha256 = hashlib.sha256(spki).hexdigest()
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size, "", spki_sha256
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", key.curve.key_size, key.curve.name, spki_sha256
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256, "", spki_sha256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456, "", spki_sha256
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size, "", spki_sha256
    return "unknown", 0, "", spki_sha256


def _serial_hex(cert: x509.Certificate) -> str:
    serial = cert.serial_number
    return format(serial, "x") if serial >= 0 else f"-{-serial:x}"


def _signature_algorithm(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    name = getattr(oid, "_name", "")
    return name if name and name != "Unknown OID" else oid.dotted_string


@functools.lru_cache(maxsize=CACHED_CERTIFICATES)
def cert_facts(der: bytes) -> CertFacts:
    """The facts of one DER certificate; ``CertParseError`` if it is not one."""
    with warnings.catch_warnings():
        # A non-positive serial or an odd name attribute is a fact about the peer, not
        # a warning for the operator; one context per certificate (each costs ~2 µs).
        warnings.simplefilter("ignore")
        return _facts(der, load_der(der))


def _facts(der: bytes, cert: x509.Certificate) -> CertFacts:
    issues: list[str] = []
    san_dns: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    is_ca = False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        san_dns = tuple(san.get_values_for_type(x509.DNSName))
        san_ip = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        pass
    except EXTENSION_ERRORS as exc:
        issues.append(f"extensions: {exc}")
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        pass
    except EXTENSION_ERRORS as exc:
        if not issues:
            issues.append(f"extensions: {exc}")
    key_type, key_bits, curve, spki_sha256 = _key_facts(cert)
    if key_type == "unknown":
        issues.append("public key: unsupported or malformed")
    not_before, not_after = _iso(cert.not_valid_before_utc), _iso(cert.not_valid_after_utc)
    return CertFacts(
        subject=_name(cert.subject),
        issuer=_issuer_text(cert.issuer),
        serial=_serial_hex(cert),
        not_before=not_before,
        not_after=not_after,
        san_dns=san_dns,
        san_ip=san_ip,
        key_type=key_type,
        key_bits=key_bits,
        curve=curve,
        signature_algorithm=_signature_algorithm(cert),
        sha256=hashlib.sha256(der).hexdigest(),
        spki_sha256=spki_sha256,
        is_ca=is_ca,
        self_issued=cert.subject == cert.issuer,
        parse_issue=bound_text("; ".join(issues), _ISSUE_LIMIT),
    )


def chain_facts(chain: Sequence[bytes]) -> ChainFacts:
    """Facts of the first ``MAX_CHAIN_CERTS`` certificates of a presented chain."""
    considered = chain[:MAX_CHAIN_CERTS]
    certs: list[CertFacts] = []
    errors: list[str] = []
    for index, der in enumerate(considered):
        try:
            certs.append(cert_facts(der))
        except CertParseError as exc:
            errors.append(f"cert {index}: {exc}")
    return ChainFacts(
        certs=tuple(certs),
        presented=len(chain),
        truncated=len(chain) > MAX_CHAIN_CERTS,
        errors=tuple(errors),
    )
