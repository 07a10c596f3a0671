"""The pre-flight verdict (``probes.dns.preflight.judge``): a named case table over the
two replies, the signed name's and the bogus name's."""

from __future__ import annotations

import pytest

from probes.dns.message import RCODE, Message
from probes.dns.preflight import PreflightResult, judge, verdict_text
from probes.dns.records import ResolverCheck

V, INC, N = ResolverCheck.VALIDATING, ResolverCheck.INCONCLUSIVE, ResolverCheck.NOT_VALIDATING


def reply(rcode: int, *, ad: bool = False) -> Message:
    return Message(1, True, 0, False, False, True, True, ad, False, rcode, None, (), (), (), True)


SIGNED = reply(RCODE.NOERROR, ad=True)

CASES = [
    pytest.param(SIGNED, reply(RCODE.SERVFAIL), V, "validating", id="ad-and-bogus-servfail"),
    pytest.param(reply(RCODE.NOERROR), reply(RCODE.SERVFAIL), N, "no AD on . SOA", id="no-ad"),
    pytest.param(reply(RCODE.SERVFAIL, ad=True), reply(RCODE.SERVFAIL), N, "no AD", id="signed-servfail"),
    pytest.param(SIGNED, reply(RCODE.NOERROR), N, "not rejected (rcode NOERROR)", id="bogus-data-served"),
    pytest.param(
        SIGNED, reply(RCODE.NXDOMAIN), INC, "does not exist for this resolver (NXDOMAIN)", id="bogus-nxdomain"
    ),
    pytest.param(SIGNED, reply(RCODE.NXDOMAIN, ad=True), INC, "NXDOMAIN", id="bogus-nxdomain-with-ad"),
    pytest.param(SIGNED, reply(RCODE.REFUSED), INC, "got rcode REFUSED", id="bogus-refused"),
    pytest.param(SIGNED, "timeout", INC, "got no answer (timeout)", id="bogus-timeout"),
    pytest.param(
        SIGNED, "connection-refused", INC, "no answer (connection-refused)", id="bogus-transport-error"
    ),
    pytest.param(reply(RCODE.NOERROR), reply(RCODE.NXDOMAIN), N, "no AD", id="no-ad-and-bogus-nxdomain"),
]


@pytest.mark.parametrize(("signed", "bogus", "check", "detail"), CASES)
def test_verdict(signed: Message, bogus: Message | str, check: ResolverCheck, detail: str) -> None:
    result = judge(signed, bogus, signed_what=". SOA", bogus_name="dnssec-failed.org")
    assert result.reachable
    assert result.check is check
    assert detail in result.detail
    assert result.validating is (check is V)
    assert result.reads_ad is (check is not N)
    assert result.signed_ad is (signed.ad and signed.rcode == RCODE.NOERROR)
    assert result.bogus_servfail is (isinstance(bogus, Message) and bogus.rcode == RCODE.SERVFAIL)


def test_no_answer_for_the_signed_name_is_an_unreachable_resolver() -> None:
    result = judge("timeout", reply(RCODE.SERVFAIL), signed_what=". SOA", bogus_name="x.test")
    assert (result.reachable, result.check, result.reads_ad, result.detail) == (False, N, False, "timeout")


def _checked(reachable: bool, check: ResolverCheck) -> PreflightResult:
    return PreflightResult(reachable, check is ResolverCheck.VALIDATING, "why", True, False, check)


@pytest.mark.parametrize("required", [False, True])
def test_the_scan_starts_on_a_validating_resolver_silently_and_never_on_a_silent_one(required: bool) -> None:
    assert verdict_text(_checked(True, ResolverCheck.VALIDATING), "r:53", require_validation=required) == (
        True,
        (),
    )
    stop = verdict_text(_checked(False, ResolverCheck.NOT_VALIDATING), "r:53", require_validation=required)
    assert stop == (False, ("resolver r:53 is not answering: why",))


@pytest.mark.parametrize("check", [ResolverCheck.INCONCLUSIVE, ResolverCheck.NOT_VALIDATING])
def test_an_unproven_resolver_is_said_loudly_and_refused_only_when_validation_is_required(
    check: ResolverCheck,
) -> None:
    proceed, said = verdict_text(_checked(True, check), "r:53", require_validation=False)
    assert proceed and len(said) == 1 and said[0].startswith("WARNING: ") and "r:53" in said[0]
    refused, again = verdict_text(_checked(True, check), "r:53", require_validation=True)
    assert not refused and again == (
        said[0],
        "--require-validation: not scanning without proof that the resolver validates",
    )
