"""The one reduction from a record to the study's answers (probes/posture.py): a case table
per question, keeping unknown (asked, could not tell) apart from not-measured (no data)."""

from __future__ import annotations

from typing import Any

import pytest

from probes.dns.records import Dnssec
from probes.posture import QUESTIONS, Answer, MxKind, answers, host_tlsa
from probes.transport import Coverage3

STS_TXT = "v=STSv1; id=20260101T000000;"
RPT_TXT = "v=TLSRPTv1; rua=mailto:tlsrpt@example.com"
Y, N, U, NM = Answer.YES, Answer.NO, Answer.UNKNOWN, Answer.NOT_MEASURED


def lookup(outcome: str = "ok", dnssec: str = "secure", data: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"outcome": outcome, "dnssec": dnssec, "data": list(data)}


def tlsa_host(
    tlsa: dict[str, Any] | None = None, skipped: str | None = None, **addresses: Any
) -> dict[str, Any]:
    return {
        "host": "mx.example.com",
        "a": addresses.get("a", lookup(data=("192.0.2.1",))),
        "aaaa": addresses.get("aaaa", lookup("nodata")),
        "tlsa": tlsa,
        "tlsa_skipped": skipped,
    }


def dns(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "has_mx": True,
        "null_mx": False,
        "mx": lookup(data=("10 mx.example.com",)),
        "implicit_mx": None,
        "mx_hosts": [tlsa_host(lookup(data=("3 1 1 aa",)))],
        "mta_sts": lookup(data=(STS_TXT,)),
        "tlsrpt": lookup(data=(RPT_TXT,)),
    }
    return {**base, **over}


def record(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "domain": "example.com",
        "status": "success",
        "dns": dns(),
        "posture": {
            "starttls": "all",
            "pkix_valid": "all",
            "dane_valid": "all",
            "dane_published": True,
            "dnssec_mx": "secure",
            "mta_sts_mode": "enforce",
            "tlsrpt": True,
        },
        "mta_sts": {
            "record": {"present": True, "valid": True, "id": "20260101T000000"},
            "fetch": {"status": "success", "http_status": 200},
            "policy": {"valid": True},
            "mode": "enforce",
        },
        "tlsrpt": {"present": True, "valid": True},
        "mx_transport": [],
    }
    return {**base, **over}


@pytest.mark.parametrize(
    ("name", "dns_section", "answer", "kind"),
    [
        ("dns-only-missing", None, NM, None),
        ("mx-records", dns(), Y, MxKind.MX),
        ("null-mx", dns(has_mx=False, null_mx=True), N, MxKind.NULL_MX),
        ("servfail-is-unknown", dns(has_mx=False, mx=lookup("servfail", "indeterminate")), U, None),
        ("timeout-is-unknown", dns(has_mx=False, mx=lookup("timeout", "indeterminate")), U, None),
        (
            "implicit-mx",
            dns(has_mx=False, mx=lookup("nodata"), implicit_mx={"a": lookup(), "aaaa": lookup("nodata")}),
            N,
            MxKind.IMPLICIT_ONLY,
        ),
        ("nxdomain-is-no-mx", dns(has_mx=False, mx=lookup("nxdomain")), N, MxKind.NO_MX),
    ],
)
def test_mx_question(
    name: str, dns_section: dict[str, Any] | None, answer: Answer, kind: MxKind | None
) -> None:
    reading = answers(record(dns=dns_section)).mx
    assert (reading.answer, reading.kind) == (answer, kind), name


@pytest.mark.parametrize(
    ("posture_value", "answer", "kind", "text"),
    [
        ("all", Y, Coverage3.ALL, "all"),
        ("some", Y, Coverage3.SOME, "some"),
        ("none", N, Coverage3.NONE, "none"),
        ("unknown", U, None, "unknown"),
        # not-applicable for a domain with MX: SMTP was not probed (a --dns-only scan).
        ("not-applicable", NM, None, "not-measured"),
    ],
)
@pytest.mark.parametrize("field", ["starttls", "pkix_valid"])
def test_starttls_and_pkix_questions(
    field: str, posture_value: str, answer: Answer, kind: Coverage3 | None, text: str
) -> None:
    rec = record()
    rec["posture"][field] = posture_value
    facts = answers(rec)
    reading = facts.starttls if field == "starttls" else facts.pkix
    assert (reading.answer, reading.kind, reading.text) == (answer, kind, text)


