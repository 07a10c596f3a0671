"""classify(): every branch as a named case, and "any Message gives an Answer"."""

from __future__ import annotations

import itertools

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.records import decode, encode
from probes.dns.classify import MAX_CNAME_CHAIN, classify
from probes.dns.message import Message, MxData, Question, RData, Record, SoaData, TlsaData
from probes.dns.records import Answer, Dnssec, Ede, Outcome


def rec(name: str, rrtype: int, data: RData, ttl: int = 300) -> Record:
    return Record(name, rrtype, ttl, data)


def reply(
    *answers: Record,
    rcode: int = 0,
    ad: bool = False,
    ede: tuple[tuple[int, str], ...] = (),
    name: str = "d.test",
    rrtype: int = 1,
) -> Message:
    return Message(
        0x1234, True, 0, False, False, True, True, ad, False, rcode,
        Question(name, rrtype), answers, (), ede, True,
    )  # fmt: skip


def cname_chain(length: int) -> list[Record]:
    names = ["d.test", *[f"c{i}.test" for i in range(length)]]
    return [rec(a, 5, b) for a, b in itertools.pairwise(names)] + [rec(names[-1], 1, "192.0.2.1")]


BOGUS_EDE = ((6, "signature expired"),)


def case(
    name: str,
    rrtype: str,
    message: Message | None,
    failure: str = "",
    validating: bool = True,
    cd_reply: Message | None = None,
) -> tuple[str, str, Message | None, str, bool, Message | None]:
    return name, rrtype, message, failure, validating, cd_reply


