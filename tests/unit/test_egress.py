"""The egress pre-flight's pure core: the error table, the verdict per family, the decision
(stop / IPv4-only / go) and the target syntax."""

from __future__ import annotations

import errno

import pytest

from engine.records import decode
from probes.dns.records import Answer, Dnssec, Outcome
from probes.egress import (
    Attempt,
    EgressAttempt,
    EgressVerdict,
    Reach,
    assess,
    classify_error,
    decide,
    parse_target,
)
from probes.vantage import egress_addresses, ehlo_matches


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        pytest.param(TimeoutError(), Attempt.TIMEOUT, id="timeout"),
        pytest.param(ConnectionRefusedError(errno.ECONNREFUSED, "refused"), Attempt.REFUSED, id="refused"),
        pytest.param(OSError(errno.ENETUNREACH, "unreachable"), Attempt.UNREACHABLE, id="no-route"),
        pytest.param(OSError(errno.EHOSTUNREACH, "no host"), Attempt.UNREACHABLE, id="host-unreachable"),
        pytest.param(OSError(errno.EADDRNOTAVAIL, "no source"), Attempt.UNREACHABLE, id="no-source-address"),
        pytest.param(OSError(errno.EACCES, "denied"), Attempt.ERROR, id="other-os-error"),
    ],
)
def test_connect_errors_are_classified(exc: BaseException, outcome: Attempt) -> None:
    got, detail = classify_error(exc)
    assert got is outcome and detail


def _at(family: str, outcome: Attempt) -> EgressAttempt:
    address = "::1" if family == "ipv6" else "127.0.0.9"
    local = ("::1" if family == "ipv6" else "127.0.0.1") if outcome is Attempt.CONNECTED else ""
    return EgressAttempt("mx.test", address, 25, family, outcome, local, "")


V4_OK, V4_TIMEOUT, V4_REFUSED = (
    _at("ipv4", o) for o in (Attempt.CONNECTED, Attempt.TIMEOUT, Attempt.REFUSED)
)
V6_OK, V6_UNREACHABLE = _at("ipv6", Attempt.CONNECTED), _at("ipv6", Attempt.UNREACHABLE)
V6_UNRESOLVED = _at("ipv6", Attempt.UNRESOLVED)


@pytest.mark.parametrize(
    ("attempts", "ipv4", "ipv6", "proceed", "ipv6_after", "says"),
    [
        pytest.param([V4_OK, V6_OK], Reach.REACHABLE, Reach.REACHABLE, True, True, "", id="both-work"),
        pytest.param([V4_TIMEOUT, V4_TIMEOUT, V6_UNREACHABLE], Reach.BLOCKED, Reach.BLOCKED, False, True,
                     "blocked by the hosting provider or cloud", id="all-blocked-stops"),
        pytest.param([V4_TIMEOUT, V6_OK], Reach.BLOCKED, Reach.REACHABLE, False, True,
                     "over IPv4", id="ipv4-blocked-stops-even-with-ipv6"),
        pytest.param([V4_REFUSED], Reach.BLOCKED, Reach.UNTESTED, False, True, "refused", id="refused-stops"),
        pytest.param([V4_OK, V6_UNREACHABLE], Reach.REACHABLE, Reach.BLOCKED, True, False,
                     "scanning IPv4 only", id="ipv6-blocked-continues-ipv4-only"),
        pytest.param([V4_OK, V4_TIMEOUT, V6_UNRESOLVED], Reach.REACHABLE, Reach.UNTESTED, True, True, "",
                     id="one-working-target-is-enough"),
        pytest.param([V6_UNREACHABLE], Reach.UNTESTED, Reach.BLOCKED, False, True, "over IPv6",
                     id="ipv6-only-targets-blocked-stops"),
        pytest.param([V6_UNRESOLVED], Reach.UNTESTED, Reach.UNTESTED, True, True, "untested",
                     id="nothing-resolved-warns"),
    ],
)  # fmt: skip
def test_verdict_and_decision(
    attempts: list[EgressAttempt], ipv4: Reach, ipv6: Reach, proceed: bool, ipv6_after: bool, says: str
) -> None:
    check = assess(attempts)
    assert (check.ipv4, check.ipv6) == (ipv4, ipv6)
    decision = decide(check, ipv6_wanted=True)
    assert (decision.proceed, decision.ipv6) == (proceed, ipv6_after)
    assert says in decision.message and bool(decision.message) == bool(says)


