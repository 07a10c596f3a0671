"""The DNS codec at its edges: the exact query bytes, the boundaries of every range
``build_query`` and ``encode_name`` check, and which malformation a refused name or reply
was refused for (the reason of a refused name reaches the record: ``invalid-name: …``)."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import pytest

from probes.dns.message import MxData, Question, Record, RRType, SoaData, TlsaData, WireError
from probes.dns.wire import EDE_TEXT_LIMIT, EDNS_PAYLOAD, build_query, encode_name, parse_response

# ------------------------------------------------------------- build_query


def test_query_bytes_are_exactly_rfc_1035_with_one_opt_record() -> None:
    """Header (id, RD|AD, one question, one additional), the question, then the OPT record:
    root owner, TYPE 41, CLASS = payload, TTL 0 (extended RCODE, version 0, DO=0), no options.
    The name goes out as given: case is not folded on the wire."""
    wire = build_query(0x1234, "A.Test.", RRType.MX)
    assert wire == (
        bytes.fromhex("1234 0120 0001 0000 0000 0001")
        + b"\x01A\x04Test\x00"
        + bytes.fromhex("000f 0001")
        + bytes.fromhex("00 0029 04d0 00000000 0000")
    )
    assert EDNS_PAYLOAD == 0x04D0


@pytest.mark.parametrize(
    ("cd", "ad", "flags"),
    [
        (False, True, dns.flags.RD | dns.flags.AD),
        (True, True, dns.flags.RD | dns.flags.AD | dns.flags.CD),
        (False, False, dns.flags.RD),
        (True, False, dns.flags.RD | dns.flags.CD),
    ],
)
def test_query_header_flags_are_rd_and_only_the_bits_asked(cd: bool, ad: bool, flags: int) -> None:
    """No other header bit (QR, opcode, AA, TC, RA, Z, RCODE) is ever set, and the OPT record's
    TTL (extended RCODE, EDNS version, DO) is 0: dnspython reads the same query back."""
    query = dns.message.from_wire(build_query(7, "a.test", RRType.A, cd=cd, ad=ad))
    assert query.flags == flags
    assert (query.edns, query.ednsflags, query.payload, query.options) == (0, 0, EDNS_PAYLOAD, ())


@pytest.mark.parametrize(
    ("qid", "rrtype", "payload"),
    [
        pytest.param(0, RRType.A, EDNS_PAYLOAD, id="id-0"),
        pytest.param(0xFFFF, RRType.A, EDNS_PAYLOAD, id="id-65535"),
        pytest.param(1, 0, EDNS_PAYLOAD, id="type-0"),
        pytest.param(1, 0xFFFF, EDNS_PAYLOAD, id="type-65535"),
        pytest.param(1, RRType.A, 512, id="payload-512"),
        pytest.param(1, RRType.A, 0xFFFF, id="payload-65535"),
    ],
)
def test_query_ranges_accept_their_bounds(qid: int, rrtype: int, payload: int) -> None:
    query = dns.message.from_wire(build_query(qid, "a.test", rrtype, payload=payload))
    assert (query.id, query.question[0].rdtype, query.payload) == (qid, rrtype, payload)


@pytest.mark.parametrize(
    ("qid", "rrtype", "payload"),
    [
        pytest.param(-1, RRType.A, EDNS_PAYLOAD, id="id-negative"),
        pytest.param(0x10000, RRType.A, EDNS_PAYLOAD, id="id-65536"),
        pytest.param(1, -1, EDNS_PAYLOAD, id="type-negative"),
        pytest.param(1, 0x10000, EDNS_PAYLOAD, id="type-65536"),
        pytest.param(1, RRType.A, 511, id="payload-511"),
        pytest.param(1, RRType.A, 0x10000, id="payload-65536"),
    ],
)
def test_query_ranges_refuse_one_past_their_bounds(qid: int, rrtype: int, payload: int) -> None:
    """RFC 6891 §6.2.5: a payload below 512 is read as 512, so asking for less is a mistake."""
    with pytest.raises(WireError, match=r"^query id, type or payload out of range$"):
        build_query(qid, "a.test", rrtype, payload=payload)


# ------------------------------------------------------------- encode_name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param("", r"^empty name$", id="empty"),
        pytest.param("bücher.de", r"^name is not an A-label \(non-ASCII\)$", id="u-label"),
        pytest.param(
            "a b.test", r"^name holds a byte that is not a printable A-label character$", id="space"
        ),
        pytest.param(
            "a\\.b", r"^name holds a byte that is not a printable A-label character$", id="backslash"
        ),
        pytest.param("a..b", r"^label length 0 outside 1\.\.63$", id="empty-label"),
        pytest.param("x" * 64, r"^label length 64 outside 1\.\.63$", id="64-octet-label"),
        pytest.param(
            ".".join(["x" * 63] * 3 + ["x" * 62]), r"^name longer than 255 octets$", id="256-octets"
        ),
    ],
)
def test_refused_names_say_why(name: str, reason: str) -> None:
    """The reason is recorded (``Answer.detail`` = ``invalid-name: <reason>``)."""
    with pytest.raises(WireError, match=reason):
        encode_name(name)


def test_name_of_exactly_255_octets_is_accepted() -> None:
    """RFC 1035 §2.3.4: 255 octets is the largest name (three labels of 1 + 63 octets,
    one of 1 + 61, the root's 1)."""
    name = ".".join(["x" * 63] * 3 + ["x" * 61])
    wire = encode_name(name)
    assert len(wire) == 255
    assert dns.message.from_wire(build_query(1, name, RRType.A)).question[0].name.to_wire() == wire


def test_name_with_trailing_dot_or_not_is_the_same_name() -> None:
    assert encode_name("mx.test.") == encode_name("mx.test") == b"\x02mx\x04test\x00"
    assert encode_name(".") == b"\x00"


# ------------------------------------------------------ replies, hand-built

#: "a.test A IN" at offset 12; the name ends at 19, the question at 24.
QUESTION = b"\x01a\x04test\x00" + struct.pack("!HH", 1, 1)


def header(qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, *, flags: int = 0x8180) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, qd, an, ns, ar)


