"""The lean DNS codec against dnspython: case tables of real replies, a
differential property over random messages, and the fuzz invariant."""

# dnspython's rdata constructors carry no annotations.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import ipaddress
import struct
from typing import Any, cast

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.DNAME
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TLSA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.peertext import bound_text
from probes.dns.classify import classify
from probes.dns.message import (
    Message,
    MxData,
    Record,
    RRType,
    SoaData,
    TlsaData,
    WireError,
    rcode_name,
    rrtype_code,
    rrtype_name,
)
from probes.dns.wire import EDE_TEXT_LIMIT, build_query, encode_name, name_text, parse_response

IN = dns.rdataclass.IN
T = dns.rdatatype.RdataType


def ede_option(code: int, text: str | None = None) -> dns.edns.EDEOption:
    # dnspython types the code as EDECode but accepts any 16-bit value.
    return dns.edns.EDEOption(cast(dns.edns.EDECode, code), text)


def reply_to(qname: str, qtype: str, *, edns: bool = True) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype, use_edns=0 if edns else False)
    return dns.message.make_response(query)


def with_answer(qname: str, qtype: str, *rrsets: tuple[str, str, list[str]]) -> bytes:
    reply = reply_to(qname, qtype)
    for owner, rtype, texts in rrsets:
        reply.answer.append(dns.rrset.from_text(owner, 300, "IN", rtype, *texts))
    return reply.to_wire()


# ------------------------------------------------------------- build_query


def test_query_is_what_dnspython_reads() -> None:
    wire = build_query(0xBEEF, "MX.Example.org.", RRType.MX)
    query = dns.message.from_wire(wire)
    assert query.id == 0xBEEF
    assert query.flags & dns.flags.RD and query.flags & dns.flags.AD
    assert not query.flags & dns.flags.CD and not query.flags & dns.flags.QR
    assert query.edns == 0 and query.payload == 1232 and not query.ednsflags & dns.flags.DO
    assert query.question[0].name == dns.name.from_text("mx.example.org.")
    assert query.question[0].rdtype == dns.rdatatype.MX


def test_query_cd_and_no_ad() -> None:
    query = dns.message.from_wire(build_query(1, "a.test", RRType.TLSA, cd=True, ad=False))
    assert query.flags & dns.flags.CD and not query.flags & dns.flags.AD


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        pytest.param(".", b"\x00", id="root"),
        pytest.param("a", b"\x01a\x00", id="single-label"),
        pytest.param("a.b.", b"\x01a\x01b\x00", id="trailing-dot"),
        pytest.param("_25._tcp.mx.test", b"\x03_25\x04_tcp\x02mx\x04test\x00", id="underscore-labels"),
        pytest.param("x" * 63 + ".test", bytes([63]) + b"x" * 63 + b"\x04test\x00", id="63-octet-label"),
    ],
)
def test_encode_name_accepts(name: str, wire: bytes) -> None:
    assert encode_name(name) == wire


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a..b", id="empty-label"),
        pytest.param(".a", id="leading-dot"),
        pytest.param("x" * 64 + ".test", id="64-octet-label"),
        pytest.param(".".join(["abcdefg"] * 32), id="name-over-255"),
        pytest.param("bücher.de", id="u-label"),
        pytest.param("a b.test", id="space"),
        pytest.param("a\\.b.test", id="backslash"),
    ],
)
def test_encode_name_rejects(name: str) -> None:
    with pytest.raises(WireError):
        build_query(1, name, RRType.A)


def test_names_and_codes() -> None:
    assert name_text("Mail.EXAMPLE.com.") == "mail.example.com"
    assert name_text(".") == "."
    assert rrtype_code("tlsa") == 52 and rrtype_code("TYPE65") == 65
    assert rrtype_name(52) == "TLSA" and rrtype_name(65) == "TYPE65"
    assert rcode_name(3) == "NXDOMAIN" and rcode_name(23) == "RCODE23"
    with pytest.raises(WireError):
        rrtype_code("BOGUS")
    with pytest.raises(WireError):
        build_query(70000, "a.test", RRType.A)


