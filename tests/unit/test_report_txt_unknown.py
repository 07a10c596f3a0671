"""The report's TLS-RPT and MTA-STS record figures count a failed TXT lookup as unknown,
never as "no" (issue #13 item 9): records written now (present/valid null) and records
from files written before (present/valid false beside the failed DNS answer)."""

from __future__ import annotations

from typing import Any

import pytest

from probes.posture import Answer
from probes.posture import answers as domain_facts
from report.figures import Headline, headline_figures

YES, NO, UNKNOWN = Answer.YES, Answer.NO, Answer.UNKNOWN

FAILED = ["servfail", "refused", "timeout", "error"]


def answer(outcome: str, *data: str) -> dict[str, Any]:
    return {"outcome": outcome, "data": list(data), "cname_chain": [], "dnssec": "insecure"}


def record(
    *, tlsrpt: dict[str, Any] | None, sts: dict[str, Any] | None, rpt: str, sts_dns: str
) -> dict[str, Any]:
    """A domain line with MX, as ``orjson`` reads it, cut to what the figures read."""
    return {
        "domain": "example.test",
        "status": "success",
        "dns": {
            "has_mx": True,
            "mx": answer("ok", "10 mx.example.test"),
            "mx_hosts": [],
            "mta_sts": answer(sts_dns),
            "tlsrpt": answer(rpt),
        },
        "posture": None,
        "mta_sts": None if sts is None else {"record": sts, "mode": None, "fetch": None, "policy": None},
        "tlsrpt": tlsrpt,
    }


def unknown_record(outcome: str) -> dict[str, Any]:
    return {"present": None, "valid": None, "reasons": [f"lookup-failed:{outcome}"]}


def old_absent_record(code: str) -> dict[str, Any]:
    return {"present": False, "valid": False, "reasons": [code]}


@pytest.mark.parametrize("outcome", FAILED)
def test_failed_lookup_written_as_unknown_counts_unknown(outcome: str) -> None:
    facts = domain_facts(
        record(tlsrpt=unknown_record(outcome), sts=unknown_record(outcome), rpt=outcome, sts_dns=outcome)
    )
    assert (facts.tlsrpt, facts.sts_record) == (UNKNOWN, UNKNOWN)


@pytest.mark.parametrize("outcome", FAILED)
def test_failed_lookup_in_an_older_file_counts_unknown_not_no(outcome: str) -> None:
    """Files from before the null carried "no record" beside the failed answer."""
    facts = domain_facts(
        record(
            tlsrpt=old_absent_record("no-tlsrpt-record"),
            sts=old_absent_record("no-sts-record"),
            rpt=outcome,
            sts_dns=outcome,
        )
    )
    assert (facts.tlsrpt, facts.sts_record) == (UNKNOWN, UNKNOWN)


@pytest.mark.parametrize("outcome", ["nxdomain", "nodata"])
def test_definite_absence_counts_no(outcome: str) -> None:
    facts = domain_facts(
        record(
            tlsrpt=old_absent_record("no-tlsrpt-record"),
            sts=old_absent_record("no-sts-record"),
            rpt=outcome,
            sts_dns=outcome,
        )
    )
    assert (facts.tlsrpt, facts.sts_record) == (NO, NO)


def test_headline_keeps_unknown_apart_from_no() -> None:
    headline = Headline()
    valid = {"present": True, "valid": True, "reasons": []}
    headline.add(domain_facts(record(tlsrpt=valid, sts=valid, rpt="ok", sts_dns="ok")))
    headline.add(
        domain_facts(
            record(
                tlsrpt=unknown_record("servfail"),
                sts=unknown_record("timeout"),
                rpt="servfail",
                sts_dns="timeout",
            )
        )
    )
    headline.add(
        domain_facts(
            record(
                tlsrpt=old_absent_record("no-tlsrpt-record"),
                sts=old_absent_record("no-sts-record"),
                rpt="nxdomain",
                sts_dns="nxdomain",
            )
        )
    )
    figures = {f["key"]: f for f in headline_figures(headline)}
    for key in ("tlsrpt", "mta_sts"):
        assert (figures[key]["base"], figures[key]["count"], figures[key]["unknown"]) == (3, 1, 1), key
    assert domain_facts(record(tlsrpt=valid, sts=valid, rpt="ok", sts_dns="ok")).tlsrpt == YES