def rr(rrtype: int, rdata: bytes, *, owner: bytes = b"\xc0\x0c", rrclass: int = 1, ttl: int = 60) -> bytes:
    """One record; the owner defaults to a pointer to the question name."""
    return owner + struct.pack("!HHIH", rrtype, rrclass, ttl, len(rdata)) + rdata


def opt(options: bytes = b"", *, ttl: int = 0) -> bytes:
    return rr(41, options, owner=b"\x00", rrclass=1232, ttl=ttl)


def answer(*records: bytes, flags: int = 0x8180) -> bytes:
    return header(1, len(records), flags=flags) + QUESTION + b"".join(records)


SOA_TAIL = struct.pack("!IIIII", 1, 2, 3, 4, 5)
NAME_255 = b"".join(bytes([63]) + b"x" * 63 for _ in range(3)) + bytes([61]) + b"x" * 61 + b"\x00"

MALFORMED = [
    pytest.param(b"\x00" * 11, "shorter than a DNS header", id="11-octets"),
    pytest.param(header(2) + QUESTION * 2, "more than one question", id="two-questions"),
    pytest.param(header(1) + QUESTION[:-1], "question runs past the end", id="question-cut-by-1"),
    pytest.param(header(1) + b"\x01a", "name runs past the end", id="no-root-label"),
    pytest.param(header(1) + b"\x01a\xc0", "compression pointer runs past the end", id="half-pointer"),
    pytest.param(header(1) + b"\xc0\x0c", "compression pointer does not point backwards", id="self-pointer"),
    pytest.param(
        header(1) + b"\x01a\xc0\x0e" + QUESTION[-4:],
        "compression pointer does not point backwards",
        id="pointer-to-itself-after-a-label",
    ),
    pytest.param(header(1) + b"\x40abc\x00", "reserved label type", id="label-type-01"),
    pytest.param(header(1) + b"\x80abc\x00", "reserved label type", id="label-type-10"),
    pytest.param(header(1) + b"\x05ab", "label runs past the end", id="label-past-end"),
    pytest.param(
        header(1) + b"\x01x" + NAME_255 + b"\x00\x01\x00\x01", "name longer than 255 octets", id="256-octets"
    ),
    pytest.param(header(1, 1) + QUESTION + b"\xc0\x0c" + b"\x00" * 9, "record header runs past the end",
                 id="record-header-cut-by-1"),
    pytest.param(header(1, 1) + QUESTION + rr(1, b"\x01\x02\x03\x04")[:-1], "record data runs past the end",
                 id="record-data-cut-by-1"),
    pytest.param(answer(rr(1, b"\x01\x02\x03")), "A record is not 4 octets", id="A-3"),
    pytest.param(answer(rr(1, b"\x01\x02\x03\x04\x05")), "A record is not 4 octets", id="A-5"),
    pytest.param(answer(rr(28, b"\x00" * 15)), "AAAA record is not 16 octets", id="AAAA-15"),
    pytest.param(answer(rr(28, b"\x00" * 17)), "AAAA record is not 16 octets", id="AAAA-17"),
    pytest.param(answer(rr(15, b"\x00\x0a")), "MX record too short", id="MX-2"),
    pytest.param(answer(rr(15, b"\x00\x0a\x00\x00")), "record data length does not match its contents",
                 id="MX-trailing-octet"),
    pytest.param(answer(rr(15, b"\x00\x0a\x01")) + b"b\x00", "record data length does not match its contents",
                 id="MX-name-past-its-record"),
    pytest.param(answer(rr(5, b"\x01a\x00\x00")), "record data length does not match its contents",
                 id="CNAME-trailing-octet"),
    pytest.param(answer(rr(12, b"\x01a\x00\x00")), "record data length does not match its contents",
                 id="PTR-trailing-octet"),
    pytest.param(answer(rr(16, b"\x05ab")), "TXT character-string runs past its record",
                 id="TXT-string-past"),
    pytest.param(answer(rr(52, b"\x03\x01")), "TLSA record too short", id="TLSA-2"),
    pytest.param(answer(rr(6, b"\x00\x00" + SOA_TAIL[:-1])), "SOA record has the wrong length",
                 id="SOA-short"),
    pytest.param(answer(rr(6, b"\x00\x00" + SOA_TAIL + b"\x00")), "SOA record has the wrong length",
                 id="SOA-long"),
    pytest.param(header(1, 0, 1) + QUESTION + rr(1, b"\x01\x02\x03"), "A record is not 4 octets",
                 id="authority-read-like-answers"),
    pytest.param(header(1, 0, 0, 1) + QUESTION + b"\x00" + b"\x00" * 9, "record header runs past the end",
                 id="additional-header-cut-by-1"),
    pytest.param(header(1, 0, 0, 1) + QUESTION + opt(b"\x00\x0f\x00\x00")[:-1],
                 "record data runs past the end", id="additional-data-cut-by-1"),
    pytest.param(header(1, 0, 0, 1) + QUESTION + opt(b"\x00\x0f\x00"),
                 "EDNS option header runs past the OPT record", id="option-header-3-octets"),
    pytest.param(header(1, 0, 0, 1) + QUESTION + opt(b"\x00\x0f\x00\x03\x00\x06"),
                 "EDNS option runs past the OPT record", id="option-data-cut-by-1"),
]  # fmt: skip