# ------------------------------------------------------- replies, by case

TLSA_HEX = "d2abde240d7cd3ee6b4b28c54df034b97983a1d16e8a410e4561cb106618e971"

CASES = [
    pytest.param(
        with_answer("a.test.", "A", ("a.test.", "A", ["192.0.2.1", "192.0.2.2"])),
        [Record("a.test", 1, 300, "192.0.2.1"), Record("a.test", 1, 300, "192.0.2.2")],
        id="A",
    ),
    pytest.param(
        with_answer("a.test.", "AAAA", ("a.test.", "AAAA", ["2001:db8::1"])),
        [Record("a.test", 28, 300, "2001:db8::1")],
        id="AAAA",
    ),
    pytest.param(
        with_answer(
            "www.test.",
            "A",
            ("www.test.", "CNAME", ["Web.Other.test."]),
            ("web.other.test.", "A", ["192.0.2.9"]),
        ),
        [Record("www.test", 5, 300, "web.other.test"), Record("web.other.test", 1, 300, "192.0.2.9")],
        id="CNAME-then-A-lowercased",
    ),
    pytest.param(
        with_answer("test.", "NS", ("test.", "NS", ["ns1.test."])),
        [Record("test", 2, 300, "ns1.test")],
        id="NS",
    ),
    pytest.param(
        with_answer("x.old.test.", "A", ("old.test.", "DNAME", ["new.test."])),
        [Record("old.test", 39, 300, "new.test")],
        id="DNAME",
    ),
    pytest.param(
        with_answer("d.test.", "MX", ("d.test.", "MX", ["10 mx1.d.test.", "20 mx2.d.test."])),
        [
            Record("d.test", 15, 300, MxData(10, "mx1.d.test")),
            Record("d.test", 15, 300, MxData(20, "mx2.d.test")),
        ],
        id="MX-compressed",
    ),
    pytest.param(
        with_answer("d.test.", "MX", ("d.test.", "MX", ["0 ."])),
        [Record("d.test", 15, 300, MxData(0, "."))],
        id="null-MX-root-exchange",
    ),
    pytest.param(
        with_answer("_mta-sts.d.test.", "TXT", ("_mta-sts.d.test.", "TXT", ['"v=STSv1; " "id=1"'])),
        [Record("_mta-sts.d.test", 16, 300, (b"v=STSv1; ", b"id=1"))],
        id="TXT-two-strings",
    ),
    pytest.param(
        with_answer("t.test.", "TXT", ("t.test.", "TXT", ['"\\255\\000"', '""'])),
        [Record("t.test", 16, 300, (b"\xff\x00",)), Record("t.test", 16, 300, (b"",))],
        id="TXT-binary-and-empty",
    ),
    pytest.param(
        with_answer("_25._tcp.mx.test.", "TLSA", ("_25._tcp.mx.test.", "TLSA", [f"3 1 1 {TLSA_HEX}"])),
        [Record("_25._tcp.mx.test", 52, 300, TlsaData(3, 1, 1, bytes.fromhex(TLSA_HEX)))],
        id="TLSA",
    ),
    pytest.param(
        with_answer("test.", "SOA", ("test.", "SOA", ["ns.test. host\\.master.test. 7 3600 600 86400 60"])),
        [Record("test", 6, 300, SoaData("ns.test", "host\\.master.test", 7, 3600, 600, 86400, 60))],
        id="SOA-escaped-dot",
    ),
    pytest.param(
        with_answer("c.test.", "CAA", ("c.test.", "CAA", ['0 issue "ca.test"'])),
        [Record("c.test", 257, 300, b"\x00\x05issueca.test")],
        id="unknown-type-raw",
    ),
    pytest.param(
        with_answer("\\065\\(.test.", "A", ("\\065\\(.test.", "A", ["192.0.2.1"])),
        [Record("a\\(.test", 1, 300, "192.0.2.1")],
        id="special-label-escaped",
    ),
    pytest.param(
        with_answer("\\200x.test.", "A", ("\\200x.test.", "A", ["192.0.2.1"])),
        [Record("\\200x.test", 1, 300, "192.0.2.1")],
        id="binary-label-escaped",
    ),
]


