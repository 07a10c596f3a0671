"""The MTA-STS assessment and its cross-checks (RFC 8461 §3-§5, RFC 8460, RFC 7672):
one case table per finding, and Hypothesis properties over any combination of inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.records import decode, encode, json_schema
from engine.status import Status
from probes.dane.tlsa import DaneResult, DaneStatus
from probes.dns.records import Answer, Dnssec, Outcome
from probes.mtasts.assess import assess_mta_sts
from probes.mtasts.records import Finding, MtaStsResult, PolicyFetch
from probes.tls.verify import PkixReason, PkixResult

DOMAIN = "example.test"
MX1, MX2 = "mx1.example.test", "mx2.example.test"
TXT_OK = "v=STSv1; id=20260101T000000;"


def body(mode: str = "enforce", *patterns: str) -> bytes:
    lines = ["version: STSv1", f"mode: {mode}"]
    lines += [f"mx: {p}" for p in (patterns or ("*.example.test",))]
    lines.append("max_age: 86400")
    return ("\r\n".join(lines) + "\r\n").encode()


def answer(
    data: tuple[str, ...] = (TXT_OK,),
    outcome: Outcome = Outcome.OK,
    cname: tuple[str, ...] = (),
    name: str = f"_mta-sts.{DOMAIN}",
    rrtype: str = "TXT",
) -> Answer:
    if outcome is not Outcome.OK:
        data = ()
    return Answer(name, rrtype, outcome, Dnssec.INSECURE, False, 300, cname, data, "NOERROR", (), "")


def fetched(status: Status = Status.SUCCESS, pkix: bool | None = True) -> PolicyFetch:
    result = None
    if pkix is not None:
        reason = PkixReason.OK if pkix else PkixReason.HOSTNAME_MISMATCH
        result = PkixResult(pkix, reason, "", "Test Root" if pkix else "")
    return PolicyFetch(
        url=f"https://mta-sts.{DOMAIN}/.well-known/mta-sts.txt",
        address="127.88.0.1",
        status=status,
        http_status=200 if status is Status.SUCCESS else None,
        content_type="text/plain",
        location="",
        body_bytes=100,
        tls_version="TLSv1.3",
        chain=None,
        pkix=result,
        detail="",
        duration_ms=1.0,
    )


def dane(status: DaneStatus) -> DaneResult:
    return DaneResult(status, None, 1, "")


def run(**overrides: Any) -> MtaStsResult:
    """assess_mta_sts on a healthy enforce deployment with two MX hosts, with ``overrides``."""
    args: dict[str, Any] = {
        "domain": DOMAIN,
        "sts_txt": answer(),
        "policy_host_a": answer(("127.88.0.1",), name=f"mta-sts.{DOMAIN}", rrtype="A"),
        "fetch": fetched(),
        "body": body(),
        "mx_hosts": (MX1, MX2),
        "pkix_by_host": {MX1: True, MX2: True},
        "dane_by_host": {},
        "tlsrpt_valid": True,
        "dane_published": False,
        "provider_of": lambda host: host.split(".", 1)[1] if "." in host else None,
    }
    args.update(overrides)
    return assess_mta_sts(**args)


def test_healthy_enforce_has_no_findings() -> None:
    result = run()
    assert result.mode == "enforce"
    assert result.would_deliver is True
    assert result.findings == ()
    assert result.policy_host == f"mta-sts.{DOMAIN}"
    assert result.coverage is not None and result.coverage.all_covered


# -- mode: only a valid record AND a usable policy have one (RFC 8461 §3.3, §5) --------------------------
MODE_CASES = [
    pytest.param({}, "enforce", id="valid-record-and-usable-policy"),
    pytest.param({"body": body("testing")}, "testing", id="testing"),
    pytest.param({"body": body("none")}, "none", id="mode-none"),
    pytest.param({"sts_txt": answer(("v=STSv1;",))}, None, id="record-without-id"),
    pytest.param({"sts_txt": answer((TXT_OK, TXT_OK))}, None, id="two-records"),
    pytest.param({"fetch": fetched(pkix=False)}, None, id="pkix-invalid-policy-host"),
    pytest.param({"fetch": fetched(pkix=None)}, None, id="no-chain"),
    pytest.param({"fetch": fetched(Status.APPLICATION_ERROR), "body": None}, None, id="fetch-404"),
    pytest.param({"fetch": None, "body": None}, None, id="not-fetched"),
    pytest.param({"body": b"version: STSv1\r\nmode: enforce\r\n"}, None, id="invalid-policy"),
]


@pytest.mark.parametrize(("overrides", "mode"), MODE_CASES)
def test_mode(overrides: dict[str, Any], mode: str | None) -> None:
    assert run(**overrides).mode == mode


# -- would_deliver: some MX covered (§4.1) AND PKIX-valid (§4.2) --------------------------------------------
DELIVER_CASES = [
    pytest.param({}, True, id="all-good"),
    pytest.param({"pkix_by_host": {MX1: False, MX2: True}}, True, id="one-good-is-enough"),
    pytest.param({"pkix_by_host": {MX1: False, MX2: False}}, False, id="no-valid-cert"),
    pytest.param({"pkix_by_host": {MX1: None, MX2: False}}, None, id="unknown-cert"),
    pytest.param({"pkix_by_host": {}}, None, id="smtp-not-measured"),
    pytest.param({"body": body("enforce", "mx.other.test")}, False, id="nothing-covered"),
    pytest.param(
        {"body": body("enforce", MX1), "pkix_by_host": {MX1: False, MX2: True}},
        False,
        id="valid-host-not-covered",
    ),
    pytest.param(
        {"body": body("enforce", MX1), "pkix_by_host": {MX1: None, MX2: True}}, None, id="covered-unknown"
    ),
    pytest.param({"pkix_by_host": {"MX1.example.test.": True}}, True, id="host-key-normalised"),
    pytest.param({"body": body("none")}, None, id="mode-none-not-applicable"),
    pytest.param({"mx_hosts": ()}, None, id="no-mx-hosts"),
    pytest.param({"fetch": fetched(pkix=False)}, None, id="no-effective-mode"),
]


@pytest.mark.parametrize(("overrides", "expected"), DELIVER_CASES)
def test_would_deliver(overrides: dict[str, Any], expected: bool | None) -> None:
    assert run(**overrides).would_deliver is expected


# -- every finding: (overrides, finding, present) ---------------------------------------------------------
FINDING_CASES = [
    # enforce-would-fail: the headline misconfiguration (§5: mail is not delivered)
    pytest.param(
        {"pkix_by_host": {MX1: False, MX2: False}}, Finding.ENFORCE_WOULD_FAIL, True, id="ewf-no-pkix"
    ),
    pytest.param(
        {"body": body("enforce", "*.typo.test")}, Finding.ENFORCE_WOULD_FAIL, True, id="ewf-no-cover"
    ),
    pytest.param({}, Finding.ENFORCE_WOULD_FAIL, False, id="ewf-not-when-healthy"),
    pytest.param({"pkix_by_host": {MX1: None}}, Finding.ENFORCE_WOULD_FAIL, False, id="ewf-not-when-unknown"),
    pytest.param(
        {"pkix_by_host": {MX1: False, MX2: False}, "body": body("testing")},
        Finding.ENFORCE_WOULD_FAIL,
        False,
        id="ewf-not-for-testing",
    ),
    pytest.param(
        {"pkix_by_host": {MX1: False, MX2: False}, "fetch": fetched(pkix=False)},
        Finding.ENFORCE_WOULD_FAIL,
        False,
        id="ewf-not-when-policy-unusable",
    ),
    # testing-would-fail
    pytest.param(
        {"pkix_by_host": {MX1: False, MX2: False}, "body": body("testing")},
        Finding.TESTING_WOULD_FAIL,
        True,
        id="twf-no-pkix",
    ),
    pytest.param({"body": body("testing")}, Finding.TESTING_WOULD_FAIL, False, id="twf-not-when-healthy"),
    pytest.param(
        {"pkix_by_host": {MX1: False, MX2: False}},
        Finding.TESTING_WOULD_FAIL,
        False,
        id="twf-not-for-enforce",
    ),
    # mx-not-covered (§4.1)
    pytest.param({"body": body("enforce", MX1)}, Finding.MX_NOT_COVERED, True, id="mnc-one-uncovered"),
    pytest.param(
        {"body": body("enforce", MX1), "fetch": fetched(pkix=False)},
        Finding.MX_NOT_COVERED,
        True,
        id="mnc-even-if-policy-unusable",
    ),
    pytest.param({"body": body("none", MX1)}, Finding.MX_NOT_COVERED, False, id="mnc-not-for-mode-none"),
    pytest.param({}, Finding.MX_NOT_COVERED, False, id="mnc-wildcard-covers"),
    pytest.param(
        {"body": body("enforce", "*.mx1.example.test", MX2)},
        Finding.MX_NOT_COVERED,
        True,
        id="mnc-wildcard-is-one-label",
    ),
    # stale-mx-pattern
    pytest.param(
        {"body": body("enforce", "*.example.test", "old.example.net")},
        Finding.STALE_MX_PATTERN,
        True,
        id="stale-leftover",
    ),
    pytest.param({}, Finding.STALE_MX_PATTERN, False, id="stale-none"),
    pytest.param(
        {"body": body("enforce", "old.example.net"), "mx_hosts": ()},
        Finding.STALE_MX_PATTERN,
        False,
        id="stale-not-without-mx",
    ),
    # txt-without-policy
    pytest.param(
        {"fetch": fetched(Status.APPLICATION_ERROR), "body": None},
        Finding.TXT_WITHOUT_POLICY,
        True,
        id="twp-404",
    ),
    pytest.param({"fetch": None, "body": None}, Finding.TXT_WITHOUT_POLICY, True, id="twp-no-policy-host"),
    pytest.param({"fetch": fetched(pkix=False)}, Finding.TXT_WITHOUT_POLICY, True, id="twp-bad-cert"),
    pytest.param({"body": b"garbage"}, Finding.TXT_WITHOUT_POLICY, True, id="twp-invalid-policy"),
    pytest.param({}, Finding.TXT_WITHOUT_POLICY, False, id="twp-not-when-healthy"),
    pytest.param(
        {"sts_txt": answer(("v=STSv1;",)), "fetch": None, "body": None},
        Finding.TXT_WITHOUT_POLICY,
        False,
        id="twp-not-for-invalid-record",
    ),
    # policy-without-txt
    pytest.param(
        {"sts_txt": answer(outcome=Outcome.NXDOMAIN)}, Finding.POLICY_WITHOUT_TXT, True, id="pwt-nxdomain"
    ),
    pytest.param({"sts_txt": answer(("v=spf1 -all",))}, Finding.POLICY_WITHOUT_TXT, True, id="pwt-other-txt"),
    pytest.param(
        {"sts_txt": answer(("v=STSv1;",))}, Finding.POLICY_WITHOUT_TXT, True, id="pwt-invalid-record"
    ),
    pytest.param(
        {"sts_txt": answer(outcome=Outcome.TIMEOUT)},
        Finding.POLICY_WITHOUT_TXT,
        False,
        id="pwt-not-when-txt-unknown",
    ),
    pytest.param(
        {"sts_txt": answer(outcome=Outcome.NODATA), "fetch": fetched(pkix=False)},
        Finding.POLICY_WITHOUT_TXT,
        False,
        id="pwt-not-when-policy-unusable",
    ),
    pytest.param({}, Finding.POLICY_WITHOUT_TXT, False, id="pwt-not-with-txt"),
    # tlsrpt-without-mta-sts-or-dane (RFC 8460)
    pytest.param(
        {"sts_txt": answer(outcome=Outcome.NXDOMAIN), "fetch": None, "body": None},
        Finding.TLSRPT_WITHOUT_POLICY,
        True,
        id="tlsrpt-alone",
    ),
    pytest.param(
        {"sts_txt": answer(outcome=Outcome.NXDOMAIN), "fetch": None, "body": None, "dane_published": True},
        Finding.TLSRPT_WITHOUT_POLICY,
        False,
        id="tlsrpt-with-dane",
    ),
    pytest.param({}, Finding.TLSRPT_WITHOUT_POLICY, False, id="tlsrpt-with-mta-sts"),
    pytest.param(
        {"sts_txt": answer(outcome=Outcome.NXDOMAIN), "tlsrpt_valid": False},
        Finding.TLSRPT_WITHOUT_POLICY,
        False,
        id="no-tlsrpt",
    ),
    pytest.param(
        {"sts_txt": answer(outcome=Outcome.SERVFAIL)},
        Finding.TLSRPT_WITHOUT_POLICY,
        False,
        id="tlsrpt-txt-unknown",
    ),
    pytest.param(
        {"sts_txt": answer(outcome=Outcome.NXDOMAIN), "fetch": None, "body": None, "tlsrpt_valid": None},
        Finding.TLSRPT_WITHOUT_POLICY,
        False,
        id="tlsrpt-lookup-failed",
    ),
    pytest.param(
        {
            "sts_txt": answer(outcome=Outcome.NXDOMAIN),
            "fetch": None,
            "body": None,
            "dane_by_host": {MX1: dane(DaneStatus.NONE), MX2: dane(DaneStatus.UNDETERMINED)},
        },
        Finding.TLSRPT_WITHOUT_POLICY,
        False,
        id="tlsrpt-not-when-dane-undetermined",
    ),
    pytest.param(
        {
            "sts_txt": answer(outcome=Outcome.NXDOMAIN),
            "fetch": None,
            "body": None,
            "dane_by_host": {MX1: dane(DaneStatus.NONE), MX2: dane(DaneStatus.INSECURE)},
        },
        Finding.TLSRPT_WITHOUT_POLICY,
        True,
        id="tlsrpt-with-dane-known-absent",
    ),
    # dane-mta-sts-disagree (RFC 8461 §2, RFC 7672 §2.2)
    pytest.param(
        {"body": body("enforce", MX1), "dane_by_host": {MX2: dane(DaneStatus.VALID)}},
        Finding.DANE_MTA_STS_DISAGREE,
        True,
        id="dane-valid-sts-uncovered",
    ),
    pytest.param(
        {"pkix_by_host": {MX1: False, MX2: True}, "dane_by_host": {MX1: dane(DaneStatus.VALID)}},
        Finding.DANE_MTA_STS_DISAGREE,
        True,
        id="dane-valid-pkix-invalid",
    ),
    pytest.param(
        {"dane_by_host": {MX1: dane(DaneStatus.MISMATCH)}},
        Finding.DANE_MTA_STS_DISAGREE,
        True,
        id="dane-mismatch-sts-accepts",
    ),
    pytest.param(
        {"dane_by_host": {MX1: dane(DaneStatus.BOGUS)}}, Finding.DANE_MTA_STS_DISAGREE, True, id="dane-bogus"
    ),
    pytest.param(
        {"dane_by_host": {MX1: dane(DaneStatus.VALID), MX2: dane(DaneStatus.VALID)}},
        Finding.DANE_MTA_STS_DISAGREE,
        False,
        id="both-accept",
    ),
    pytest.param(
        {"pkix_by_host": {MX1: False, MX2: True}, "dane_by_host": {MX1: dane(DaneStatus.MISMATCH)}},
        Finding.DANE_MTA_STS_DISAGREE,
        False,
        id="both-refuse",
    ),
    pytest.param(
        {"pkix_by_host": {MX1: None, MX2: True}, "dane_by_host": {MX1: dane(DaneStatus.VALID)}},
        Finding.DANE_MTA_STS_DISAGREE,
        False,
        id="pkix-unknown",
    ),
    pytest.param(
        {"dane_by_host": {MX1: dane(DaneStatus.NONE), MX2: dane(DaneStatus.INSECURE)}},
        Finding.DANE_MTA_STS_DISAGREE,
        False,
        id="no-dane",
    ),
    pytest.param(
        {"body": body("none"), "dane_by_host": {MX1: dane(DaneStatus.MISMATCH)}},
        Finding.DANE_MTA_STS_DISAGREE,
        False,
        id="sts-mode-none",
    ),
]


@pytest.mark.parametrize(("overrides", "finding", "present"), FINDING_CASES)
def test_finding(overrides: dict[str, Any], finding: Finding, present: bool) -> None:
    assert (finding in run(**overrides).findings) is present


@pytest.mark.parametrize("outcome", [Outcome.SERVFAIL, Outcome.REFUSED, Outcome.TIMEOUT, Outcome.ERROR])
def test_failed_txt_lookup_leaves_the_record_unknown_never_absent(outcome: Outcome) -> None:
    """Issue #13 item 9: a failed _mta-sts lookup is unknown with the reason, not "no record"."""
    for overrides in ({}, {"fetch": None, "body": None}):
        result = run(sts_txt=answer(outcome=outcome), **overrides)
        assert (result.record.present, result.record.valid) == (None, None)
        assert result.record.reasons == (f"lookup-failed:{outcome.value}",)
        assert result.mode is None
        assert not {
            Finding.POLICY_WITHOUT_TXT,
            Finding.TXT_WITHOUT_POLICY,
            Finding.TLSRPT_WITHOUT_POLICY,
        } & set(result.findings)