@pytest.mark.parametrize(("wire", "reason"), MALFORMED)
def test_malformed_replies_are_refused_for_their_own_fault(wire: bytes, reason: str) -> None:
    """Each reply breaks one rule; the error names that rule, not a later symptom of it."""
    with pytest.raises(WireError) as refused:
        parse_response(wire)
    assert str(refused.value) == reason


ACCEPTED = [
    pytest.param(answer(rr(1, b"\xc0\x00\x02\x01")), [Record("a.test", 1, 60, "192.0.2.1")], id="A-4"),
    pytest.param(answer(rr(28, b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01")),
                 [Record("a.test", 28, 60, "2001:db8::1")], id="AAAA-16"),
    pytest.param(answer(rr(15, b"\x00\x0a\x00")), [Record("a.test", 15, 60, MxData(10, "."))],
                 id="MX-3-null"),
    pytest.param(answer(rr(15, b"\xff\xfe\xc0\x0c")), [Record("a.test", 15, 60, MxData(65534, "a.test"))],
                 id="MX-preference-16-bit"),
    pytest.param(answer(rr(52, b"\x03\x01\x01")), [Record("a.test", 52, 60, TlsaData(3, 1, 1, b""))],
                 id="TLSA-3-empty-association"),
    pytest.param(answer(rr(52, b"\x02\x00\x02\xab\xcd")),
                 [Record("a.test", 52, 60, TlsaData(2, 0, 2, b"\xab\xcd"))], id="TLSA-fields-in-order"),
    pytest.param(answer(rr(16, b"")), [Record("a.test", 16, 60, ())], id="TXT-no-strings"),
    pytest.param(answer(rr(16, b"\x00\x02ab\x01c")), [Record("a.test", 16, 60, (b"", b"ab", b"c"))],
                 id="TXT-empty-then-two"),
    pytest.param(answer(rr(12, b"\x03ptr\xc0\x0c")), [Record("a.test", 12, 60, "ptr.a.test")], id="PTR"),
    pytest.param(answer(rr(6, b"\xc0\x0e\xc0\x0c" + SOA_TAIL)),
                 [Record("a.test", 6, 60, SoaData("test", "a.test", 1, 2, 3, 4, 5))], id="SOA-compressed"),
    pytest.param(answer(rr(6, b"\x00\x00" + struct.pack("!IIIII", 2**32 - 1, 0, 2**31, 2**31 - 1, 7))),
                 [Record("a.test", 6, 60, SoaData(".", ".", 2**32 - 1, 0, 2**31, 2**31 - 1, 7))],
                 id="SOA-fields-unsigned-32-bit"),
    pytest.param(answer(rr(99, b"\x00\x01\x02")), [Record("a.test", 99, 60, b"\x00\x01\x02")],
                 id="unknown-raw"),
    pytest.param(answer(rr(1, b"\x7f\x00\x00\x01", owner=b"\xc0\x0e")), [Record("test", 1, 60, "127.0.0.1")],
                 id="pointer-to-the-question-suffix"),
    pytest.param(answer(rr(1, b"\x7f\x00\x00\x01", owner=b"\x01B\x01C\xc0\x0e")),
                 [Record("b.c.test", 1, 60, "127.0.0.1")], id="labels-then-pointer-case-folded"),
]  # fmt: skip


@pytest.mark.parametrize(("wire", "records"), ACCEPTED)
def test_well_formed_records_at_their_size_bounds(wire: bytes, records: list[Record]) -> None:
    message = parse_response(wire)
    assert list(message.answers) == records
    assert message.question == Question("a.test", 1)


@pytest.mark.parametrize(
    ("flags", "field", "value"),
    [
        (0x8000, "qr", True),
        (0x0400, "aa", True),
        (0x0200, "tc", True),
        (0x0100, "rd", True),
        (0x0080, "ra", True),
        (0x0020, "ad", True),
        (0x0010, "cd", True),
        (0x7800, "opcode", 15),
        (0x2000, "opcode", 4),
        (0x000F, "rcode", 15),
        (0x0005, "rcode", 5),
    ],
)
def test_each_header_bit_reads_as_its_own_field(flags: int, field: str, value: object) -> None:
    """RFC 1035 §4.1.1 and RFC 4035 §3.2 (AD, CD): one bit set, one field changed, every other zero."""
    message = parse_response(header(1, flags=flags) + QUESTION)
    expected: dict[str, object] = {f: False for f in ("qr", "aa", "tc", "rd", "ra", "ad", "cd")}
    expected |= {"opcode": 0, "rcode": 0, field: value}
    assert {f: getattr(message, f) for f in expected} == expected


@pytest.mark.parametrize(
    ("opt_ttl", "header_rcode", "rcode"),
    [
        pytest.param(0x01000000, 0, 16, id="BADVERS"),
        pytest.param(0xFF000000, 0xF, 0xFFF, id="all-12-bits"),
        pytest.param(0x00FF8000, 3, 3, id="version-and-DO-are-not-rcode"),
        pytest.param(0x00000000, 2, 2, id="header-only"),
    ],
)
def test_extended_rcode_is_the_opt_ttls_top_octet(opt_ttl: int, header_rcode: int, rcode: int) -> None:
    """RFC 6891 §6.1.3: EXTENDED-RCODE (the TTL's upper 8 bits) above the header's 4."""
    wire = header(1, 0, 0, 1, flags=0x8180 | header_rcode) + QUESTION + opt(ttl=opt_ttl)
    message = parse_response(wire)
    assert message.rcode == rcode and message.edns


def test_first_opt_record_wins_and_other_additional_records_are_skipped() -> None:
    """RFC 6891 §6.1.1: a second OPT is a FORMERR at the sender; we read the first and skip
    the rest unread, like glue (an A record) before it."""
    glue = rr(1, b"\x7f\x00\x00\x01", owner=b"\x02ns\xc0\x0c")
    first = opt(b"\x00\x0f\x00\x03\x00\x06x", ttl=0x01000000)
    second = opt(b"\x00\x0f\x00\x09\x00\x06", ttl=0x02000000)  # option runs past: never read
    wire = header(1, 0, 0, 3) + QUESTION + glue + first + second
    message = parse_response(wire)
    assert (message.rcode, message.ede, message.edns) == (16, ((6, "x"),), True)


def test_additional_section_without_opt_is_no_edns() -> None:
    glue = rr(1, b"\x7f\x00\x00\x01", owner=b"\x02ns\xc0\x0c")
    message = parse_response(header(1, 0, 0, 1) + QUESTION + glue)
    assert (message.edns, message.ede, message.rcode) == (False, (), 0)


@pytest.mark.parametrize(
    ("options", "ede"),
    [
        pytest.param(b"\x00\x0f\x00\x02\x00\x12", ((18, ""),), id="info-code-only"),
        pytest.param(b"\x00\x0f\x00\x02\xff\xff", ((65535, ""),), id="info-code-16-bit"),
        pytest.param(b"\x00\x0f\x00\x01\x00", (), id="1-octet-ignored"),
        pytest.param(b"\x00\x0f\x00\x00", (), id="empty-ignored"),
        pytest.param(b"\x00\x0e\x00\x02\x00\x06", (), id="other-option-code"),
        pytest.param(b"\x00\x0a\x00\x08" + b"c" * 8 + b"\x00\x0f\x00\x03\x00\x01z", ((1, "z"),),
                     id="after-a-cookie"),
        pytest.param(b"\x00\x0f\x00\x03\x00\x01a\x00\x0f\x00\x03\x00\x02b", ((1, "a"), (2, "b")),
                     id="two-in-order"),
        # the long option's data looks like EDE options: none of it may be read as one
        pytest.param(b"\xff\xfe\x9c\x40" + (b"\x00\x0f\x00\x02\x00\x63" * 6667)[:40000]
                     + b"\x00\x0f\x00\x02\x00\x07", ((7, ""),), id="after-an-option-of-40000-octets"),
    ],
)  # fmt: skip
def test_extended_dns_error_options(options: bytes, ede: tuple[tuple[int, str], ...]) -> None:
    """RFC 8914 §2: INFO-CODE (16 bits) then EXTRA-TEXT; other options are skipped by length."""
    message = parse_response(header(1, 0, 0, 1) + QUESTION + opt(options))
    assert message.ede == ede


# ----------------------------------------------------- names and compression

#: A 200-octet question name: three 63-octet labels and one of 6, at offset 12.
LONG = b"".join(bytes([63]) + bytes([0x61 + i]) * 63 for i in range(3)) + b"\x06suffix\x00"
LONG_TEXT = ".".join(chr(0x61 + i) * 63 for i in range(3)) + ".suffix"


def long_question_answer(owner: bytes) -> bytes:
    return header(1, 1) + LONG + b"\x00\x01\x00\x01" + rr(1, b"\x7f\x00\x00\x01", owner=owner)


@pytest.mark.parametrize(
    ("owner", "text"),
    [
        pytest.param(b"\x36" + b"x" * 54 + b"\xc0\x0c", "x" * 54 + "." + LONG_TEXT, id="cached-suffix-255"),
        pytest.param(b"\x37" + b"x" * 55 + b"\xc0\x0c", None, id="cached-suffix-256"),
        pytest.param(
            b"\x3f" + b"x" * 63 + b"\x36" + b"y" * 54 + b"\xc0\x4c",
            "x" * 63 + "." + "y" * 54 + "." + LONG_TEXT.partition(".")[2],
            id="uncached-suffix-255",
        ),
        pytest.param(b"\x3f" + b"x" * 63 + b"\x37" + b"y" * 55 + b"\xc0\x4c", None, id="uncached-suffix-256"),
    ],
)
def test_name_length_counts_the_octets_behind_a_pointer(owner: bytes, text: str | None) -> None:
    """RFC 1035 §3.1: 255 octets in wire form, the labels reached through a pointer included,
    whether that suffix was read before (the question at 12) or not (its second label at 76)."""
    wire = long_question_answer(owner)
    if text is None:
        with pytest.raises(WireError, match=r"^name longer than 255 octets$"):
            parse_response(wire)
        return
    (record,) = parse_response(wire).answers
    assert record == Record(text, 1, 60, "127.0.0.1")


def test_question_name_of_255_octets() -> None:
    message = parse_response(header(1) + NAME_255 + b"\x00\x01\x00\x01")
    assert message.question == Question(".".join(["x" * 63] * 3 + ["x" * 61]), 1)


def test_labels_then_a_pointer_to_the_root_name() -> None:
    """The root as a suffix adds no empty label: "x", not "x." or "x..";
    a bare pointer to it reads as the root."""
    wire = header(1, 2) + b"\x00\x00\x02\x00\x01"  # question ". NS" at 12
    wire += rr(2, b"\x01x\xc0\x0c", owner=b"\xc0\x0c") + rr(2, b"\xc0\x0c", owner=b"\x01y\xc0\x0c")
    message = parse_response(wire)
    assert message.question == Question(".", 2)
    assert message.answers == (Record(".", 2, 60, "x"), Record("y", 2, 60, "."))


def test_pointer_through_unread_data_is_followed_and_the_name_ends_after_the_first_pointer() -> None:
    """A pointer may land in bytes no name was read from (here the data of an unknown type):
    the name is read from there, and the record goes on after the owner's own pointer."""
    raw = rr(99, b"\x01y\xc0\x0c")  # its data "y" + pointer to the question, at offset 36
    wire = answer(raw, rr(1, b"\x7f\x00\x00\x02", owner=b"\x01x\xc0\x24"))
    message = parse_response(wire)
    assert message.answers == (
        Record("a.test", 99, 60, b"\x01y\xc0\x0c"),
        Record("x.y.a.test", 1, 60, "127.0.0.2"),
    )


def test_second_pointer_must_point_before_the_first_pointers_target() -> None:
    """RFC 1035 §4.1.4 pointers, read strictly backwards: a pointer met after a jump must point
    before where that jump landed, so no chain of pointers can loop."""
    raw = rr(99, b"\x01y\xc0\x28\x00")  # at 36: "y", then a pointer forward to the 0 at 40
    wire = answer(raw, rr(1, b"\x7f\x00\x00\x02", owner=b"\x01x\xc0\x24"))
    with pytest.raises(WireError, match=r"^compression pointer does not point backwards$"):
        parse_response(wire)


# ---------------------------------------------------------------- truncation


def test_truncated_reply_cut_inside_the_opt_record_has_no_edns() -> None:
    """RFC 2181 §9: with TC=1 what was read is kept; an OPT cut short is not half-read."""
    full = header(1, 1, 0, 1, flags=0x8380) + QUESTION + rr(1, b"\x7f\x00\x00\x01") + opt(ttl=0x01000000)
    whole = parse_response(full)
    assert (whole.rcode, whole.edns, whole.tc) == (16, True, True)
    cut = parse_response(full[:-1])
    assert (cut.rcode, cut.edns, cut.tc, cut.answers) == (0, False, True, whole.answers)


def test_truncated_reply_still_needs_its_whole_question() -> None:
    with pytest.raises(WireError, match=r"^question runs past the end$"):
        parse_response(header(1, 1, flags=0x8380) + QUESTION[:-1])


@pytest.mark.parametrize(
    ("text", "read"),
    [
        pytest.param(b"abc\x00", "abc", id="one-terminating-nul"),
        pytest.param(b"abc\x00\x00\x00", "abc", id="nul-padding"),
        pytest.param(b"ab\x00c", "ab\\x00c", id="inner-nul-is-text"),
        pytest.param(
            b"a" * 10 + b"\x00" * 2000 + b"b",
            ("a" * 10 + "\\x00" * 2000)[: EDE_TEXT_LIMIT - 1] + "…",
            id="nul-run-past-the-cut-is-text",
        ),
        pytest.param(b"X" * 5 + b"\x00", "XXXXX", id="only-nul-stripped"),
        pytest.param("𝄞".encode() * 300, "𝄞" * 255 + "…", id="4-octet-characters-cut-at-the-limit"),
        pytest.param("é".encode() * 256, "é" * 256, id="exactly-the-limit-not-cut"),
    ],
)
def test_ede_text_strips_only_the_terminating_nuls_and_is_bounded(text: bytes, read: str) -> None:
    """RFC 8914 §2: EXTRA-TEXT is UTF-8 and MAY end in NUL.  Only the NULs that end the text
    are dropped; NULs followed by more text are text, escaped like every control character
    (also when the text is longer than the EDE_TEXT_LIMIT characters kept)."""
    option = struct.pack("!HHH", 15, 2 + len(text), 6) + text
    (ede,) = parse_response(header(1, 0, 0, 1) + QUESTION + opt(option)).ede
    assert ede == (6, read)
    assert len(read) <= EDE_TEXT_LIMIT


def test_reply_of_only_a_header_has_no_question() -> None:
    """12 octets are a whole message (RFC 1035 §4.1.1): no question, no records; a client
    then ignores it (it answers nothing asked)."""
    message = parse_response(struct.pack("!HHHHHH", 0xBEEF, 0x8183, 0, 0, 0, 0))
    assert (message.id, message.qr, message.rcode, message.question) == (0xBEEF, True, 3, None)
    assert (message.answers, message.authority, message.ede, message.edns) == ((), (), (), False)


@pytest.mark.parametrize(
    ("label", "text"),
    [
        pytest.param(b"a.b.c", "a\\.b\\.c", id="two-dots-in-one-label"),
        pytest.param(b"a.b", "a\\.b", id="one-dot-in-one-label"),
    ],
)
def test_dot_inside_a_label_is_escaped(label: bytes, text: str) -> None:
    """A label may hold any octet (RFC 2181 §11); a dot inside one is printed "\\." so the
    text does not read as more labels."""
    wire = header(1) + bytes([len(label)]) + label + b"\x00\x00\x01\x00\x01"
    assert parse_response(wire).question == Question(text, 1)
