"""DANE for SMTP: the verdict for one MX host from its TLSA answer and presented chain.

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
5. DANE applies from here: a secure, non-empty TLSA RRset makes TLS mandatory
   for a DANE sender, even when no record is usable (RFC 7672 §2.2).  Without
   a chain: ``no-tls`` when the probes settled that no TLS session can be had
   (``no_tls`` gives why: STARTTLS not offered, refused, the handshake failed,
   the host unreachable), so a DANE sender would not deliver; ``undetermined``
   when the host was not probed (``no_tls`` is None).
6. ``unusable`` when no record is usable for SMTP (``record.unusable_reason``:
   usages 0/1 are unusable per RFC 7672 §3.1.3, unknown parameters per
   RFC 6698 §4.1).
7. ``valid`` if a usable record authenticates the chain (``chain.match_chain``:
   DANE-EE, or DANE-TA with the anchor presented or given in full in the
   record), else ``mismatch``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from engine.peertext import bound_text
from probes.dane.chain import ChainMatch, match_chain
from probes.dane.record import TlsaParseError, TlsaRecord, parse_tlsa, unusable_reason
from probes.dns.records import Dnssec

__all__ = [
    "ChainMatch",
    "DaneResult",
    "DaneStatus",
    "TlsaParseError",
    "TlsaRecord",
    "assess_dane",
    "match_chain",
    "parse_tlsa",
]

_DETAIL_LIMIT = 300


class DaneStatus(StrEnum):
    #: No TLSA records for the MX host (NXDOMAIN or NODATA).
    NONE = "none"
    #: A usable TLSA record matches the presented chain.
    VALID = "valid"
    #: At least one usable TLSA record, none matches the presented chain.
    MISMATCH = "mismatch"
    #: TLSA records exist, secure, but none is usable for SMTP.
    UNUSABLE = "unusable"
    #: DANE applies (MX and TLSA answers secure, records present) but no TLS session could
    #: be had with the host (STARTTLS not offered, refused, handshake failed, unreachable):
    #: a DANE sender would not deliver to it (RFC 7672 §2.2).
    NO_TLS = "no-tls"
    #: TLSA records exist but the TLSA or MX answer is not DNSSEC-secure.
    INSECURE = "insecure"
    #: The TLSA or MX answer failed DNSSEC validation.
    BOGUS = "bogus"
    #: Cannot tell: the TLSA lookup failed, or the host was not probed.
    UNDETERMINED = "undetermined"


@dataclass(frozen=True, slots=True)
class DaneResult:
    """The DANE verdict for one MX host's presented chain.

    Fields:
      status: none / valid / mismatch / unusable / no-tls / insecure / bogus / undetermined.
      matched: the TLSA record (presentation text) that authenticated the chain, or null.
      usable: how many of the records are usable for SMTP (RFC 7672 §3.1).
      detail: a short explanation (bounded).
    """

    status: DaneStatus
    matched: str | None
    usable: int
    detail: str


def assess_dane(
    records: Sequence[TlsaRecord],
    *,
    tlsa_dnssec: Dnssec,
    mx_dnssec: Dnssec,
    chain: Sequence[bytes] | None,
    host: str,
    at: dt.datetime,
    no_tls: str | None = None,
) -> DaneResult:
    """The DANE status of one MX host, by the rules in the module docstring.

    ``no_tls``: when there is no chain, why the probes settled that the host gives no
    TLS session; None when it was not probed (or a probe could not tell).
    """
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
    usable = [r for r in records if unusable_reason(r) is None]
    if not chain:
        if no_tls is not None:
            why = f"no TLS session ({no_tls}): a DANE sender would not deliver (RFC 7672 §2.2)"
            return DaneResult(DaneStatus.NO_TLS, None, len(usable), bound_text(why, _DETAIL_LIMIT))
        return DaneResult(DaneStatus.UNDETERMINED, None, len(usable), "host not probed, no chain to match")
    if not usable:
        reasons = sorted({str(unusable_reason(r)) for r in records})
        return DaneResult(DaneStatus.UNUSABLE, None, 0, bound_text("; ".join(reasons), _DETAIL_LIMIT))
    match = match_chain(usable, chain, host=host, at=at)
    if match.record is None:
        return DaneResult(
            DaneStatus.MISMATCH, None, len(usable), bound_text("; ".join(match.misses), _DETAIL_LIMIT)
        )
    how = "DANE-EE matches the leaf" if match.record.usage == 3 else "DANE-TA anchors the chain"
    return DaneResult(DaneStatus.VALID, match.record.text, len(usable), f"{how} (depth {match.depth})")