def test_every_finding_has_a_case() -> None:
    covered = {p.values[1] for p in FINDING_CASES if p.values[2]}
    assert covered == set(Finding)


def test_cname_chains_and_provider() -> None:
    result = run(
        sts_txt=answer(cname=("_mta-sts.policies.host.test",)),
        policy_host_a=answer(
            ("127.88.0.1",), cname=("x.cdn.test", "edge.provider.test"), name=f"mta-sts.{DOMAIN}", rrtype="A"
        ),
    )
    assert result.txt_cname == ("_mta-sts.policies.host.test",)
    assert result.policy_host_cname == ("x.cdn.test", "edge.provider.test")
    assert result.policy_host_provider == "provider.test"
    assert run(policy_host_a=None).policy_host_provider == DOMAIN  # provider of the policy host itself


def test_result_round_trips_and_matches_schema() -> None:
    result = run(body=body("enforce", MX1, "old.example.net"), dane_by_host={MX2: dane(DaneStatus.VALID)})
    data = orjson.loads(encode(result))
    jsonschema.validate(data, json_schema(MtaStsResult))
    assert decode(MtaStsResult, data) == result


# -- properties ---------------------------------------------------------------------------------------------
_HOSTS = st.sampled_from([MX1, MX2, "mx.other.test", "MX1.Example.Test.", "."])
_PATTERNS = st.sampled_from(
    ["*.example.test", MX1, MX2, "*.other.test", "mx.other.test", "*.*.test", "bad pattern"]
)
_BODIES = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.builds(
        lambda mode, pats: body(mode, *pats),
        st.sampled_from(["enforce", "testing", "none", "bogus"]),
        st.lists(_PATTERNS, min_size=1, max_size=4),
    ),
)
_TXT = st.lists(
    st.sampled_from([TXT_OK, "v=STSv1;", "v=STSv1; id=a b", "v=spf1 -all", "v=STSv1; id=2;", ""]), max_size=3
)
_FETCHES = st.one_of(
    st.none(),
    st.builds(fetched, st.sampled_from(list(Status)), st.sampled_from([True, False, None])),
)
_TRI = st.sampled_from([True, False, None])
_DANE = st.one_of(st.none(), st.builds(dane, st.sampled_from(list(DaneStatus))))


