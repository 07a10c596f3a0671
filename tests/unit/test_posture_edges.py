"""Edges of the one reduction (probes/posture.py) the case tables of test_posture.py leave open:
sections or keys a record lacks, several MX hosts, the most preferred host, the per-host
rules as a results file spells them.  Found by mutation testing (issue #19)."""

from __future__ import annotations

from typing import Any

import pytest

from probes.posture import (
    Answer,
    MxKind,
    answers,
    coverage,
    dns_unsettled,
    host_pkix_of,
    host_starttls_of,
    host_tlsa,
    preferred_transport,
)
from probes.transport import Coverage3
from tests.unit.test_posture import STS_TXT, dns, lookup, record, tlsa_host

Y, N, U, NM = Answer.YES, Answer.NO, Answer.UNKNOWN, Answer.NOT_MEASURED


@pytest.mark.parametrize(
    ("outcome", "unsettled"),
    [
        ("ok", False),
        ("nodata", False),
        ("nxdomain", False),
        ("servfail", True),
        ("refused", True),
        ("timeout", True),
        ("error", True),
        (None, False),
        ("no-such-outcome", False),
    ],
)
def test_only_a_failed_lookup_is_unsettled(outcome: str | None, unsettled: bool) -> None:
    assert dns_unsettled(outcome) is unsettled


# --- identity of the record ----------------------------------------------------------------


def test_a_record_without_status_or_domain_reads_as_a_crash_of_no_name() -> None:
    facts = answers({})
    assert (facts.domain, facts.status, facts.valid_name) == ("", "unknown-error", True)
    assert {facts.mx.answer, facts.starttls.answer, facts.dane, facts.sts_record, facts.tlsrpt} == {NM}
    assert (facts.dane_from_dns, facts.sts_from_dns, facts.sts_delegated) == (False, False, False)
    assert (facts.sts_id, facts.sts_mode, facts.provider, facts.tlsa) == ("", None, None, ())


def test_an_invalid_input_line_is_not_a_valid_name() -> None:
    facts = answers({"domain": "not a name", "status": "invalid-input"})
    assert (facts.domain, facts.status, facts.valid_name) == ("not a name", "invalid-input", False)


# --- MX ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "section", "kind"),
    [
        ("no-mx-answer-no-implicit", {"has_mx": False, "mx": None, "implicit_mx": None}, MxKind.NO_MX),
        ("no-keys-at-all", {}, MxKind.NO_MX),
        (
            "implicit-over-ipv6-only",
            {"has_mx": False, "mx": lookup("nodata"), "implicit_mx": {"a": None, "aaaa": lookup()}},
            MxKind.IMPLICIT_ONLY,
        ),
        (
            "implicit-lookups-without-answers",
            {"has_mx": False, "mx": lookup("nodata"), "implicit_mx": {"a": lookup("nodata"), "aaaa": None}},
            MxKind.NO_MX,
        ),
    ],
)
def test_mx_question_from_partial_dns_sections(name: str, section: dict[str, Any], kind: MxKind) -> None:
    reading = answers(record(dns=section)).mx
    assert (reading.answer, reading.kind) == (N, kind), name


def test_a_null_mx_beside_an_unsettled_mx_answer_is_still_a_null_mx() -> None:
    reading = answers(record(dns=dns(has_mx=False, null_mx=True, mx=lookup("timeout")))).mx
    assert (reading.answer, reading.kind, reading.text) == (N, MxKind.NULL_MX, "null-mx")


def test_dnssec_of_a_dns_section_without_an_mx_answer_is_unknown() -> None:
    facts = answers(record(dns={"has_mx": False}))
    assert (facts.dnssec.answer, facts.dnssec.kind) == (U, None)