@pytest.mark.parametrize(("wire", "answers"), CASES)
def test_answers(wire: bytes, answers: list[Record]) -> None:
    message = parse_response(wire)
    assert message.qr and message.rcode == 0 and not message.tc
    # dnspython shuffles the records of an RRset on the wire
    assert sorted(message.answers, key=repr) == sorted(answers, key=repr)


def test_nxdomain_with_soa_in_authority_and_flags() -> None:
    reply = reply_to("nope.test.", "MX")
    reply.set_rcode(dns.rcode.NXDOMAIN)
    reply.flags |= dns.flags.AD | dns.flags.RA | dns.flags.AA | dns.flags.CD
    reply.authority.append(dns.rrset.from_text("test.", 60, "IN", "SOA", "ns.test. h.test. 1 2 3 4 5"))
    message = parse_response(reply.to_wire())
    assert (message.rcode, message.ad, message.ra, message.aa, message.cd) == (3, True, True, True, True)
    assert message.question is not None and message.question.name == "nope.test"
    assert message.answers == ()
    assert message.authority == (Record("test", 6, 60, SoaData("ns.test", "h.test", 1, 2, 3, 4, 5)),)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param([ede_option(6, "validation failure")], ((6, "validation failure"),), id="bogus"),
        pytest.param([ede_option(9)], ((9, ""),), id="no-text"),
        pytest.param([ede_option(6, "a"), ede_option(22, "b")], ((6, "a"), (22, "b")), id="two-codes"),
        pytest.param([ede_option(6, "bad\x1b[31m\n")], ((6, "bad\\x1b[31m\\x0a"),), id="controls"),
        pytest.param([ede_option(6, "x" * 1000)], ((6, "x" * (EDE_TEXT_LIMIT - 1) + "…"),), id="long-text"),
        pytest.param(
            [dns.edns.GenericOption(dns.edns.OptionType.EDE, b"\x00\x06oops\x00")],
            ((6, "oops"),),
            id="nul-terminated",
        ),
        pytest.param(
            [dns.edns.GenericOption(dns.edns.OptionType.EDE, b"\x00\x06\xff")],
            ((6, "\ufffd"),),
            id="bad-utf8",
        ),
        pytest.param(
            [dns.edns.GenericOption(dns.edns.OptionType.EDE, b"\x00")], (), id="short-option-ignored"
        ),
        pytest.param([dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")], (), id="cookie-only"),
    ],
)
def test_extended_dns_errors(options: list[dns.edns.Option], expected: tuple[tuple[int, str], ...]) -> None:
    reply = reply_to("x.test.", "A")
    reply.set_rcode(dns.rcode.SERVFAIL)
    reply.use_edns(0, options=options)
    message = parse_response(reply.to_wire())
    assert message.rcode == 2 and message.edns and message.ede == expected


def test_extended_rcode() -> None:
    reply = reply_to("x.test.", "A")
    reply.set_rcode(dns.rcode.BADVERS)  # BADVERS lives in the OPT record's upper bits
    message = parse_response(reply.to_wire())
    assert message.rcode == 16 and rcode_name(message.rcode) == "BADVERS"


def test_reply_without_edns() -> None:
    message = parse_response(reply_to("x.test.", "A", edns=False).to_wire())
    assert not message.edns and message.ede == ()


