"""DNSSEC for tier (b): one ECDSA P-256 key per signed zone, NSEC chains, RRSIGs, DS for parents.

Theory of operation
-------------------
A signed zone gets one combined signing key (flags 257, RFC 4034 §2.1.1:
zone key + SEP), algorithm 13 (ECDSAP256SHA256, RFC 6605) because it is the
cheapest to sign (~20 µs) and what most signed zones use.  ``sign_zone``
takes a zone's records in presentation form and returns them with the DNSKEY,
an NSEC chain (RFC 4034 §4) and one RRSIG per authoritative RRset:

- names are walked in canonical order (RFC 4034 §6.1); a name with NS below
  the apex is a delegation point: only its DS and NSEC are signed, and names
  below it (glue) get neither NSEC nor RRSIG (RFC 4035 §2.2-2.3);
- the signed data is the RRSIG rdata without the signature followed by the
  RRset in canonical form (RFC 4034 §3.1.8.1, §6.2-6.3); rdata is made
  canonical by dnspython (memoised: most zones repeat the same NS and SOA).

A *bogus* zone is signed the same way and then every RRSIG except the one
over the DNSKEY RRset gets a flipped signature byte: the key validates from
the parent's DS, so a validating resolver reports the data's signatures as
bogus (SERVFAIL, EDE 6) rather than a missing key, and CD=1 still returns
the data — the same as tier (a)'s simulation.

Why not ``dns.dnssec.sign_zone``: it spends ~230 µs per signature in
Python; signing the 100k-domain world with it takes about a minute, this
module a few seconds.  Tests check the output with ``dns.dnssec.validate``.

Pure: no sockets, no files.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

import dns.rdata
import dns.rdataclass
import dns.rdatatype
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from testbed.zones import TTL, Rr

__all__ = [
    "ALGORITHM",
    "SIGNATURE_LIFETIME",
    "Validity",
    "ZoneKey",
    "canonical_key",
    "ds_rdata",
    "make_key",
    "name_wire",
    "sign_zone",
    "validity_now",
]

#: RFC 8624 §3.1: ECDSAP256SHA256, MUST be supported by validators.
ALGORITHM = 13
#: Seconds a signature is valid from inception: outlives any test run or benchmark.
SIGNATURE_LIFETIME = 30 * 86400
#: Inception this many seconds in the past, so small clock differences never matter.
INCEPTION_SKEW = 3600
_IN = 1
_RRSIG, _NSEC, _NS, _DS, _SOA, _DNSKEY = 46, 47, 2, 43, 6, 48


class ZoneKey(NamedTuple):
    """A zone's signing key and its DNSKEY (flags 257, protocol 3, algorithm 13)."""

    private: ec.EllipticCurvePrivateKey
    #: DNSKEY rdata in wire form (RFC 4034 §2.1).
    dnskey_wire: bytes
    #: RFC 4034 Appendix B.
    key_tag: int

    @property
    def dnskey_text(self) -> str:
        return f"257 3 {ALGORITHM} {base64.b64encode(self.dnskey_wire[4:]).decode()}"


class Validity(NamedTuple):
    """Signature inception and expiration, seconds since the epoch (RFC 4034 §3.1.5)."""

    inception: int
    expiration: int


def validity_now(now: float | None = None) -> Validity:
    start = int(time.time() if now is None else now) - INCEPTION_SKEW
    return Validity(start, start + SIGNATURE_LIFETIME)


def make_key() -> ZoneKey:
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    # RFC 6605 §4: the public key is Q = x | y, 32 bytes each, without the 0x04 prefix.
    public = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
    wire = struct.pack("!HBB", 257, 3, ALGORITHM) + public
    return ZoneKey(private, wire, _key_tag(wire))


def _key_tag(rdata: bytes) -> int:
    acc = 0
    for i, byte in enumerate(rdata):
        acc += byte << 8 if i % 2 == 0 else byte
    acc += (acc >> 16) & 0xFFFF
    return acc & 0xFFFF


def name_wire(name: str) -> bytes:
    """Uncompressed lowercase wire form of ``name`` ("" is the root)."""
    out = bytearray()
    for label in name.lower().split(".") if name else ():
        raw = label.encode("ascii")
        out += bytes((len(raw),)) + raw
    return bytes(out + b"\0")


def canonical_key(name: str) -> list[bytes]:
    """Sort key for RFC 4034 §6.1 canonical order: labels compared right to left as octets."""
    return [label.encode("ascii") for label in reversed(name.lower().split("."))] if name else []


def ds_rdata(apex: str, key: ZoneKey) -> str:
    """The parent's DS for ``key`` (digest type 2, SHA-256; RFC 4509)."""
    digest = hashlib.sha256(name_wire(apex) + key.dnskey_wire).hexdigest().upper()
    return f"{key.key_tag} {ALGORITHM} 2 {digest}"