# --- coverage --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("posture", "answer", "kind"),
    [
        (None, NM, None),
        ({}, NM, None),
        ({"dane_valid": None}, NM, None),
        ({"dane_valid": "all"}, Y, Coverage3.ALL),
        ({"dane_valid": "none"}, N, Coverage3.NONE),
        ({"dane_valid": "unknown"}, U, None),
        ({"dane_valid": "not-applicable"}, NM, None),
        ({"dane_valid": "sometimes"}, NM, None),
    ],
)
def test_coverage_of_a_roll_up(
    posture: dict[str, Any] | None, answer: Answer, kind: Coverage3 | None
) -> None:
    reading = coverage(posture, "dane_valid")
    assert (reading.answer, reading.kind) == (answer, kind)


# --- TLSA and DANE -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "host", "answer"),
    [
        ("secure-answer-without-data-key", tlsa_host({"outcome": "ok", "dnssec": "secure"}), N),
        ("secure-answer-data-null", tlsa_host({"outcome": "ok", "dnssec": "secure", "data": None}), N),
        ("dnssec-unknown", tlsa_host(lookup("nodata", "unknown")), U),
        ("records-dnssec-unknown", tlsa_host(lookup(dnssec="unknown", data=("3 1 1 aa",))), U),
        ("bogus", tlsa_host(lookup("nodata", "bogus")), N),
        ("not-looked-up-no-reason", tlsa_host(None, None), N),
        (
            "ipv6-lookup-failed",
            tlsa_host(None, "address-unresolved", a=lookup("nxdomain"), aaaa=lookup("servfail")),
            U,
        ),
        ("ipv6-lookup-missing", tlsa_host(None, "address-unresolved", a=lookup("nodata"), aaaa=None), U),
    ],
)
def test_host_tlsa_edges(name: str, host: dict[str, Any], answer: Answer) -> None:
    assert host_tlsa(host) is answer, name


def test_tlsa_lists_every_secure_record_of_every_host_sorted() -> None:
    hosts = [
        {**tlsa_host(lookup(data=("3 1 1 bb", "3 0 1 cc"))), "host": "mx2.example.com"},
        tlsa_host(lookup("nodata")),
        {**tlsa_host(lookup(data=("3 1 1 aa",))), "host": "mx1.example.com"},
        {k: v for k, v in tlsa_host(lookup(data=("2 0 1 dd",))).items() if k != "host"},
    ]
    facts = answers(record(dns=dns(mx_hosts=hosts)))
    assert facts.tlsa == (
        " 2 0 1 dd",
        "mx1.example.com 3 1 1 aa",
        "mx2.example.com 3 0 1 cc",
        "mx2.example.com 3 1 1 bb",
    )


@pytest.mark.parametrize(
    ("name", "hosts", "answer"),
    [
        # One host could not be asked: the DANE answer stays unknown whatever the hosts after it.
        ("unsettled-then-no", [tlsa_host(lookup("timeout")), tlsa_host(lookup("nodata"))], U),
        ("no-then-unsettled", [tlsa_host(lookup("nodata")), tlsa_host(lookup("timeout"))], U),
        (
            "unsettled-then-published",
            [tlsa_host(lookup("timeout")), tlsa_host(lookup(data=("3 1 1 aa",)))],
            Y,
        ),
        ("no-hosts", [], N),
    ],
)
def test_dane_derived_from_dns_over_several_hosts(
    name: str, hosts: list[dict[str, Any]], answer: Answer
) -> None:
    facts = answers(record(posture=None, dns=dns(mx_hosts=hosts)))
    assert (facts.dane, facts.dane_from_dns) == (answer, True), name


def test_a_posture_without_dane_published_derives_dane_from_dns() -> None:
    rec = record(dns=dns(mx_hosts=[tlsa_host(lookup(data=("3 1 1 aa",)))]))
    del rec["posture"]["dane_published"]
    assert (answers(rec).dane, answers(rec).dane_from_dns) == (Y, True)
    rec["dns"]["mx_hosts"] = [tlsa_host(lookup("nodata"))]
    assert (answers(rec).dane, answers(rec).dane_from_dns) == (N, True)