def test_truncated_reply_keeps_what_was_read() -> None:
    reply = reply_to("big.test.", "TXT")
    reply.answer.append(
        dns.rrset.from_text("big.test.", 5, "IN", "TXT", *[f'"{i:03d}{"x" * 200}"' for i in range(9)])
    )
    wire = bytearray(reply.to_wire(max_size=65535))
    wire[2] |= 0x02  # TC
    cut = parse_response(bytes(wire[:700]))
    assert cut.tc and cut.question is not None and cut.question.name == "big.test"
    assert 0 < len(cut.answers) < 9
    wire[2] &= ~0x02
    with pytest.raises(WireError):
        parse_response(bytes(wire[:700]))


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x00" * 11, id="short-header"),
        pytest.param(
            struct.pack("!HHHHHH", 1, 0x8000, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01" * 2, id="two-questions"
        ),
        pytest.param(
            struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01", id="self-pointer"
        ),
        pytest.param(
            struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\xc0\x20\x00\x01\x00\x01", id="forward-pointer"
        ),
        pytest.param(
            struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\x40abc\x00\x00\x01\x00\x01", id="label-type-01"
        ),
        pytest.param(struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\x05ab", id="label-past-end"),
        pytest.param(struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\x00\x00", id="question-past-end"),
        pytest.param(
            struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0)
            + b"\x3f"
            + b"a" * 63
            + b"\x3f"
            + b"a" * 63
            + b"\x3f"
            + b"a" * 63
            + b"\x3f"
            + b"a" * 63
            + b"\x00\x00\x01\x00\x01",
            id="name-256-octets",
        ),
        pytest.param(
            struct.pack("!HHHHHH", 1, 0x8000, 0, 1, 0, 0)
            + b"\x00"
            + struct.pack("!HHIH", 1, 1, 0, 5)
            + b"\x01" * 5,
            id="A-wrong-length",
        ),
        pytest.param(
            struct.pack("!HHHHHH", 1, 0x8000, 0, 1, 0, 0)
            + b"\x00"
            + struct.pack("!HHIH", 16, 1, 0, 3)
            + b"\x05ab",
            id="TXT-string-past-record",
        ),
        pytest.param(
            struct.pack("!HHHHHH", 1, 0x8000, 0, 1, 0, 0)
            + b"\x00"
            + struct.pack("!HHIH", 5, 1, 0, 4)
            + b"\x01a\x00\x00",
            id="CNAME-trailing-bytes",
        ),
        pytest.param(
            struct.pack("!HHHHHH", 1, 0x8000, 0, 0, 0, 1)
            + b"\x00"
            + struct.pack("!HHIH", 41, 1232, 0, 4)
            + b"\x00\x0f\x00\x09",
            id="EDNS-option-past-OPT",
        ),
        pytest.param(struct.pack("!HHHHHH", 1, 0x8000, 0, 1, 0, 0), id="missing-answer"),
    ],
)
def test_malformed_replies(wire: bytes) -> None:
    with pytest.raises(WireError):
        parse_response(wire)


def test_pointer_chain_backwards_is_followed() -> None:
    # question "a.test" at 12; answer owner "x" + pointer to 12, then a record naming a pointer to that.
    reply = reply_to("a.test.", "A")
    reply.answer.append(dns.rrset.from_text("x.a.test.", 1, "IN", "CNAME", "y.x.a.test."))
    message = parse_response(reply.to_wire())
    assert message.answers == (Record("x.a.test", 5, 1, "y.x.a.test"),)


# ------------------------------------- hand-built replies: TTLs and classes

#: Header of a reply to one question, RD RA set; the counts are filled per test.
_QUESTION = b"\x01a\x04test\x00" + struct.pack("!HH", 1, 1)  # a.test A IN, at offset 12


def hand_reply(answers: list[bytes], *, authority: tuple[bytes, ...] = ()) -> bytes:
    """A NOERROR reply to "a.test A" with the given records (wire form) in order."""
    header = struct.pack("!HHHHHH", 0x1234, 0x8180, 1, len(answers), len(authority), 0)
    return header + _QUESTION + b"".join(answers) + b"".join(authority)


def hand_record(rrtype: int, rrclass: int, ttl: int, rdata: bytes, *, owner: bytes = b"\xc0\x0c") -> bytes:
    """One resource record; the owner defaults to a pointer to the question name."""
    return owner + struct.pack("!HHIH", rrtype, rrclass, ttl, len(rdata)) + rdata


