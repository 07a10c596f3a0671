"""Reverse DNS: the reverse name builder (against dnspython's ``dns.reversename``), the PTR
record through our codec (against dnspython's encoder), and the FCrDNS verdict table."""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import dns.message
import dns.reversename
import dns.rrset
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from probes.dns.classify import classify
from probes.dns.message import RRType
from probes.dns.records import Answer, Dnssec, Outcome
from probes.dns.reverse import Fcrdns, assess_ptr, reverse_name
from probes.dns.wire import build_query, parse_response


@pytest.mark.parametrize(
    ("address", "name"),
    [
        pytest.param("192.0.2.1", "1.2.0.192.in-addr.arpa", id="ipv4"),
        pytest.param("127.0.0.1", "1.0.0.127.in-addr.arpa", id="ipv4-loopback"),
        pytest.param("10.0.0.255", "255.0.0.10.in-addr.arpa", id="ipv4-broadcast-octet"),
        pytest.param("::1", "1." + "0." * 31 + "ip6.arpa", id="ipv6-loopback"),
        pytest.param(
            "2001:db8::567:89ab",
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
            id="ipv6-rfc3596-style",
        ),
        pytest.param(
            "[2001:DB8::1]", "1." + "0." * 23 + "8.b.d.0.1.0.0.2.ip6.arpa", id="ipv6-bracketed-uppercase"
        ),
    ],
)
def test_reverse_name_case_table(address: str, name: str) -> None:
    assert reverse_name(address) == name


@pytest.mark.parametrize("bad", ["", "mx.example.org", "256.1.1.1", "1.2.3", "::g"])
def test_reverse_name_refuses_what_is_not_an_address(bad: str) -> None:
    with pytest.raises(ValueError):
        reverse_name(bad)


@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
def test_reverse_name_equals_dnspython(ip: object) -> None:
    # dnspython writes an IPv4-mapped IPv6 address (::ffff:a.b.c.d) under in-addr.arpa; an AAAA
    # record holding one is asked under ip6.arpa like any IPv6 address (RFC 3596 §2.5).
    assume(getattr(ip, "ipv4_mapped", None) is None)
    assert reverse_name(str(ip)) == dns.reversename.from_address(str(ip)).to_text(omit_final_dot=True)


def test_ptr_query_and_reply_through_our_codec_match_dnspython() -> None:
    name = reverse_name("127.1.0.7")
    query = dns.message.from_wire(build_query(7, name, RRType.PTR))
    assert query.question[0].rdtype == dns.rdatatype.PTR
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "PTR", "MX.Example.TEST.", "other.test."))
    parsed = parse_response(reply.to_wire())
    answer = classify(name, "PTR", parsed, validating=True)
    assert answer.outcome is Outcome.OK
    # An RRset is a set: dnspython may write its records in either order.
    assert sorted(d.lower() for d in answer.data) == ["mx.example.test", "other.test"]


def _answer(name: str, rrtype: str, outcome: Outcome, *data: str) -> Answer:
    return Answer(name, rrtype, outcome, Dnssec.INSECURE, False, 300, (), data, "NOERROR", (), "")


PTR_NAME = reverse_name("127.1.0.7")


@pytest.mark.parametrize(
    ("ptr", "forward", "verdict", "confirmed"),
    [
        pytest.param(
            _answer(PTR_NAME, "PTR", Outcome.OK, "mx.a.test."),
            {"mx.a.test": _answer("mx.a.test", "A", Outcome.OK, "127.1.0.7")},
            Fcrdns.CONFIRMED, "mx.a.test", id="matching",
        ),
        pytest.param(
            _answer(PTR_NAME, "PTR", Outcome.OK, "other.test", "MX.A.TEST"),
            {
                "other.test": _answer("other.test", "A", Outcome.NXDOMAIN),
                "mx.a.test": _answer("mx.a.test", "A", Outcome.OK, "127.9.9.9", "127.1.0.7"),
            },
            Fcrdns.CONFIRMED, "mx.a.test", id="second-name-confirms",
        ),
        pytest.param(
            _answer(PTR_NAME, "PTR", Outcome.OK, "mx.a.test"),
            {"mx.a.test": _answer("mx.a.test", "A", Outcome.OK, "127.9.9.9")},
            Fcrdns.MISMATCH, "", id="resolves-elsewhere",
        ),
        pytest.param(
            _answer(PTR_NAME, "PTR", Outcome.OK, "gone.test"),
            {"gone.test": _answer("gone.test", "A", Outcome.NXDOMAIN)},
            Fcrdns.MISMATCH, "", id="name-does-not-exist",
        ),
        pytest.param(
            _answer(PTR_NAME, "PTR", Outcome.OK, "mx.a.test"),
            {"mx.a.test": _answer("mx.a.test", "A", Outcome.TIMEOUT)},
            Fcrdns.UNKNOWN, "", id="forward-timeout-is-unknown-not-mismatch",
        ),
        pytest.param(_answer(PTR_NAME, "PTR", Outcome.NXDOMAIN), {}, Fcrdns.NO_PTR, "", id="nxdomain"),
        pytest.param(_answer(PTR_NAME, "PTR", Outcome.NODATA), {}, Fcrdns.NO_PTR, "", id="nodata"),
        pytest.param(_answer(PTR_NAME, "PTR", Outcome.SERVFAIL), {}, Fcrdns.UNKNOWN, "", id="servfail"),
        pytest.param(_answer(PTR_NAME, "PTR", Outcome.TIMEOUT), {}, Fcrdns.UNKNOWN, "", id="timeout"),
    ],
)  # fmt: skip
def test_fcrdns_verdicts(ptr: Answer, forward: dict[str, Answer], verdict: Fcrdns, confirmed: str) -> None:
    result = assess_ptr("127.1.0.7", ptr, forward)
    assert (result.fcrdns, result.confirmed_name) == (verdict, confirmed)
    assert bool(result.detail) == (verdict is Fcrdns.UNKNOWN)


def test_ipv6_address_is_confirmed_in_any_spelling() -> None:
    ptr = _answer(reverse_name("2001:db8::1"), "PTR", Outcome.OK, "v6.test")
    forward = {"v6.test": _answer("v6.test", "AAAA", Outcome.OK, "2001:0db8:0:0::1")}
    assert assess_ptr("2001:db8::1", ptr, forward).fcrdns is Fcrdns.CONFIRMED
