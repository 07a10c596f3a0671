"""A domain whose ``_mta-sts`` TXT lookup settles "no record" (NOERROR without a TXT record,
NXDOMAIN, or only other TXT records) does not publish MTA-STS (RFC 8461 §3.1: senders
discover a policy only through that record), even when mta-sts.<domain> serves a usable
policy: the record says no record and no mode, and the study's reduction counts neither
an MTA-STS record nor a policy (no adoption); only a failed lookup is unknown."""

from __future__ import annotations

import orjson
import pytest

from engine.records import encode
from engine.status import Status
from probes.dns.records import Answer, Dnssec, Outcome
from probes.mtasts.assess import assess_mta_sts
from probes.mtasts.records import Finding, PolicyFetch
from probes.posture import Answer as Said
from probes.posture import answers
from probes.tls.verify import PkixReason, PkixResult

POLICY = b"version: STSv1\nmode: enforce\nmx: mx.a.test\nmax_age: 86400\n"
URL = "https://mta-sts.a.test/.well-known/mta-sts.txt"
FETCH = PolicyFetch(
    URL, "127.0.0.1", Status.SUCCESS, 200, "text/plain", "", len(POLICY), "TLSv1.3", None,
    PkixResult(True, next(iter(PkixReason)), "", "root"), "", 1.0,
)  # fmt: skip


def txt(outcome: Outcome, *data: str) -> Answer:
    return Answer(
        "_mta-sts.a.test", "TXT", outcome, Dnssec.INSECURE, False, None, (), data, "NOERROR", (), ""
    )


def record_of(sts_txt: Answer) -> dict[str, object]:
    result = assess_mta_sts(
        domain="a.test", sts_txt=sts_txt, policy_host_a=None, fetch=FETCH, body=POLICY,
        mx_hosts=["mx.a.test"], pkix_by_host={"mx.a.test": True}, dane_by_host={},
        tlsrpt_valid=None, dane_published=False, provider_of=lambda _host: None,
    )  # fmt: skip
    return {
        "domain": "a.test",
        "status": "success",
        "dns": {"mta_sts": orjson.loads(encode(sts_txt))},
        "mta_sts": orjson.loads(encode(result)),
    }


@pytest.mark.parametrize(
    "sts_txt",
    [txt(Outcome.NODATA), txt(Outcome.NXDOMAIN), txt(Outcome.OK, "v=spf1 -all")],
    ids=["noerror-no-txt", "nxdomain", "other-txt-only"],
)
def test_a_policy_served_without_an_sts_record_is_not_mta_sts_adoption(sts_txt: Answer) -> None:
    record = record_of(sts_txt)
    sts = record["mta_sts"]
    assert isinstance(sts, dict)
    assert (sts["record"]["present"], sts["record"]["valid"], sts["mode"]) == (False, False, None)
    assert sts["findings"] == [Finding.POLICY_WITHOUT_TXT]
    facts = answers(record)
    assert (facts.sts_record, facts.sts_policy, facts.sts_mode, facts.sts_enforce) == (
        Said.NO, Said.NO, None, Said.NO,
    )  # fmt: skip


def test_a_failed_sts_lookup_leaves_record_and_policy_unknown_whatever_the_policy_host_serves() -> None:
    facts = answers(record_of(txt(Outcome.SERVFAIL)))
    assert (facts.sts_record, facts.sts_policy, facts.sts_mode) == (Said.UNKNOWN, Said.UNKNOWN, None)