@pytest.mark.parametrize(
    ("ttl", "read"),
    [
        (0, 0),
        (300, 300),
        (0x7FFFFFFF, 0x7FFFFFFF),
        (0x80000000, 0),
        (3222011920, 0),  # the raw value seen in issue #13
        (0xFFFFFFFF, 0),
    ],
)
def test_ttl_with_top_bit_set_reads_as_zero(ttl: int, read: int) -> None:
    """RFC 2181 §8: a TTL with the most significant bit set is treated as zero."""
    wire = hand_reply(
        [hand_record(1, 1, ttl, bytes([192, 0, 2, 1]))],
        authority=(hand_record(6, 1, ttl, b"\x00\x00" + struct.pack("!IIIII", 1, 2, 3, 4, 5)),),
    )
    message = parse_response(wire)
    assert message.answers == (Record("a.test", 1, read, "192.0.2.1"),)
    assert message.authority == (Record("a.test", 6, read, SoaData(".", ".", 1, 2, 3, 4, 5)),)


def test_records_of_another_class_are_skipped() -> None:
    """A CHAOS A record (2-octet domain + 16-bit address: 6 octets here) and a HESIOD TXT beside
    the IN answer: once a wire error for the whole reply, now skipped record by record."""
    chaos_a = hand_record(1, 3, 60, b"\x00\x00\x01\x02", owner=b"\x07version\x04bind\x00")
    wire = hand_reply(
        [
            chaos_a,
            hand_record(1, 1, 60, bytes([192, 0, 2, 7])),
            hand_record(16, 4, 60, b"\x03abc"),
            hand_record(1, 255, 60, b""),  # class ANY with empty data
        ]
    )
    message = parse_response(wire)
    assert message.answers == (Record("a.test", 1, 60, "192.0.2.7"),)


def test_record_of_another_class_with_a_bad_name_inside_is_skipped_unread() -> None:
    """Skipped data is not parsed: a CH CNAME whose target runs past its record is no error."""
    bad_cname = hand_record(5, 3, 60, b"\x05ab")
    message = parse_response(hand_reply([bad_cname, hand_record(1, 1, 9, bytes([192, 0, 2, 8]))]))
    assert message.answers == (Record("a.test", 1, 9, "192.0.2.8"),)


_TTLS = st.integers(0, 2**32 - 1)


@given(st.lists(_TTLS, min_size=1, max_size=4))
def test_ttls_over_the_whole_32_bit_range_equal_dnspythons(ttls: list[int]) -> None:
    """Each record's TTL as our codec reads it, and the RRset TTL (the smallest) as
    ``classify`` reports it, equal what dnspython reads from the same bytes."""
    records = [hand_record(1, 1, ttl, bytes([192, 0, 2, i + 1])) for i, ttl in enumerate(ttls)]
    wire = hand_reply(records)
    ours = parse_response(wire)
    theirs = dns.message.from_wire(wire)
    assert [r.ttl for r in ours.answers] == [0 if t > 0x7FFFFFFF else t for t in ttls]
    (rrset,) = theirs.answer
    assert min(r.ttl for r in ours.answers) == rrset.ttl
    assert classify("a.test", "A", ours, validating=True).ttl == rrset.ttl


_FOREIGN_CLASSES = st.integers(0, 0xFFFF).filter(lambda c: c != 1)


@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=3),
    _FOREIGN_CLASSES,
    st.integers(0, 0xFFFF),
    st.binary(max_size=40),
    st.integers(0, 3),
)
def test_records_of_any_other_class_never_change_what_is_read(
    ttls: list[int], rrclass: int, rrtype: int, rdata: bytes, at: int
) -> None:
    """Inserting one record of another class, any type and any data, anywhere in the
    answer section leaves the parsed reply exactly as it was without it."""
    records = [hand_record(1, 1, ttl, bytes([192, 0, 2, i + 1])) for i, ttl in enumerate(ttls)]
    foreign = hand_record(rrtype, rrclass, 0, rdata, owner=b"\x03odd\x00")
    position = min(at, len(records))
    with_foreign = parse_response(hand_reply([*records[:position], foreign, *records[position:]]))
    assert with_foreign == parse_response(hand_reply(records))