CASES = [
    pytest.param(
        case(
            "d.test",
            "A",
            reply(rec("d.test", 1, "192.0.2.1", 60), rec("d.test", 1, "192.0.2.2", 30), ad=True),
        ),
        {
            "outcome": Outcome.OK,
            "dnssec": Dnssec.SECURE,
            "ad": True,
            "ttl": 30,
            "data": ("192.0.2.1", "192.0.2.2"),
        },
        id="ok-secure-min-ttl",
    ),
    pytest.param(
        case("d.test", "A", reply(rec("d.test", 1, "192.0.2.1"))),
        {"outcome": Outcome.OK, "dnssec": Dnssec.INSECURE, "rcode": "NOERROR"},
        id="ok-insecure",
    ),
    pytest.param(
        case("d.test", "A", reply(rec("d.test", 1, "192.0.2.1"), ad=True), "", False),
        {"outcome": Outcome.OK, "dnssec": Dnssec.UNKNOWN, "ad": True},
        id="ok-resolver-not-validating",
    ),
    pytest.param(
        case("D.Test.", "a", reply(rec("d.test", 1, "192.0.2.1"))),
        {"name": "d.test", "rrtype": "A", "outcome": Outcome.OK},
        id="name-and-type-normalised",
    ),
    pytest.param(
        case("d.test", "MX", reply(ad=True)),
        {"outcome": Outcome.NODATA, "dnssec": Dnssec.SECURE, "ttl": None, "data": ()},
        id="nodata-secure",
    ),
    pytest.param(
        case(
            "d.test", "MX", reply(rec("d.test", 1, "192.0.2.1"), rec("other.test", 15, MxData(1, "mx.test")))
        ),
        {"outcome": Outcome.NODATA, "data": ()},
        id="records-of-other-types-and-owners-ignored",
    ),
    pytest.param(
        case(
            "www.d.test",
            "A",
            reply(
                rec("www.d.test", 5, "a.cdn.test"),
                rec("a.cdn.test", 5, "b.cdn.test"),
                rec("b.cdn.test", 1, "192.0.2.9", 20),
            ),
        ),
        {
            "outcome": Outcome.OK,
            "cname_chain": ("a.cdn.test", "b.cdn.test"),
            "data": ("192.0.2.9",),
            "ttl": 20,
        },
        id="cname-chain-followed",
    ),
    pytest.param(
        case("www.d.test", "A", reply(rec("www.d.test", 5, "a.cdn.test"), rec("www.d.test", 1, "192.0.2.1"))),
        {"outcome": Outcome.NODATA, "cname_chain": ("a.cdn.test",), "data": ()},
        id="cname-to-nothing-is-nodata-data-of-asked-name-ignored",
    ),
    pytest.param(
        case("d.test", "A", reply(*cname_chain(MAX_CNAME_CHAIN))),
        {"outcome": Outcome.OK, "data": ("192.0.2.1",)},
        id="cname-chain-at-cap",
    ),
    pytest.param(
        case("d.test", "A", reply(*cname_chain(MAX_CNAME_CHAIN + 1))),
        {"outcome": Outcome.ERROR, "detail": "cname-chain-too-long", "dnssec": Dnssec.INDETERMINATE},
        id="cname-chain-over-cap",
    ),
    pytest.param(
        case("d.test", "A", reply(rec("d.test", 5, "e.test"), rec("e.test", 5, "d.test"))),
        {"outcome": Outcome.ERROR, "detail": "cname-loop", "cname_chain": ("e.test",), "data": ()},
        id="cname-loop",
    ),
    pytest.param(
        case(
            "d.test",
            "A",
            reply(rec("d.test", 5, "e.test"), rec("e.test", 5, "f.test"), rec("f.test", 5, "e.test")),
        ),
        {"outcome": Outcome.ERROR, "detail": "cname-loop", "cname_chain": ("e.test", "f.test")},
        id="cname-loop-not-through-the-asked-name",
    ),
    pytest.param(
        case("d.test", "CNAME", reply(rec("d.test", 5, "e.test"), rcode=3)),
        {"outcome": Outcome.NXDOMAIN, "cname_chain": (), "data": ()},
        id="nxdomain-cname-asked-chain-not-followed",
    ),
    pytest.param(
        case(".", "NS", reply(rec(".", 2, "a.root-servers.test"), name=".", rrtype=2)),
        {"name": ".", "outcome": Outcome.OK, "data": ("a.root-servers.test",)},
        id="root-name-stays-root",
    ),
    pytest.param(
        case("", "NS", reply(rec(".", 2, "a.root-servers.test"), name=".", rrtype=2)),
        {"name": ".", "outcome": Outcome.OK, "data": ("a.root-servers.test",)},
        id="empty-name-is-the-root",
    ),
    pytest.param(
        case("d.test", "WEIRD", reply(rec("d.test", 1, "192.0.2.1"), rec("d.test", 2, "ns.test"))),
        {"rrtype": "WEIRD", "outcome": Outcome.NODATA, "data": ()},
        id="unknown-mnemonic-matches-no-record",
    ),
    pytest.param(
        case("d.test", "TYPE1", reply(rec("d.test", 1, "192.0.2.1"))),
        {"rrtype": "TYPE1", "outcome": Outcome.OK, "data": ("192.0.2.1",)},
        id="generic-type-mnemonic-rfc-3597",
    ),
    pytest.param(
        case("d.test", "CNAME", reply(rec("d.test", 5, "e.test"))),
        {"outcome": Outcome.OK, "cname_chain": (), "data": ("e.test",)},
        id="cname-asked-is-data-not-followed",
    ),
    pytest.param(
        case("d.test", "MX", reply(rcode=3, ad=True)),
        {"outcome": Outcome.NXDOMAIN, "dnssec": Dnssec.SECURE, "rcode": "NXDOMAIN", "ttl": None},
        id="nxdomain-secure",
    ),
    pytest.param(
        case("www.d.test", "A", reply(rec("www.d.test", 5, "gone.test"), rcode=3)),
        {"outcome": Outcome.NXDOMAIN, "dnssec": Dnssec.INSECURE, "cname_chain": ("gone.test",)},
        id="nxdomain-at-end-of-cname",
    ),
    pytest.param(
        case("d.test", "MX", reply(rcode=2, ede=BOGUS_EDE)),
        {"outcome": Outcome.SERVFAIL, "dnssec": Dnssec.INDETERMINATE, "ede": (Ede(6, "signature expired"),)},
        id="servfail-no-cd-retry",
    ),
    pytest.param(
        case(
            "d.test",
            "MX",
            reply(rcode=2, ede=BOGUS_EDE),
            "",
            True,
            reply(rec("d.test", 15, MxData(1, "m.test"))),
        ),
        {
            "outcome": Outcome.SERVFAIL,
            "dnssec": Dnssec.BOGUS,
            "rcode": "SERVFAIL",
            "data": (),
            "ede": (Ede(6, "signature expired"),),
        },
        id="servfail-cd-noerror-is-bogus-keeps-first-ede",
    ),
    pytest.param(
        case("d.test", "MX", reply(rcode=2), "", True, reply(rcode=3)),
        {"outcome": Outcome.SERVFAIL, "dnssec": Dnssec.BOGUS},
        id="servfail-cd-nxdomain-is-bogus",
    ),
    pytest.param(
        case("d.test", "MX", reply(rcode=2), "", True, reply(rcode=2)),
        {"outcome": Outcome.SERVFAIL, "dnssec": Dnssec.INDETERMINATE},
        id="servfail-also-with-cd-is-indeterminate",
    ),
    pytest.param(
        case("d.test", "MX", reply(rcode=2), "", False, reply()),
        {"outcome": Outcome.SERVFAIL, "dnssec": Dnssec.UNKNOWN},
        id="servfail-resolver-not-validating",
    ),
    pytest.param(
        case("d.test", "A", reply(rcode=5)),
        {"outcome": Outcome.REFUSED, "dnssec": Dnssec.INDETERMINATE, "rcode": "REFUSED", "detail": ""},
        id="refused",
    ),
    pytest.param(
        case("d.test", "A", reply(rcode=1)),
        {"outcome": Outcome.ERROR, "detail": "rcode FORMERR", "rcode": "FORMERR"},
        id="other-rcode-is-error",
    ),
    pytest.param(
        case("d.test", "A", reply(rcode=23)),
        {"outcome": Outcome.ERROR, "detail": "rcode RCODE23"},
        id="unnamed-rcode",
    ),
    pytest.param(
        case("d.test", "A", None, "timeout"),
        {
            "outcome": Outcome.TIMEOUT,
            "dnssec": Dnssec.INDETERMINATE,
            "rcode": "",
            "detail": "timeout",
            "ad": False,
        },
        id="timeout",
    ),
    pytest.param(
        case("d.test", "A", None, "connection-refused", False),
        {"outcome": Outcome.ERROR, "dnssec": Dnssec.UNKNOWN, "detail": "connection-refused"},
        id="transport-error-not-validating",
    ),
    pytest.param(
        case("d.test", "A", None, ""),
        {"outcome": Outcome.ERROR, "detail": "no reply"},
        id="no-reply-no-reason",
    ),
    pytest.param(
        case("d.test", "A", None, "x" * 1000),
        {"outcome": Outcome.ERROR, "detail": "x" * 199 + "…"},  # engine.peertext: a cut is marked
        id="detail-bounded",
    ),
]