@st.composite
def _inputs(draw: st.DrawFn) -> dict[str, Any]:
    hosts = draw(st.lists(_HOSTS, max_size=4))
    return {
        "sts_txt": answer(tuple(draw(_TXT)), draw(st.sampled_from(list(Outcome)))),
        "policy_host_a": draw(st.sampled_from([None, answer(("127.0.0.1",), cname=("a.b.test",))])),
        "fetch": draw(_FETCHES),
        "body": draw(_BODIES),
        "mx_hosts": hosts,
        "pkix_by_host": {h: draw(_TRI) for h in draw(st.lists(_HOSTS, max_size=4))},
        "dane_by_host": {h: draw(_DANE) for h in draw(st.lists(_HOSTS, max_size=4))},
        "tlsrpt_valid": draw(_TRI),
        "dane_published": draw(st.booleans()),
    }


def _expected_mode_ok(result: MtaStsResult, inputs: Mapping[str, Any]) -> bool:
    fetch = inputs["fetch"]
    return (
        result.record.valid is True
        and fetch is not None
        and fetch.status is Status.SUCCESS
        and fetch.pkix is not None
        and fetch.pkix.valid
        and result.policy is not None
        and result.policy.valid
    )


@given(_inputs())
def test_any_inputs_give_a_consistent_result(inputs: dict[str, Any]) -> None:
    result = run(**inputs)
    assert isinstance(result, MtaStsResult)
    assert list(result.findings) == sorted(set(result.findings))
    # mode exists exactly when the record is valid and the policy usable (§3.3, §5)
    assert (result.mode is not None) == _expected_mode_ok(result, inputs)
    if result.mode is not None:
        assert result.policy is not None and result.mode == result.policy.mode
    # would_deliver is only asked of enforce/testing policies
    if result.would_deliver is not None:
        assert result.mode in ("enforce", "testing")
    assert (Finding.ENFORCE_WOULD_FAIL in result.findings) == (
        result.mode == "enforce" and result.would_deliver is False
    )
    assert (Finding.TESTING_WOULD_FAIL in result.findings) == (
        result.mode == "testing" and result.would_deliver is False
    )
    assert not (
        Finding.TXT_WITHOUT_POLICY in result.findings and Finding.POLICY_WITHOUT_TXT in result.findings
    )
    if Finding.DANE_MTA_STS_DISAGREE in result.findings:
        assert result.mode in ("enforce", "testing")
    # the record is unknown exactly when the TXT lookup failed, and then no finding says "no record"
    failed = inputs["sts_txt"].outcome in (Outcome.SERVFAIL, Outcome.REFUSED, Outcome.TIMEOUT, Outcome.ERROR)
    assert (result.record.valid is None) == failed == (result.record.present is None)
    if failed:
        assert Finding.POLICY_WITHOUT_TXT not in result.findings
        assert Finding.TLSRPT_WITHOUT_POLICY not in result.findings
    if inputs["tlsrpt_valid"] is not True:
        assert Finding.TLSRPT_WITHOUT_POLICY not in result.findings
    # the policy is parsed exactly when a body was obtained
    assert (result.policy is None) == (inputs["body"] is None)
    assert decode(MtaStsResult, orjson.loads(encode(result))) == result