@lru_cache(maxsize=1 << 16)
def _rdata_wire(rtype: str, rdata: str) -> bytes:
    # Canonical form (RFC 4034 §6.2): uncompressed, lowercase names in the listed types.
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), rdata)
    return rd.to_digestable()


def _type_bitmap(types: Iterable[int]) -> bytes:
    """RFC 4034 §4.1.2 type bit maps: windows of up to 32 octets."""
    windows: dict[int, bytearray] = {}
    for t in sorted(set(types)):
        window, bit = divmod(t, 256)
        bits = windows.setdefault(window, bytearray(32))
        bits[bit // 8] |= 0x80 >> (bit % 8)
    out = bytearray()
    for window, bits in sorted(windows.items()):
        used = len(bits.rstrip(b"\0"))
        out += bytes((window, used)) + bits[:used]
    return bytes(out)


@lru_cache(maxsize=256)
def _type_code(rtype: str) -> int:
    return int(dns.rdatatype.from_text(rtype))


@lru_cache(maxsize=256)
def _type_text(code: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(code))


def _dt(seconds: int) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(seconds))


def _labels(name: str) -> int:
    return len(name.split(".")) if name else 0


class _Signer:
    def __init__(self, apex: str, key: ZoneKey, validity: Validity, bogus: bool) -> None:
        self.apex, self.key, self.validity, self.bogus = apex, key, validity, bogus
        self.signer_wire = name_wire(apex)
        self.signer_text = f"{apex}." if apex else "."

    def sign(self, owner: str, rtype: int, rdatas: list[bytes]) -> Rr:
        inc, exp = self.validity
        head = struct.pack("!HBBIIIH", rtype, ALGORITHM, _labels(owner), TTL, exp, inc, self.key.key_tag)
        head += self.signer_wire
        prefix = name_wire(owner) + struct.pack("!HHI", rtype, _IN, TTL)
        data = bytearray(head)
        for rd in sorted(set(rdatas)):
            data += prefix + struct.pack("!H", len(rd)) + rd
        r, s = decode_dss_signature(self.key.private.sign(bytes(data), ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if self.bogus and rtype != _DNSKEY:
            sig = sig[:-1] + bytes((sig[-1] ^ 0xFF,))
        text = (
            f"{_type_text(rtype)} {ALGORITHM} {_labels(owner)} {TTL} {_dt(exp)} {_dt(inc)} "
            f"{self.key.key_tag} {self.signer_text} {base64.b64encode(sig).decode()}"
        )
        return Rr(owner, "RRSIG", text)


def sign_zone(
    apex: str,
    records: Iterable[Rr],
    key: ZoneKey,
    validity: Validity | None = None,
    *,
    bogus: bool = False,
) -> list[Rr]:
    """``records`` of the zone at ``apex`` plus DNSKEY, NSEC and RRSIG records (see module doc)."""
    signer = _Signer(apex, key, validity or validity_now(), bogus)
    by_name: dict[str, dict[str, list[Rr]]] = {}
    for rr in records:
        by_name.setdefault(rr.name, {}).setdefault(rr.rtype, []).append(rr)
    by_name.setdefault(apex, {})["DNSKEY"] = [Rr(apex, "DNSKEY", key.dnskey_text)]
    names = sorted(by_name, key=canonical_key)
    # Authoritative names in canonical order; glue below a delegation point is left out.
    secure: list[str] = []
    cut: list[bytes] | None = None
    for name in names:
        ck = canonical_key(name)
        if cut is not None and ck[: len(cut)] == cut and len(ck) > len(cut):
            continue
        cut = ck if name != apex and "NS" in by_name[name] else None
        secure.append(name)
    out: list[Rr] = [rr for rrsets in by_name.values() for rrs in rrsets.values() for rr in rrs]
    for i, name in enumerate(secure):
        rrsets = by_name[name]
        delegation = name != apex and "NS" in rrsets
        for rtype, rrs in rrsets.items():
            if delegation and rtype != "DS":
                continue  # RFC 4035 §2.2: delegation NS and glue are not signed
            code = _type_code(rtype)
            out.append(signer.sign(name, code, [_rdata_wire(rtype, rr.rdata) for rr in rrs]))
        nxt = secure[(i + 1) % len(secure)]
        types = [_type_code(t) for t in rrsets] + [_RRSIG, _NSEC]
        bitmap = _type_bitmap(types)
        out.append(Rr(name, "NSEC", f"{nxt}. {' '.join(_type_text(t) for t in sorted(set(types)))}"))
        out.append(signer.sign(name, _NSEC, [name_wire(nxt) + bitmap]))
    return out