@pytest.mark.parametrize(("args", "expected"), CASES)
def test_classify(
    args: tuple[str, str, Message | None, str, bool, Message | None], expected: dict[str, object]
) -> None:
    name, rrtype, message, failure, validating, cd_reply = args
    answer = classify(name, rrtype, message, failure=failure, validating=validating, cd_reply=cd_reply)
    assert {field: getattr(answer, field) for field in expected} == expected


def test_no_reply_and_no_failure_given_reads_no_reply() -> None:
    """``failure`` left out: the detail still says why there is no answer."""
    answer = classify("d.test", "A", None, validating=False)
    assert (answer.outcome, answer.detail, answer.dnssec) == (Outcome.ERROR, "no reply", Dnssec.UNKNOWN)


TLSA = bytes.fromhex("d2abde240d7cd3ee6b4b28c54df034b97983a1d16e8a410e4561cb106618e971")


@pytest.mark.parametrize(
    ("rrtype", "code", "data", "text"),
    [
        pytest.param("MX", 15, MxData(10, "mx.d.test"), "10 mx.d.test", id="MX"),
        pytest.param("MX", 15, MxData(0, "."), "0 .", id="null-MX"),
        pytest.param("TXT", 16, (b"v=STSv1; ", b"id=20240101"), "v=STSv1; id=20240101", id="TXT-joined"),
        pytest.param("TXT", 16, (b"caf\xc3\xa9 ", b"\xff"), "café \\xff", id="TXT-utf8-backslashreplace"),
        pytest.param("TXT", 16, (), "", id="TXT-no-strings"),
        pytest.param("TLSA", 52, TlsaData(3, 1, 1, TLSA), f"3 1 1 {TLSA.hex()}", id="TLSA"),
        pytest.param("AAAA", 28, "2001:db8::1", "2001:db8::1", id="AAAA"),
        pytest.param(
            "SOA", 6, SoaData("ns.test", "h.test", 1, 2, 3, 4, 5), "ns.test h.test 1 2 3 4 5", id="SOA"
        ),
        pytest.param("CAA", 257, b"\x00\x05issue", "0005697373756", id="raw-hex"),
    ],
)
def test_data_forms(rrtype: str, code: int, data: RData, text: str) -> None:
    answer = classify("d.test", rrtype, reply(rec("d.test", code, data)), validating=True)
    assert answer.outcome is Outcome.OK
    assert answer.data[0].startswith(text) if rrtype == "CAA" else answer.data == (text,)


