"""A lean DNS message codec: the few record types mxscan reads, nothing else.

Theory of operation
-------------------
Pure functions, no I/O.  ``build_query`` writes one question with RD=1,
AD=1 (RFC 6840 §5.7: a validating resolver then reports AD without the cost
of DO and signatures), CD as asked, and one EDNS(0) OPT record (RFC 6891) so
the resolver may attach Extended DNS Errors (RFC 8914).  ``parse_response``
reads a reply into frozen dataclasses and raises ``WireError`` -- and only
``WireError`` -- for anything malformed: that is the fuzz invariant the tests
hold it to.

Names come out as text the way dnspython prints them (RFC 4343 case folded to
lowercase, no trailing dot, the root as ".", special and non-printable bytes
escaped as ``\\.`` or ``\\DDD``), so a reply can be compared with the question
that was asked.  Compression pointers (RFC 1035 §4.1.4) must point strictly
before the previous jump, which makes loops impossible; a name longer than
255 wire octets is malformed.  Only class IN records are kept (a record of
another class is skipped, whatever its data), and a TTL with its top bit set
reads as 0 (RFC 2181 §8; dnspython reads it so too).

Measured here, dnspython spends 54-180 µs parsing a reply; this codec exists
to spend a tenth of that (benchmarks/README.md), so the hot path avoids
per-byte Python loops.
"""

from __future__ import annotations

import socket
import struct

from engine.peertext import bound_text
from probes.dns.message import (
    Message,
    MxData,
    Question,
    RData,
    Record,
    RRType,
    SoaData,
    TlsaData,
    WireError,
)

__all__ = ["EDE_TEXT_LIMIT", "EDNS_PAYLOAD", "build_query", "encode_name", "name_text", "parse_response"]

#: RFC 6891 §6.2.5 and the DNS Flag Day 2020 advice: 1232 octets avoids IP
#: fragmentation on practically every path.
EDNS_PAYLOAD = 1232
#: RFC 8914 EXTRA-TEXT is free text from the resolver; we keep a bounded prefix.
EDE_TEXT_LIMIT = 256


_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_QUESTION_TAIL = struct.Struct("!HH")
_U16 = struct.Struct("!H")
_SOA_TAIL = struct.Struct("!IIIII")

_FLAG_QR, _FLAG_AA, _FLAG_TC, _FLAG_RD = 0x8000, 0x0400, 0x0200, 0x0100
_FLAG_RA, _FLAG_AD, _FLAG_CD = 0x0080, 0x0020, 0x0010
_CLASS_IN = 1
#: RFC 2181 §8: TTLs are 0..2**31-1; larger values (top bit set) mean 0.
_TTL_MAX = 0x7FFFFFFF
_OPTION_EDE = 15

# Bytes printed as themselves in a name; everything else is escaped the way
# dnspython does (``_escapify``), so both codecs print the same text.
_SPECIAL = b'"().;\\@$'
_PLAIN = bytes(c for c in range(0x21, 0x7F) if c not in _SPECIAL)
_PLAIN_OR_DOT = _PLAIN + b"."


# ---------------------------------------------------------------- building


def encode_name(name: str) -> bytes:
    """Wire form of an A-label name, with or without its trailing dot.

    >>> encode_name("mx.example.")
    b'\\x02mx\\x07example\\x00'
    """
    if name in (".", ""):
        if name == "":
            raise WireError("empty name")
        return b"\x00"
    text = name[:-1] if name.endswith(".") else name
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise WireError("name is not an A-label (non-ASCII)") from None
    if raw.translate(None, _PLAIN_OR_DOT):
        raise WireError("name holds a byte that is not a printable A-label character")
    parts = []
    for label in raw.split(b"."):
        n = len(label)
        # RFC 1035 §2.3.4: labels of 1..63 octets, names of at most 255.
        if n == 0 or n > 63:
            raise WireError(f"label length {n} outside 1..63")
        parts.append(bytes((n,)) + label)
    parts.append(b"\x00")
    wire = b"".join(parts)
    if len(wire) > 255:
        raise WireError("name longer than 255 octets")
    return wire


def name_text(name: str) -> str:
    """The text ``parse_response`` prints for a name ``encode_name`` accepts:
    what a reply's question must equal."""
    text, _ = _read_name(encode_name(name), 0, {})
    return text