# --------------------------------------------- differential and fuzz properties

labels = st.binary(min_size=1, max_size=12)
names = st.lists(labels, min_size=0, max_size=4).map(lambda ls: dns.name.Name([*ls, b""]))


@st.composite
def rdatas(
    draw: st.DrawFn, rdtype: dns.rdatatype.RdataType, names: st.SearchStrategy[dns.name.Name] = names
) -> dns.rdata.Rdata:
    t = T
    if rdtype == t.A:
        return dns.rdtypes.IN.A.A(IN, rdtype, str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))))
    if rdtype == t.AAAA:
        return dns.rdtypes.IN.AAAA.AAAA(
            IN, rdtype, str(ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1))))
        )
    if rdtype == t.MX:
        return dns.rdtypes.ANY.MX.MX(IN, rdtype, draw(st.integers(0, 65535)), draw(names))
    if rdtype == t.TXT:
        strings = draw(st.lists(st.binary(max_size=40), min_size=1, max_size=3))
        return dns.rdtypes.ANY.TXT.TXT(IN, rdtype, strings)
    if rdtype == t.TLSA:
        u, s, m = draw(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)))
        size = {1: 32, 2: 64}.get(m)  # dnspython insists on the digest length for SHA-256/512
        association = draw(st.binary(min_size=size or 1, max_size=size or 64))
        return dns.rdtypes.ANY.TLSA.TLSA(IN, rdtype, u, s, m, association)
    if rdtype == t.SOA:
        nums = draw(st.lists(st.integers(0, 2**32 - 1), min_size=5, max_size=5))
        return dns.rdtypes.ANY.SOA.SOA(IN, rdtype, draw(names), draw(names), *nums)
    cls: dict[T, Any] = {
        t.CNAME: dns.rdtypes.ANY.CNAME.CNAME,
        t.NS: dns.rdtypes.ANY.NS.NS,
        t.DNAME: dns.rdtypes.ANY.DNAME.DNAME,
        t.PTR: dns.rdtypes.ANY.PTR.PTR,
    }
    return cast(dns.rdata.Rdata, cls[rdtype](IN, rdtype, draw(names)))


RDTYPES = [T.A, T.AAAA, T.MX, T.TXT, T.TLSA, T.SOA, T.CNAME, T.NS, T.DNAME, T.PTR]

#: RFC 2181 §8 TTLs: the bounds of both halves of the 32-bit range, and anything between.
TTLS = st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1)
#: EXTRA-TEXT as a resolver may send it: any text (controls, NULs, non-ASCII), long or absent.
#: Characters UTF-8 can carry: a lone surrogate is no text a resolver can send (and dnspython
#: cannot encode it to build the reply).
_CHARACTER = st.characters(codec="utf-8")
EDE_TEXTS = (
    st.none()
    | st.text(max_size=20)
    | st.builds(lambda c, n, end: c * n + end, _CHARACTER, st.integers(250, 300), st.text(max_size=3))
)


def related(qname: dns.name.Name) -> st.SearchStrategy[dns.name.Name]:
    """Names sharing the question's suffix (so dnspython compresses them to pointers), or any."""
    prefixes = st.lists(labels, max_size=2).map(lambda ls: dns.name.Name([*ls, *qname.labels]))
    return prefixes | names