# ------------------------------------------------------------------ property

names = st.sampled_from(["d.test", "e.test", "f.test", "D.test.", "."])
rdata = st.one_of(
    st.from_regex(r"192\.0\.2\.[0-9]{1,2}", fullmatch=True),
    names,
    st.builds(MxData, st.integers(0, 65535), names),
    st.lists(st.binary(max_size=20), max_size=3).map(tuple),
    st.builds(TlsaData, st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=8)),
    st.binary(max_size=8),
)
records = st.builds(
    Record, names, st.sampled_from([1, 5, 15, 16, 28, 52, 99]), st.integers(0, 2**32 - 1), rdata
)
messages = st.builds(
    Message,
    id=st.integers(0, 65535),
    qr=st.booleans(),
    opcode=st.integers(0, 15),
    aa=st.booleans(),
    tc=st.booleans(),
    rd=st.booleans(),
    ra=st.booleans(),
    ad=st.booleans(),
    cd=st.booleans(),
    rcode=st.integers(0, 4095),
    question=st.none() | st.builds(Question, names, st.integers(0, 65535)),
    answers=st.lists(records, max_size=8).map(tuple),
    authority=st.lists(records, max_size=2).map(tuple),
    ede=st.lists(st.tuples(st.integers(0, 65535), st.text(max_size=20)), max_size=2).map(tuple),
    edns=st.booleans(),
)


@given(
    names,
    st.sampled_from(["A", "AAAA", "MX", "TXT", "TLSA", "CNAME", "TYPE99", "WEIRD"]),
    st.none() | messages,
    st.sampled_from(["", "timeout", "connection-refused"]),
    st.booleans(),
    st.none() | messages,
)
def test_any_message_gives_an_answer_that_round_trips(
    name: str, rrtype: str, message: Message | None, failure: str, validating: bool, cd: Message | None
) -> None:
    answer = classify(name, rrtype, message, failure=failure, validating=validating, cd_reply=cd)
    assert isinstance(answer, Answer)
    assert (answer.ttl is not None) == (answer.outcome is Outcome.OK)
    assert len(answer.cname_chain) <= MAX_CNAME_CHAIN
    if not validating:
        assert answer.dnssec is Dnssec.UNKNOWN
    if answer.dnssec is Dnssec.BOGUS:
        assert answer.outcome is Outcome.SERVFAIL
    assert decode(Answer, orjson.loads(encode(answer))) == answer