def test_the_posture_decides_dane_over_the_dns_answers_when_it_has_the_field() -> None:
    # The scan's own roll-up said no although a secure TLSA answer is in the file (and yes
    # although none is): the posture is read, not re-derived.
    rec = record(dns=dns(mx_hosts=[tlsa_host(lookup(data=("3 1 1 aa",)))]))
    rec["posture"]["dane_published"] = False
    assert (answers(rec).dane, answers(rec).dane_from_dns) == (N, False)
    rec = record(dns=dns(mx_hosts=[]))
    rec["posture"]["dane_published"] = True
    assert (answers(rec).dane, answers(rec).dane_from_dns) == (Y, False)


@pytest.mark.parametrize(("mx_dnssec", "answer"), [("insecure", N), ("bogus", N), ("indeterminate", U)])
def test_dane_derived_from_dns_needs_a_secure_mx_answer(mx_dnssec: str, answer: Answer) -> None:
    facts = answers(record(posture=None, dns=dns(mx=lookup(dnssec=mx_dnssec))))
    assert (facts.dane, facts.dane_from_dns) == (answer, True)


# --- MTA-STS and TLS-RPT -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "txt", "answer"),
    [
        ("ok-without-data", {"outcome": "ok"}, N),
        ("ok-data-null", {"outcome": "ok", "data": None}, N),
        ("no-outcome", {}, U),
        ("nodata", lookup("nodata"), N),
    ],
)
def test_txt_answers_derived_from_dns_edges(name: str, txt: dict[str, Any], answer: Answer) -> None:
    facts = answers(record(mta_sts=None, tlsrpt=None, dns=dns(mta_sts=txt, tlsrpt=txt)))
    assert (facts.sts_record, facts.tlsrpt) == (answer, answer), name


def test_a_dns_section_without_the_txt_answers_is_unknown() -> None:
    section = dns()
    del section["mta_sts"], section["tlsrpt"]
    facts = answers(record(mta_sts=None, tlsrpt=None, dns=section))
    assert (facts.sts_record, facts.tlsrpt) == (U, U)


def test_a_delegated_sts_record_derived_from_dns() -> None:
    delegated = {**lookup(data=(STS_TXT,)), "cname_chain": ["_mta-sts.provider.example"]}
    facts = answers(record(mta_sts=None, dns=dns(mta_sts=delegated)))
    assert (facts.sts_delegated, facts.sts_from_dns, facts.sts_id, facts.sts_mode) == (True, True, "", None)
    assert answers(record(mta_sts=None, dns=dns(mta_sts=lookup(data=(STS_TXT,))))).sts_delegated is False
    invalid = {**lookup(data=("v=STSv2;",)), "cname_chain": ["_mta-sts.provider.example"]}
    assert answers(record(mta_sts=None, dns=dns(mta_sts=invalid))).sts_delegated is False


def test_a_tls_rpt_record_in_its_section_settles_it_without_dns() -> None:
    assert answers(record(dns=None)).tlsrpt is Y
    rec = record(dns=None)
    rec["tlsrpt"]["valid"] = False
    assert answers(rec).tlsrpt is N


def test_an_sts_section_without_record_or_dns_is_unknown_not_a_crash() -> None:
    facts = answers(record(dns=None, mta_sts={}))
    assert (facts.sts_record, facts.sts_policy, facts.sts_enforce, facts.sts_id) == (U, U, U, "")
    assert (facts.sts_from_dns, facts.sts_delegated, facts.sts_mode) == (False, False, None)


@pytest.mark.parametrize(
    ("name", "fetch", "policy", "answer"),
    [
        # The server answered: no usable policy is definite.
        ("success-without-http-status", {"status": "success"}, None, N),
        ("http-status-without-success", {"status": "tls-error", "http_status": 500}, None, N),
        # A policy section says a policy was read, whatever the fetch record lacks.
        ("policy-without-fetch", None, {"valid": False}, N),
        ("no-answer-no-policy", {"status": "tls-error"}, None, U),
    ],
)
def test_sts_policy_of_a_valid_record_without_a_mode(
    name: str, fetch: dict[str, Any] | None, policy: dict[str, Any] | None, answer: Answer
) -> None:
    rec = record()
    rec["mta_sts"].update(mode=None, fetch=fetch, policy=policy)
    facts = answers(rec)
    expected_enforce = N if answer is N else U
    assert (facts.sts_policy, facts.sts_enforce, facts.sts_mode) == (answer, expected_enforce, None), name