@st.composite
def replies(draw: st.DrawFn) -> bytes:
    qname = draw(names)
    query = dns.message.make_query(
        qname, draw(st.sampled_from(RDTYPES)), use_edns=draw(st.sampled_from([0, False]))
    )
    reply = dns.message.make_response(query)
    reply.id = draw(st.integers(0, 65535))
    reply.set_opcode(dns.opcode.Opcode(draw(st.sampled_from([0, 1, 2, 4]))))  # not UPDATE: other sections
    for flag in (dns.flags.AA, dns.flags.AD, dns.flags.CD, dns.flags.RA, dns.flags.TC, dns.flags.RD):
        if draw(st.booleans()):
            reply.flags |= flag
    rcodes = [0, 2, 3, 5, 16] if reply.edns >= 0 else [0, 2, 3, 5]
    reply.set_rcode(dns.rcode.Rcode(draw(st.sampled_from(rcodes))))
    if reply.edns >= 0 and draw(st.booleans()):
        options: list[dns.edns.Option] = [
            ede_option(draw(st.integers(0, 65535)), draw(EDE_TEXTS)) for _ in range(draw(st.integers(1, 3)))
        ]
        if draw(st.booleans()):  # another option before them is skipped by its length
            options.insert(
                0, dns.edns.GenericOption(dns.edns.OptionType.COOKIE, draw(st.binary(min_size=8, max_size=8)))
            )
        reply.use_edns(0, options=options)
    for section in (reply.answer, reply.authority):
        for _ in range(draw(st.integers(0, 3))):
            owner = draw(st.sampled_from([qname]) | related(qname))
            rdtype = draw(st.sampled_from(RDTYPES))
            rrset = reply.find_rrset(section, owner, IN, rdtype, create=True)
            for _ in range(draw(st.integers(1, 3))):
                rrset.add(draw(rdatas(rdtype, related(qname))), draw(TTLS))
    return reply.to_wire(want_shuffle=False, max_size=65535)  # long EDE texts exceed the 1232 payload


def _comparable(rdtype: int, data: object) -> object:
    if rdtype == 28:
        return ipaddress.IPv6Address(str(data))
    return data


def _expected(wire: bytes) -> tuple[Any, ...]:
    """What our codec must say, read from dnspython's own parse of the bytes."""
    return _expected_of(dns.message.from_wire(wire))


def _expected_of(m: dns.message.Message) -> tuple[Any, ...]:

    def text(name: dns.name.Name) -> str:
        return name.to_text(omit_final_dot=True).lower()

    def data(rd: Any) -> object:
        t = rd.rdtype
        if t in (1, 28):
            return _comparable(t, rd.address)
        if t == 15:
            return MxData(rd.preference, text(rd.exchange))
        if t == 16:
            return tuple(rd.strings)
        if t == 52:
            return TlsaData(rd.usage, rd.selector, rd.mtype, rd.cert)
        if t == 6:
            return SoaData(
                text(rd.mname), text(rd.rname), rd.serial, rd.refresh, rd.retry, rd.expire, rd.minimum
            )
        return text(rd.target)

    def section(rrsets: list[dns.rrset.RRset]) -> list[tuple[object, ...]]:
        return [(text(r.name), r.rdtype, r.ttl, data(rd)) for r in rrsets for rd in r]

    # EDE text is peer text: compared after the treatment every peer string gets (control
    # characters escaped, bounded: engine.peertext), which dnspython does not apply.
    ede = tuple(
        (o.code, bound_text((o.text or "").rstrip("\x00"), EDE_TEXT_LIMIT))
        for o in m.options
        if isinstance(o, dns.edns.EDEOption)
    )
    return (
        m.id, m.flags & 0x8000 != 0, m.flags & 0x20 != 0, m.flags & 0x10 != 0, m.flags & 0x400 != 0,
        m.rcode(), text(m.question[0].name), m.question[0].rdtype,
        section(m.answer), section(m.authority), ede, m.edns >= 0,
        m.opcode(), m.flags & 0x200 != 0, m.flags & 0x100 != 0, m.flags & 0x80 != 0,
    )  # fmt: skip


def _ours(message: Message) -> tuple[object, ...]:
    assert message.question is not None
    return (
        message.id, message.qr, message.ad, message.cd, message.aa,
        message.rcode, message.question.name, message.question.rrtype,
        [(r.name, r.rrtype, r.ttl, _comparable(r.rrtype, r.data)) for r in message.answers],
        [(r.name, r.rrtype, r.ttl, _comparable(r.rrtype, r.data)) for r in message.authority],
        tuple((code, text[: EDE_TEXT_LIMIT - 1]) for code, text in message.ede), message.edns,
        message.opcode, message.tc, message.rd, message.ra,
    )  # fmt: skip