def test_ipv6_blocked_is_not_ipv4_only_when_ipv6_was_not_wanted() -> None:
    check = assess([V4_OK, V6_UNREACHABLE], ipv6_wanted=False)
    assert not check.ipv4_only
    assert decide(check, ipv6_wanted=False).message == ""


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        pytest.param("MX.Example.org", ("mx.example.org", 25), id="name"),
        pytest.param("mx.example.org.:2525", ("mx.example.org", 2525), id="name-port"),
        pytest.param("127.0.0.9:10025", ("127.0.0.9", 10025), id="ipv4-port"),
        pytest.param("[::1]:10025", ("::1", 10025), id="ipv6-port"),
        pytest.param("[2001:db8::1]", ("2001:db8::1", 25), id="ipv6-bracketed"),
        pytest.param("2001:db8::1", ("2001:db8::1", 25), id="ipv6-bare"),
    ],
)
def test_egress_check_target_syntax(text: str, parsed: tuple[str, int]) -> None:
    assert parse_target(text) == parsed


@pytest.mark.parametrize(
    "text", ["", ":25", "mx.test:0", "mx.test:70000", "mx.test:x", "[::1", "[mx.test]:25"]
)
def test_egress_check_target_refused_in_the_options_words(text: str) -> None:
    with pytest.raises(ValueError, match="--egress-check"):
        parse_target(text)


def test_egress_addresses_are_the_local_side_one_per_family() -> None:
    assert egress_addresses([V4_TIMEOUT, V6_OK, V4_OK, V4_OK]) == ("127.0.0.1", "::1")
    assert egress_addresses([V4_TIMEOUT, V6_UNREACHABLE]) == ()


def _answer(rrtype: str, outcome: Outcome, *data: str) -> Answer:
    return Answer("scanner.test", rrtype, outcome, Dnssec.INSECURE, False, None, (), data, "", (), "")


@pytest.mark.parametrize(
    ("a", "aaaa", "matches"),
    [
        pytest.param(
            _answer("A", Outcome.OK, "127.0.0.1"), _answer("AAAA", Outcome.NODATA), True, id="match"
        ),
        pytest.param(
            _answer("A", Outcome.OK, "127.9.9.9"), _answer("AAAA", Outcome.NODATA), False, id="elsewhere"
        ),
        pytest.param(
            _answer("A", Outcome.NXDOMAIN), _answer("AAAA", Outcome.NXDOMAIN), False, id="no-such-name"
        ),
        pytest.param(
            _answer("A", Outcome.TIMEOUT), _answer("AAAA", Outcome.NODATA), None, id="lookup-failed"
        ),
    ],
)
def test_ehlo_name_against_the_egress_address(a: Answer, aaaa: Answer, matches: bool | None) -> None:
    assert ehlo_matches(["127.0.0.1"], a, aaaa)[1] is matches


def test_a_domain_lines_egress_section_decodes_from_lines_that_still_list_attempts() -> None:
    """Lines written before the attempts moved to the run line carried them in scan.egress:
    they still decode (the verdicts are kept, the attempts ignored)."""
    old = {"skipped": False, "ipv4": "reachable", "ipv6": "untested", "ipv4_only": False,
           "attempts": [{"host": "a", "address": "127.0.0.9", "port": 25, "family": "ipv4",
                         "outcome": "connected", "local_address": "127.0.0.1", "detail": ""}]}  # fmt: skip
    assert decode(EgressVerdict, old) == EgressVerdict(False, Reach.REACHABLE, Reach.UNTESTED, False)
    check = assess([_at("ipv4", Attempt.CONNECTED), _at("ipv6", Attempt.TIMEOUT)])
    assert check.verdict() == EgressVerdict(False, Reach.REACHABLE, Reach.BLOCKED, True)