def test_starttls_without_a_posture_section_is_not_measured() -> None:
    facts = answers(record(posture=None))
    assert (facts.starttls.answer, facts.pkix.answer) == (NM, NM)


@pytest.mark.parametrize(
    ("dnssec", "answer"),
    [("secure", Y), ("insecure", N), ("bogus", N), ("indeterminate", U), ("unknown", U)],
)
def test_dnssec_question(dnssec: str, answer: Answer) -> None:
    reading = answers(record(dns=dns(mx=lookup(dnssec=dnssec)))).dnssec
    assert reading.answer is answer
    assert reading.text == (dnssec if answer is not U else "unknown")


def test_dnssec_without_dns_is_not_measured() -> None:
    assert answers(record(dns=None)).dnssec.text == "not-measured"


@pytest.mark.parametrize(
    ("name", "host", "answer"),
    [
        ("secure-records", tlsa_host(lookup(data=("3 1 1 aa",))), Y),
        ("insecure-records", tlsa_host(lookup(dnssec="insecure", data=("3 1 1 aa",))), N),
        ("secure-nodata", tlsa_host(lookup("nodata")), N),
        ("servfail", tlsa_host(lookup("servfail", "indeterminate")), U),
        ("timeout", tlsa_host(lookup("timeout", "insecure")), U),
        ("dnssec-indeterminate", tlsa_host(lookup("nodata", "indeterminate")), U),
        ("resolver-not-validating", tlsa_host(None, "resolver-not-validating"), U),
        ("address-lookup-failed", tlsa_host(None, "address-unresolved", a=lookup("timeout")), U),
        ("address-lookup-missing", tlsa_host(None, "address-unresolved", a=None), U),
        (
            "name-does-not-exist",
            tlsa_host(None, "address-unresolved", a=lookup("nxdomain"), aaaa=lookup("nxdomain")),
            N,
        ),
        ("address-insecure", tlsa_host(None, "address-insecure"), N),
    ],
)
def test_host_tlsa(name: str, host: dict[str, Any], answer: Answer) -> None:
    assert host_tlsa(host) is answer, name


@pytest.mark.parametrize(
    ("name", "mx_dnssec", "published", "hosts", "answer"),
    [
        ("published", "secure", True, [tlsa_host(lookup(data=("3 1 1 aa",)))], Y),
        ("not-published", "secure", False, [tlsa_host(lookup("nodata"))], N),
        ("not-published-a-lookup-failed", "secure", False, [tlsa_host(lookup("timeout"))], U),
        # Files from before dane_published required a secure MX answer: insecure MX is a no.
        ("insecure-mx", "insecure", True, [tlsa_host(lookup(data=("3 1 1 aa",)))], N),
        ("bogus-mx", "bogus", True, [], N),
        ("mx-indeterminate", "indeterminate", False, [], U),
    ],
)
def test_dane_question(name: str, mx_dnssec: str, published: bool, hosts: list[Any], answer: Answer) -> None:
    rec = record(dns=dns(mx=lookup(dnssec=mx_dnssec), mx_hosts=hosts))
    rec["posture"]["dane_published"] = published
    facts = answers(rec)
    assert (facts.dane, facts.dane_from_dns) == (answer, False), name


def test_dane_is_derived_from_dns_for_a_record_without_posture() -> None:
    facts = answers(record(posture=None))
    assert (facts.dane, facts.dane_from_dns, facts.tlsa) == (Y, True, ("mx.example.com 3 1 1 aa",))
    assert answers(record(posture=None, dns=None)).dane is NM


@pytest.mark.parametrize(
    ("name", "valid", "txt_outcome", "answer"),
    [
        ("valid", True, "ok", Y),
        ("invalid", False, "ok", N),
        ("lookup-failed", None, "timeout", U),
        # Files from before the null: valid false beside a failed TXT lookup is unknown.
        ("old-file-lookup-failed", False, "servfail", U),
    ],
)
def test_sts_record_and_tlsrpt_from_their_sections(
    name: str, valid: bool | None, txt_outcome: str, answer: Answer
) -> None:
    rec = record(dns=dns(mta_sts=lookup(txt_outcome), tlsrpt=lookup(txt_outcome)))
    rec["mta_sts"]["record"]["valid"] = valid
    rec["mta_sts"]["mode"] = None
    rec["tlsrpt"]["valid"] = valid
    facts = answers(rec)
    assert (facts.sts_record, facts.tlsrpt, facts.sts_from_dns) == (answer, answer, False), name