def build_query(
    qid: int, name: str, rrtype: int, *, cd: bool = False, ad: bool = True, payload: int = EDNS_PAYLOAD
) -> bytes:
    """One query: RD=1, AD and CD as given, EDNS(0) OPT with DO=0.

    Raises ``WireError`` for a name that is not a valid A-label name.
    """
    if not 0 <= qid <= 0xFFFF or not 0 <= rrtype <= 0xFFFF or not 512 <= payload <= 0xFFFF:
        raise WireError("query id, type or payload out of range")
    flags = _FLAG_RD | (_FLAG_AD if ad else 0) | (_FLAG_CD if cd else 0)
    return b"".join(
        (
            _HEADER.pack(qid, flags, 1, 0, 0, 1),
            encode_name(name),
            _QUESTION_TAIL.pack(rrtype, _CLASS_IN),
            # OPT: root owner, CLASS = payload size, TTL = ext-rcode/version/DO all 0, no options.
            b"\x00" + _RR_FIXED.pack(RRType.OPT, payload, 0, 0),
        )
    )


# ----------------------------------------------------------------- parsing


def parse_response(data: bytes) -> Message:
    """Read a reply.  Raises ``WireError`` for any malformed input.

    A reply with TC=1 may be cut anywhere after its question (RFC 2181 §9):
    the records read so far are kept and the rest is dropped.
    """
    try:
        return _parse(data)
    except WireError:
        raise
    except (IndexError, ValueError, struct.error, OSError) as exc:  # pragma: no cover - safety net
        raise WireError(f"malformed message: {type(exc).__name__}") from None


