"""Typed DNS results: what was asked, what the resolver said, and what it means
for DNSSEC.  These are the records written to the results file."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEFINITE_OUTCOMES",
    "Answer",
    "DnsResult",
    "Dnssec",
    "Ede",
    "ImplicitMx",
    "MxHost",
    "Outcome",
    "ResolverCheck",
    "TlsaSkip",
]


class Outcome(StrEnum):
    #: NOERROR with at least one record of the asked type (after CNAMEs).
    OK = "ok"
    #: The name does not exist (RCODE 3).  A definite negative: data, not failure.
    NXDOMAIN = "nxdomain"
    #: The name exists but has no record of the asked type.
    NODATA = "nodata"
    #: The resolver answered SERVFAIL (RCODE 2), also after a CD=1 retry.
    SERVFAIL = "servfail"
    #: The resolver refused the query (RCODE 5).
    REFUSED = "refused"
    #: No answer within the deadline, after the configured retries.
    TIMEOUT = "timeout"
    #: Anything else: another RCODE, an unparsable or mismatched reply.
    ERROR = "error"


#: Outcomes that settle what the name holds: data, or a definite absence.  The others
#: (servfail, refused, timeout, error) are a failed lookup: unknown, never "absent".
DEFINITE_OUTCOMES = frozenset({Outcome.OK, Outcome.NXDOMAIN, Outcome.NODATA})


class Dnssec(StrEnum):
    #: The validating resolver set AD: the answer (or denial) is signed and valid.
    SECURE = "secure"
    #: Answered without AD by a validating resolver: the zone is unsigned
    #: (or sits below an insecure delegation).
    INSECURE = "insecure"
    #: SERVFAIL that succeeds with CD=1: signatures exist but do not validate.
    BOGUS = "bogus"
    #: No usable answer (timeout, SERVFAIL also with CD=1, error): cannot tell.
    INDETERMINATE = "indeterminate"
    #: The resolver failed the pre-flight validation check, so AD means nothing.
    UNKNOWN = "unknown"


class ResolverCheck(StrEnum):
    """What the pre-flight check showed about the resolver's DNSSEC validation."""

    #: AD on the signed name and SERVFAIL on the bogus name.
    VALIDATING = "validating"
    #: AD on the signed name, but no verdict on the bogus name (NXDOMAIN: it does not exist
    #: for this resolver; another RCODE; no answer).  AD is read; rejection was not shown.
    INCONCLUSIVE = "inconclusive"
    #: No AD on the signed name, or the bogus name answered NOERROR: AD means nothing.
    NOT_VALIDATING = "not-validating"


class TlsaSkip(StrEnum):
    #: RFC 7672 §2.2: TLSA only matters when the MX host's addresses are secure.
    ADDRESS_INSECURE = "address-insecure"
    #: The MX host's address lookups failed or were indeterminate.
    ADDRESS_UNRESOLVED = "address-unresolved"
    #: The resolver does not validate, so no answer can be known to be secure.
    RESOLVER_NOT_VALIDATING = "resolver-not-validating"


@dataclass(frozen=True, slots=True)
class Ede:
    """An Extended DNS Error (RFC 8914) attached to a reply.

    Fields:
      code: the INFO-CODE (e.g. 6 = DNSSEC Bogus, 9 = DNSKEY Missing).
      text: the EXTRA-TEXT, if the resolver sent one (bounded, sanitised).
    """

    code: int
    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    """One question asked of the resolver and its classified answer.

    Fields:
      name: the name asked, lowercase A-label, no trailing dot.
      rrtype: the record type asked (MX, A, AAAA, TXT, TLSA).
      outcome: ok / nxdomain / nodata / servfail / refused / timeout / error.
      dnssec: secure / insecure / bogus / indeterminate / unknown.
      ad: the AD flag of the reply used (false when there was none).
      ttl: smallest TTL over the answer RRset of the asked type; null unless ok.
      cname_chain: CNAME targets followed from the asked name, in order.
      data: the records of the asked type in a plain form: A/AAAA the address, MX "<pref> <host>",
        TXT each record's character-strings concatenated, TLSA "<usage> <selector> <mtype> <hex>".
      rcode: the RCODE name of the reply used (NOERROR, NXDOMAIN, SERVFAIL, ...), "" without reply.
      ede: Extended DNS Errors the resolver sent (RFC 8914).
      detail: why the outcome is timeout or error (bounded text), else "".
    """

    name: str
    rrtype: str
    outcome: Outcome
    dnssec: Dnssec
    ad: bool
    ttl: int | None
    cname_chain: tuple[str, ...]
    data: tuple[str, ...]
    rcode: str
    ede: tuple[Ede, ...]
    detail: str


@dataclass(frozen=True, slots=True)
class MxHost:
    """One MX target of a domain, its addresses and (when it can matter) its TLSA.

    Fields:
      preference: the MX preference (lower is tried first).
      host: the MX target, lowercase A-label, no trailing dot.
      a: the A lookup of the host.
      aaaa: the AAAA lookup of the host.
      tlsa: the TLSA lookup at _25._tcp.<host>; null when skipped.
      tlsa_skipped: why TLSA was not asked (address-insecure, address-unresolved,
        resolver-not-validating); null when it was asked.
    """

    preference: int
    host: str
    a: Answer
    aaaa: Answer
    tlsa: Answer | None
    tlsa_skipped: TlsaSkip | None


@dataclass(frozen=True, slots=True)
class ImplicitMx:
    """RFC 5321 §5.1 fallback when a domain has no MX: mail goes to its A/AAAA.
    Recorded as a fact of its own; "has a mail server" counts MX records only.

    Fields:
      a: the A lookup of the domain itself.
      aaaa: the AAAA lookup of the domain itself.
    """

    a: Answer
    aaaa: Answer


@dataclass(frozen=True, slots=True)
class DnsResult:
    """The DNS side of a domain's mail transport security.

    Fields:
      mx: the MX lookup of the domain.
      has_mx: at least one MX record that is not a null MX (the study's "supports email").
      null_mx: the domain publishes RFC 7505 null MX ("0 ."): it accepts no mail.
      mx_hosts: every MX target, sorted by preference then name, each with its lookups.
      implicit_mx: A/AAAA of the domain when its MX lookup is NODATA (the name exists without MX
        records: RFC 5321 §5.1 implicit MX); else null (NXDOMAIN has no address to fall back on).
      mta_sts: TXT lookup of _mta-sts.<domain> (its CNAME chain shows delegated policy hosting).
      tlsrpt: TXT lookup of _smtp._tls.<domain>.
    """

    mx: Answer
    has_mx: bool
    null_mx: bool
    mx_hosts: tuple[MxHost, ...]
    implicit_mx: ImplicitMx | None
    mta_sts: Answer
    tlsrpt: Answer
