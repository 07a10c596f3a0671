"""What a DNS message says, as mxscan reads it: record types, response codes, and
the frozen records ``probes.dns.wire`` parses replies into.  No I/O, no codec."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple, TypeAlias

__all__ = [
    "RCODE",
    "Message",
    "MxData",
    "Question",
    "RData",
    "RRType",
    "Record",
    "SoaData",
    "TlsaData",
    "WireError",
    "rcode_name",
    "rrtype_code",
    "rrtype_name",
]


class WireError(ValueError):
    """The one error of this module: a name that cannot be encoded, or a reply
    that is not a well-formed DNS message."""


class RRType(IntEnum):
    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    DNAME = 39
    OPT = 41
    DS = 43
    RRSIG = 46
    NSEC = 47
    DNSKEY = 48
    NSEC3 = 50
    TLSA = 52
    CAA = 257


class RCODE(IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    YXDOMAIN = 6
    YXRRSET = 7
    NXRRSET = 8
    NOTAUTH = 9
    NOTZONE = 10
    BADVERS = 16


_RCODE_NAMES = {int(r): r.name for r in RCODE}
_RRTYPE_NAMES = {int(t): t.name for t in RRType}


def rcode_name(code: int) -> str:
    """``"NXDOMAIN"`` for 3; ``"RCODE23"`` for codes without a mnemonic."""
    return _RCODE_NAMES.get(code) or f"RCODE{code}"


def rrtype_name(code: int) -> str:
    """``"MX"`` for 15; RFC 3597 ``"TYPE65"`` for types without a mnemonic."""
    return _RRTYPE_NAMES.get(code) or f"TYPE{code}"


def rrtype_code(text: str) -> int:
    """The numeric type for ``"MX"``, ``"tlsa"`` or RFC 3597 ``"TYPE65"``."""
    upper = text.upper()
    try:
        return int(RRType[upper])
    except KeyError:
        pass
    if upper.startswith("TYPE") and upper[4:].isdigit() and int(upper[4:]) <= 0xFFFF:
        return int(upper[4:])
    raise WireError(f"unknown record type {text[:20]!r}")


class MxData(NamedTuple):
    preference: int
    exchange: str


class TlsaData(NamedTuple):
    usage: int
    selector: int
    mtype: int
    association: bytes


class SoaData(NamedTuple):
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


#: A/AAAA address, CNAME/NS/DNAME/PTR target; TXT character-strings; raw bytes otherwise.
RData: TypeAlias = str | MxData | TlsaData | SoaData | tuple[bytes, ...] | bytes


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    rrtype: int


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    rrtype: int
    ttl: int
    data: RData


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    qr: bool
    opcode: int
    aa: bool
    tc: bool
    rd: bool
    ra: bool
    ad: bool
    cd: bool
    #: 12-bit RCODE: the header's 4 bits plus the OPT record's upper 8 (RFC 6891 §6.1.3).
    rcode: int
    question: Question | None
    answers: tuple[Record, ...]
    authority: tuple[Record, ...]
    #: RFC 8914 (INFO-CODE, EXTRA-TEXT) pairs, text sanitised and bounded.
    ede: tuple[tuple[int, str], ...]
    #: The reply carried an OPT record.
    edns: bool