@pytest.mark.parametrize(
    ("name", "txt", "answer"),
    [
        ("valid-txt", lookup(data=(STS_TXT, RPT_TXT)), Y),
        ("other-txt", lookup(data=("v=spf1 -all",)), N),
        ("nxdomain", lookup("nxdomain"), N),
        ("timeout", lookup("timeout", "indeterminate"), U),
        ("refused", lookup("refused", "indeterminate"), U),
    ],
)
def test_sts_record_and_tlsrpt_derived_from_dns(name: str, txt: dict[str, Any], answer: Answer) -> None:
    facts = answers(record(mta_sts=None, tlsrpt=None, dns=dns(mta_sts=txt, tlsrpt=txt)))
    assert (facts.sts_record, facts.tlsrpt, facts.sts_from_dns) == (answer, answer, True), name
    # The policy was never fetched: not measured, whatever the TXT said.
    assert facts.sts_policy is NM


def test_sts_and_tlsrpt_without_any_data_are_not_measured() -> None:
    facts = answers(record(mta_sts=None, tlsrpt=None, dns=None))
    assert (facts.sts_record, facts.sts_policy, facts.sts_enforce, facts.tlsrpt) == (NM, NM, NM, NM)


@pytest.mark.parametrize(
    ("name", "mode", "fetch", "policy", "answer", "enforce"),
    [
        ("enforce", "enforce", {"status": "success"}, {"valid": True}, Y, Y),
        ("testing", "testing", {"status": "success"}, {"valid": True}, Y, N),
        ("fetched-unusable", None, {"status": "success"}, {"valid": False}, N, N),
        ("http-404", None, {"status": "application-error", "http_status": 404}, None, N, N),
        ("no-http-answer", None, {"status": "connection-timeout", "http_status": None}, None, U, U),
        ("not-fetched", None, None, None, U, U),
    ],
)
def test_sts_policy_and_enforce(
    name: str, mode: str | None, fetch: Any, policy: Any, answer: Answer, enforce: Answer
) -> None:
    rec = record()
    rec["mta_sts"].update(mode=mode, fetch=fetch, policy=policy)
    facts = answers(rec)
    assert (facts.sts_policy, facts.sts_enforce, facts.sts_mode) == (answer, enforce, mode), name


def test_sts_policy_follows_an_unsettled_record() -> None:
    rec = record()
    rec["mta_sts"].update(record={"present": False, "valid": None}, mode=None, fetch=None, policy=None)
    assert answers(rec).sts_policy is U
    rec["mta_sts"]["record"]["valid"] = False
    assert answers(rec).sts_policy is N


def test_delegated_record_only_counts_when_valid() -> None:
    rec = record()
    rec["mta_sts"]["txt_cname"] = ["sts.provider.example"]
    assert answers(rec).sts_delegated is True
    rec["mta_sts"]["record"]["valid"] = False
    assert answers(rec).sts_delegated is False


def test_a_fully_settled_record_has_no_unknown_question() -> None:
    facts = answers(record())
    assert facts.unknown() == ()
    assert {key: ask(facts) for key, ask in QUESTIONS.items()} == dict.fromkeys(QUESTIONS, Y)


def test_unknown_names_exactly_the_unsettled_questions() -> None:
    rec = record(dns=dns(mx=lookup(dnssec="indeterminate")))
    rec["posture"]["pkix_valid"] = "unknown"
    assert answers(rec).unknown() == ("pkix", "dnssec", "dane")


def test_not_measured_is_never_reported_as_unknown() -> None:
    facts = answers(record(posture=None, mta_sts=None, tlsrpt=None, dns=None))
    assert facts.unknown() == ()
    assert set(QUESTIONS) == {
        "mx",
        "starttls",
        "pkix",
        "dnssec",
        "dane",
        "sts_record",
        "sts_policy",
        "tlsrpt",
    }
    assert {ask(facts) for ask in QUESTIONS.values()} == {NM}


def test_a_malformed_roll_up_value_is_not_measured_not_a_crash() -> None:
    rec = record()
    rec["posture"]["starttls"] = ["all"]
    rec["dns"]["mx"]["dnssec"] = {"secure": True}
    facts = answers(rec)
    assert (facts.starttls.answer, facts.dnssec.answer) == (NM, U)
    assert facts.dnssec.kind is None and Dnssec.SECURE.value == "secure"