def _parse(data: bytes) -> Message:
    if len(data) < 12:
        raise WireError("shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data, 0)
    # RFC 9619: a message carries at most one question.
    if qdcount > 1:
        raise WireError("more than one question")
    names: dict[int, tuple[str, int]] = {}
    pos = 12
    question = None
    if qdcount:
        qname, pos = _read_name(data, pos, names)
        if pos + 4 > len(data):
            raise WireError("question runs past the end")
        qtype, _ = _QUESTION_TAIL.unpack_from(data, pos)
        pos += 4
        question = Question(qname, qtype)
    tc = bool(flags & _FLAG_TC)
    answers: list[Record] = []
    authority: list[Record] = []
    opt: tuple[int, tuple[tuple[int, str], ...]] | None = None
    try:
        opt = _read_sections(data, pos, (ancount, nscount, arcount), (answers, authority), names)
    except WireError:
        if not tc:
            raise
    rcode = flags & 0xF
    ede: tuple[tuple[int, str], ...] = ()
    if opt is not None:
        rcode |= opt[0] << 4
        ede = opt[1]
    return Message(
        qid,
        bool(flags & _FLAG_QR),
        (flags >> 11) & 0xF,
        bool(flags & _FLAG_AA),
        tc,
        bool(flags & _FLAG_RD),
        bool(flags & _FLAG_RA),
        bool(flags & _FLAG_AD),
        bool(flags & _FLAG_CD),
        rcode,
        question,
        tuple(answers),
        tuple(authority),
        ede,
        opt is not None,
    )


def _read_name(data: bytes, offset: int, names: dict[int, tuple[str, int]]) -> tuple[str, int]:
    """(text, offset after the name).  ``names`` caches text by offset: answer
    owners are usually one pointer back to the question."""
    labels: list[bytes] = []
    suffix = ""
    wire_len = 0
    pos = offset
    ceiling = offset  # each pointer must point before the previous one
    after = -1
    limit = len(data)
    while True:
        if pos >= limit:
            raise WireError("name runs past the end")
        n = data[pos]
        if n == 0:
            wire_len += 1
            pos += 1
            break
        if n >= 0xC0:
            if pos + 1 >= limit:
                raise WireError("compression pointer runs past the end")
            target = ((n & 0x3F) << 8) | data[pos + 1]
            if after < 0:
                after = pos + 2
            if target >= ceiling:
                raise WireError("compression pointer does not point backwards")
            cached = names.get(target)
            if cached is not None:
                suffix, suffix_len = cached
                wire_len += suffix_len
                break
            ceiling = pos = target
            continue
        if n > 63:
            raise WireError("reserved label type")
        start = pos + 1
        pos = start + n
        if pos > limit:
            raise WireError("label runs past the end")
        wire_len += n + 1
        labels.append(data[start:pos])
    if wire_len > 255:
        raise WireError("name longer than 255 octets")
    if labels:
        raw = b".".join(labels).lower()
        # Fast path: every byte plain and no dot inside a label.
        if raw.translate(None, _PLAIN_OR_DOT) or raw.count(b".") != len(labels) - 1:
            text = ".".join(_escape(label.lower()) for label in labels)
        else:
            text = raw.decode("ascii")
        if suffix and suffix != ".":
            text = text + "." + suffix
    else:
        text = suffix or "."
    names[offset] = (text, wire_len)
    return text, (after if after >= 0 else pos)


def _escape(label: bytes) -> str:
    out = []
    for c in label:
        if c in _SPECIAL:
            out.append("\\" + chr(c))
        elif 0x20 < c < 0x7F:
            out.append(chr(c))
        else:
            out.append(f"\\{c:03d}")
    return "".join(out)


def _read_sections(
    data: bytes,
    pos: int,
    counts: tuple[int, int, int],
    out: tuple[list[Record], list[Record]],
    names: dict[int, tuple[str, int]],
) -> tuple[int, tuple[tuple[int, str], ...]] | None:
    """Read the answer, authority and additional sections (``counts`` records each; one
    record format in all three, RFC 1035 §4.1.3) into ``out`` (answers, authority), and
    return the OPT record's (extended RCODE bits, EDE list); other additional records are
    skipped.  One loop for the three: a parse costs one call, not one a record."""
    ancount, nscount, arcount = counts
    answers, authority = out
    first_additional = ancount + nscount
    limit = len(data)
    found: tuple[int, tuple[tuple[int, str], ...]] | None = None
    for index in range(first_additional + arcount):
        owner, pos = _read_name(data, pos, names)
        if pos + 10 > limit:
            raise WireError("record header runs past the end")
        rrtype, rrclass, ttl, rdlength = _RR_FIXED.unpack_from(data, pos)
        pos += 10
        end = pos + rdlength
        if end > limit:
            raise WireError("record data runs past the end")
        if index >= first_additional:
            # RFC 6891 §6.1.1: more than one OPT is a FORMERR; we read the first.
            if rrtype == 41 and found is None:
                found = (ttl >> 24, _read_ede(data, pos, end))
        elif rrclass == _CLASS_IN:
            if ttl > _TTL_MAX:
                ttl = 0  # RFC 2181 §8: a TTL with the top bit set is treated as zero
            record = Record(owner, rrtype, ttl, _read_rdata(data, pos, end, rrtype, names))
            (answers if index < ancount else authority).append(record)
        # Records of another class (CH, HS, ...) answer no question we ask, and their
        # RDATA formats differ from IN's (RFC 1035 §3.2.4): skipped unread.
        pos = end
    return found


def _read_rdata(data: bytes, pos: int, end: int, rrtype: int, names: dict[int, tuple[str, int]]) -> RData:
    size = end - pos
    if rrtype == 1:
        if size != 4:
            raise WireError("A record is not 4 octets")
        return socket.inet_ntop(socket.AF_INET, data[pos:end])
    if rrtype == 28:
        if size != 16:
            raise WireError("AAAA record is not 16 octets")
        return socket.inet_ntop(socket.AF_INET6, data[pos:end])
    if rrtype in (5, 2, 39, 12):  # CNAME, NS, DNAME, PTR
        target, after = _read_name(data, pos, names)
        _expect_end(after, end)
        return target
    if rrtype == 15:
        if size < 3:
            raise WireError("MX record too short")
        exchange, after = _read_name(data, pos + 2, names)
        _expect_end(after, end)
        return MxData(_U16.unpack_from(data, pos)[0], exchange)
    if rrtype == 16:
        strings = []
        while pos < end:
            n = data[pos]
            pos += 1 + n
            if pos > end:
                raise WireError("TXT character-string runs past its record")
            strings.append(data[pos - n : pos])
        return tuple(strings)
    if rrtype == 52:
        if size < 3:
            raise WireError("TLSA record too short")
        return TlsaData(data[pos], data[pos + 1], data[pos + 2], data[pos + 3 : end])
    if rrtype == 6:
        mname, after = _read_name(data, pos, names)
        rname, after = _read_name(data, after, names)
        if after + 20 != end:
            raise WireError("SOA record has the wrong length")
        return SoaData(mname, rname, *_SOA_TAIL.unpack_from(data, after))
    return data[pos:end]


def _expect_end(after: int, end: int) -> None:
    if after != end:
        raise WireError("record data length does not match its contents")


def _read_ede(data: bytes, pos: int, end: int) -> tuple[tuple[int, str], ...]:
    out = []
    while pos < end:
        if pos + 4 > end:
            raise WireError("EDNS option header runs past the OPT record")
        code, length = struct.unpack_from("!HH", data, pos)
        pos += 4
        if pos + length > end:
            raise WireError("EDNS option runs past the OPT record")
        # RFC 8914 §2: INFO-CODE then optional EXTRA-TEXT; a shorter option is ignored.
        if code == _OPTION_EDE and length >= 2:
            info = _U16.unpack_from(data, pos)[0]
            out.append((info, _sanitise(data[pos + 2 : pos + length])))
        pos += length
    return tuple(out)


def _sanitise(raw: bytes) -> str:
    """RFC 8914 §2: EXTRA-TEXT is UTF-8 that MAY end in NUL; it is untrusted,
    so control characters are escaped and the length is bounded (``bound_text``).
    The NULs that end the whole text are dropped before the cut: a NUL followed by
    more text, even past the part kept, is text."""
    return bound_text(raw.rstrip(b"\x00"), EDE_TEXT_LIMIT)