def test_sts_id_and_mode_come_from_the_section() -> None:
    facts = answers(record())
    assert (facts.sts_id, facts.sts_mode, facts.sts_from_dns) == ("20260101T000000", "enforce", False)
    rec = record()
    rec["mta_sts"]["record"]["id"] = None
    assert answers(rec).sts_id == ""
    # No record section: the record's validity was never said, unknown (never a no).
    rec["mta_sts"]["record"] = None
    assert (answers(rec).sts_id, answers(rec).sts_record) == ("", U)


def test_enforce_of_a_policy_not_measured_stays_not_measured() -> None:
    facts = answers(record(mta_sts=None))
    assert (facts.sts_record, facts.sts_policy, facts.sts_enforce) == (Y, NM, NM)


# --- the most preferred MX host --------------------------------------------------------------


def test_preferred_transport_is_the_lowest_preference_then_the_first_name() -> None:
    transports = [
        {"host": "b.example", "preference": 10, "provider": "b"},
        {"host": "z.example", "preference": 5, "provider": "z"},
        {"host": "a.example", "preference": 10, "provider": "a"},
        {"host": "c.example", "preference": 5, "provider": "c"},
    ]
    assert preferred_transport({"mx_transport": transports}) == transports[3]
    assert answers(record(mx_transport=transports)).provider == "c"


def test_preferred_transport_ranks_a_missing_preference_last() -> None:
    transports = [
        {"host": "a.example", "provider": "a"},
        {"host": "b.example", "preference": 65535, "provider": "b"},
    ]
    assert preferred_transport({"mx_transport": transports}) == transports[1]
    no_name = [{"preference": 10, "provider": "x"}, {"host": "", "preference": 10, "provider": "y"}]
    assert preferred_transport({"mx_transport": no_name}) == no_name[0]


@pytest.mark.parametrize("transports", [None, []])
def test_no_transport_means_no_provider(transports: list[Any] | None) -> None:
    assert preferred_transport({"mx_transport": transports}) is None
    assert preferred_transport({}) is None
    assert answers(record(mx_transport=transports)).provider is None


# --- one host's SMTP results as a results file holds them ----------------------------------------


@pytest.mark.parametrize(
    ("states", "offers"),
    [
        (["yes"], True),
        (["no", "yes"], True),
        (["no", "no"], False),
        (["no", None], None),
        (["no", "unknown"], None),
        ([], None),
    ],
)
def test_host_starttls_of_addresses(states: list[str | None], offers: bool | None) -> None:
    addresses = [{"starttls": s} if s is not None else {} for s in states]
    assert host_starttls_of(addresses) is offers


@pytest.mark.parametrize(
    ("addresses", "valid"),
    [
        ([{"starttls": "yes", "pkix": {"valid": True}}], True),
        ([{"starttls": "yes", "pkix": {"valid": False}}, {"starttls": "yes", "pkix": {"valid": True}}], True),
        ([{"starttls": "yes", "pkix": {"valid": False}}], False),
        # A verdict without its valid field is an invalid chain, not a missing verdict.
        ([{"starttls": "yes", "pkix": {}}], False),
        ([{"starttls": "no", "pkix": None}], False),
        ([{"starttls": "yes", "pkix": {"valid": False}}, {"starttls": "no"}], False),
        ([{"starttls": "yes", "pkix": None}], None),
        ([{"starttls": "unknown"}], None),
        ([{"starttls": "yes", "pkix": {"valid": False}}, {"starttls": "yes"}], None),
        ([], None),
    ],
)
def test_host_pkix_of_addresses(addresses: list[dict[str, Any]], valid: bool | None) -> None:
    assert host_pkix_of(addresses) is valid
