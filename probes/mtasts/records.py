"""Typed MTA-STS results: the TXT record, the HTTPS policy fetch, the policy,
its MX coverage, and the cross-check findings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.status import Status
from probes.mtasts.match import Coverage
from probes.mtasts.policy import StsPolicy
from probes.mtasts.record import StsRecord
from probes.tls.certs import ChainFacts
from probes.tls.verify import PkixResult

__all__ = ["Finding", "MtaStsResult", "PolicyFetch"]


class Finding(StrEnum):
    """Cross-check findings: first-class misconfigurations, not buried warnings."""

    #: enforce (or testing) policy, but no MX is both covered and PKIX-valid for its name:
    #: a sender applying the policy cannot deliver (enforce: mail is lost).
    ENFORCE_WOULD_FAIL = "enforce-would-fail"
    TESTING_WOULD_FAIL = "testing-would-fail"
    #: An MX host no policy pattern matches (senders applying the policy skip it).
    MX_NOT_COVERED = "mx-not-covered"
    #: A policy pattern that matches no MX host.
    STALE_MX_PATTERN = "stale-mx-pattern"
    #: A valid STSv1 TXT record, but no valid policy could be fetched.
    TXT_WITHOUT_POLICY = "txt-without-policy"
    #: A policy is served at mta-sts.<domain>, but there is no valid TXT record.
    POLICY_WITHOUT_TXT = "policy-without-txt"
    #: TLS-RPT is published, but neither MTA-STS nor DANE is: reports about nothing.
    TLSRPT_WITHOUT_POLICY = "tlsrpt-without-mta-sts-or-dane"
    #: DANE and MTA-STS are both present and disagree about an MX host.
    DANE_MTA_STS_DISAGREE = "dane-mta-sts-disagree"


@dataclass(frozen=True, slots=True)
class PolicyFetch:
    """One HTTPS fetch of https://mta-sts.<domain>/.well-known/mta-sts.txt (RFC 8461 §3.3).

    Fields:
      url: the URL fetched.
      address: the IP address connected to ("" if none).
      status: success (a 200 text/plain body within the cap) or how the fetch failed.
      http_status: the HTTP status code, or null without a response.
      content_type: the Content-Type header as sent ("" when absent).
      location: the Location header of a 3xx response (never followed), else "".
      body_bytes: bytes of body read (at most the 64 KiB cap + 1).
      tls_version: the negotiated TLS version ("" without a handshake).
      chain: facts of the certificates the policy host presented.
      pkix: PKIX verification of that chain for mta-sts.<domain>; null without a chain.
      detail: why the status is not success (bounded text), else "".
      duration_ms: wall-clock time of the fetch in milliseconds.
    """

    url: str
    address: str
    status: Status
    http_status: int | None
    content_type: str
    location: str
    body_bytes: int
    tls_version: str
    chain: ChainFacts | None
    pkix: PkixResult | None
    detail: str
    duration_ms: float

    @classmethod
    def not_fetched(cls, url: str, address: str, status: Status, detail: str) -> PolicyFetch:
        """The record for a policy host no fetch measured (excluded, or the fetch gave nothing):
        the policy is then unknown, never absent."""
        return cls(
            url=url,
            address=address,
            status=status,
            http_status=None,
            content_type="",
            location="",
            body_bytes=0,
            tls_version="",
            chain=None,
            pkix=None,
            detail=detail,
            duration_ms=0.0,
        )


@dataclass(frozen=True, slots=True)
class MtaStsResult:
    """The MTA-STS side of a domain.

    Fields:
      record: the _mta-sts TXT records as RFC 8461 §3.1 judges them.
      txt_cname: CNAME chain of _mta-sts.<domain> (delegated policy hosting), possibly empty.
      policy_host: "mta-sts.<domain>".
      policy_host_cname: CNAME chain of the policy host, possibly empty.
      policy_host_provider: the provider hosting the policy (registrable domain of the last
        CNAME target, or of the policy host), null when unknown.
      fetch: the policy fetch; null when not attempted (the policy host has no address).
      policy: the parsed policy; null when no body was obtained.
      coverage: how the policy's mx patterns cover the domain's MX hosts; null without policy.
      mode: the effective mode (enforce / testing / none) of a valid record and policy, else null.
      would_deliver: for enforce/testing: whether at least one MX is covered AND has a PKIX-valid
        certificate for its name; null when not applicable or unknown (SMTP not measured).
      findings: cross-check findings (see Finding), sorted.
    """

    record: StsRecord
    txt_cname: tuple[str, ...]
    policy_host: str
    policy_host_cname: tuple[str, ...]
    policy_host_provider: str | None
    fetch: PolicyFetch | None
    policy: StsPolicy | None
    coverage: Coverage | None
    mode: str | None
    would_deliver: bool | None
    findings: tuple[Finding, ...]
