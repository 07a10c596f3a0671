"""TLSA records (RFC 6698 §2): presentation-form parsing and usability for SMTP.

A record is *usable* for SMTP when a sender may authenticate with it
(RFC 7672 §3.1): DANE-TA(2) or DANE-EE(3), a known selector and matching
type, a digest of the right length, and, for matching type Full(0), data
that is what the selector says (a DER certificate for selector 0, a DER
SubjectPublicKeyInfo for selector 1).  OpenSSL refuses the last kind too
(``SSL_dane_tlsa_add`` returns 0, "unusable TLSA rrdata"): such a record can
never match, and a record that cannot match is not a "mismatch" of the server.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from probes.tls.certs import CertParseError, load_der

__all__ = ["MAX_TLSA_TEXT", "TlsaParseError", "TlsaRecord", "parse_tlsa", "unusable_reason"]

#: RDATA is at most 65,535 octets, so its hex is at most twice that.
MAX_TLSA_TEXT = 2 * 65535 + 64
#: Matching type -> digest length in bytes (RFC 6698 §2.1.3: SHA2-256, SHA2-512).
DIGEST_BYTES = {1: 32, 2: 64}
_HEX = frozenset(string.hexdigits)


class TlsaParseError(ValueError):
    """The text is not a TLSA record in presentation form ("3 1 1 <hex>")."""


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


def parse_tlsa(text: str) -> TlsaRecord:
    """Parse "<usage> <selector> <mtype> <hex>" (hex may contain whitespace).

    The hex may also be absent: zero-length association data is legal on the wire (RFC 6698
    §2.1; the DNS layer, like dnspython, renders it "3 1 0 "), and such a record is part of a
    non-empty RRset, so it is read (and is unusable) rather than refused.
    """
    if len(text) > MAX_TLSA_TEXT:
        raise TlsaParseError(f"record text longer than {MAX_TLSA_TEXT} characters")
    parts = text.split()
    if len(parts) < 3:
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


def unusable_reason(record: TlsaRecord) -> str | None:
    """Why an SMTP sender cannot use the record (see the module docstring), or None."""
    if record.usage in (0, 1):
        return "PKIX usages are unusable for SMTP (RFC 7672 §3.1.3)"
    if record.usage not in (2, 3):
        return f"unknown usage {record.usage}"
    if record.selector not in (0, 1):
        return f"unknown selector {record.selector}"
    if record.mtype not in (0, 1, 2):
        return f"unknown matching type {record.mtype}"
    want = DIGEST_BYTES.get(record.mtype)
    if want is not None and len(record.data) != 2 * want:
        return f"digest of {len(record.data) // 2} bytes for matching type {record.mtype}"
    if not record.data:
        return "empty association data"
    if record.mtype == 0 and not _full_data_parses(record):
        what = "certificate" if record.selector == 0 else "SubjectPublicKeyInfo"
        return f"full association data is not a DER {what}"
    return None


def _full_data_parses(record: TlsaRecord) -> bool:
    data = bytes.fromhex(record.data)
    if record.selector == 0:
        try:
            load_der(data)
        except CertParseError:
            return False
        return True
    try:
        serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True