def _trim_ede(expected: tuple[Any, ...]) -> tuple[Any, ...]:
    # A cut text ends in the truncation mark (engine.peertext): compare what precedes it.
    ede = tuple((code, text[: EDE_TEXT_LIMIT - 1]) for code, text in expected[10])
    return (*expected[:10], ede, *expected[11:])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(replies())
def test_differential_against_dnspython(wire: bytes) -> None:
    assert _ours(parse_response(wire)) == _trim_ede(_expected(wire))


def _parse_or_wire_error(data: bytes) -> None:
    try:
        result = parse_response(data)
    except WireError:
        return
    assert isinstance(result, Message)


@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _parse_or_wire_error(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(replies(), st.lists(st.integers(0, 2**20), min_size=1, max_size=8), st.integers(0, 600))
def test_fuzz_bit_flipped_and_cut_replies(wire: bytes, flips: list[int], cut: int) -> None:
    mutated = bytearray(wire)
    for flip in flips:
        bit = flip % (len(mutated) * 8)
        mutated[bit // 8] ^= 1 << (bit % 8)
    _parse_or_wire_error(bytes(mutated))
    _parse_or_wire_error(bytes(mutated[: min(cut, len(mutated))]))


def _within_what_both_read(m: dns.message.Message) -> bool:
    """One question and only IN records of the types both codecs decode (ours skips another
    class, and reads only these types' data)."""
    records = [r for section in (m.answer, m.authority) for r in section]
    return len(m.question) == 1 and all(r.rdclass == IN and r.rdtype in RDTYPES for r in records)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(replies(), st.lists(st.integers(0, 2**20), min_size=1, max_size=3))
def test_bit_flipped_replies_both_codecs_accept_read_the_same(wire: bytes, flips: list[int]) -> None:
    """The fuzz with an oracle: whenever dnspython and our codec both accept a damaged reply,
    they read the same values (ids, flags, rcode, question, every record with its own TTL,
    RFC 2181 §8 applied to both)."""
    mutated = bytearray(wire)
    for flip in flips:
        bit = flip % (len(mutated) * 8)
        mutated[bit // 8] ^= 1 << (bit % 8)
    try:
        ours = parse_response(bytes(mutated))
    except WireError:
        return
    try:  # one record per RRset: dnspython would otherwise merge records and lower their TTLs
        theirs = dns.message.from_wire(bytes(mutated), one_rr_per_rrset=True)
    except Exception:  # dnspython refused it: there is no second reading to compare
        return
    if not _within_what_both_read(theirs):
        return
    expected = list(_trim_ede(_expected_of(theirs)))
    for index in (8, 9):  # RFC 2181 §8: a TTL with the top bit set reads as zero
        expected[index] = [(n, t, 0 if ttl > 0x7FFFFFFF else ttl, d) for n, t, ttl, d in expected[index]]
    assert _ours(ours) == tuple(expected)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(replies(), st.floats(0, 1))
def test_truncated_reply_cut_anywhere_after_its_question_keeps_a_prefix_of_the_records(
    wire: bytes, where: float
) -> None:
    """RFC 2181 §9: a TC=1 reply cut anywhere after its question is read, never refused, and
    what it holds is the full reply's records in order up to the cut: answers first, then
    authority; an OPT record cut short is not half-read."""
    tc = bytearray(wire)
    tc[2] |= 0x02
    full = parse_response(bytes(tc))
    qname = dns.message.from_wire(wire).question[0].name.to_wire()
    assert qname is not None  # a name written alone, without a compression table
    question_end = 12 + len(qname) + 4
    cut = parse_response(bytes(tc[: question_end + round(where * (len(tc) - question_end))]))
    assert (cut.id, cut.tc, cut.question) == (full.id, True, full.question)
    kept, records = [*cut.answers, *cut.authority], [*full.answers, *full.authority]
    assert kept == records[: len(kept)]
    assert len(cut.authority) == 0 or cut.answers == full.answers
    assert (cut.edns, cut.ede) in ((False, ()), (full.edns, full.ede))
