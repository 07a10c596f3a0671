"""The MTA-STS side of a domain and its cross-checks: pure, no I/O.

Theory of operation
-------------------
``assess_mta_sts`` takes what the shells observed (the ``_mta-sts`` TXT
answer, the policy host's address answer, the policy fetch and its body, the
MX hosts with their PKIX and DANE verdicts, TLS-RPT and DANE publication) and
returns one ``MtaStsResult``.  Three notions, each defined once below:

* the **record** is valid: exactly one ``v=STSv1`` TXT record fitting RFC 8461
  §3.1 (``assess_sts_answer``); unknown (``valid`` null) when the TXT lookup
  failed, which no finding below reads as "no record";
* the **policy is usable**: fetched with status success (a 200 ``text/plain``
  body within the cap, §3.3), over a PKIX-valid certificate for
  ``mta-sts.<domain>`` (§3.3: "the certificate presented by the Policy Host
  MUST be valid"), and valid by §3.2 (``parse_policy``);
* the **effective mode**: the policy's mode, only when the record is valid AND
  the policy is usable (§3.3, §5: otherwise a sender has no policy to apply).

A sender applying an enforce or testing policy delivers to an MX host only if
its name matches a policy ``mx`` pattern (§4.1) AND it presents a PKIX-valid
certificate for that name (§4.2).  ``would_deliver`` asks whether at least one
MX host passes both: True when one does; None when none does but some covered
host's certificate is unknown (SMTP not measured); else False.

Findings (each rule names its RFC section; all sorted, without repeats):

* ``enforce-would-fail`` / ``testing-would-fail``: effective mode enforce /
  testing and ``would_deliver`` is False (§5: under enforce, mail to such a
  domain is not delivered; under testing it is, but reported via TLS-RPT).
* ``mx-not-covered``: a valid policy in enforce or testing mode leaves some
  MX host unmatched (§4.1: senders applying it skip that host).  The policy
  need not be effective: it is wrong as written.
* ``stale-mx-pattern``: a valid enforce/testing policy has a pattern matching
  none of the domain's MX hosts (§3.2 mx; a leftover or typo).  Only said when
  the domain has MX hosts.
* ``txt-without-policy``: the record is valid but the policy is not usable
  (§3.3: the sender then has no policy; a half-deployed MTA-STS).
* ``policy-without-txt``: a usable policy is served but the TXT lookup
  definitively gave no valid record (§3.1: senders discover policies only via
  the TXT record, so the policy is never applied).  Not said when the TXT
  lookup failed (timeout, SERVFAIL): that is unknown, not absent.
* ``tlsrpt-without-mta-sts-or-dane``: a valid TLS-RPT record (RFC 8460 §3),
  but no valid MTA-STS record and no DANE (RFC 8460 §1: reports are about
  MTA-STS or DANE validation, so there is nothing to report on).  Needs both
  TXT answers definite, as above, and DANE known to be absent: not said while
  some MX host's DANE status is undetermined (its TLSA lookup failed, or the
  resolver does not validate).
* ``dane-mta-sts-disagree``: effective mode enforce/testing and, for some MX
  host, DANE says "deliver" (status valid) while MTA-STS says "refuse" (not
  covered, or a certificate known to be PKIX-invalid), or DANE says "refuse"
  (mismatch, or bogus: RFC 7672 §2.2) while MTA-STS accepts (covered and
  PKIX-valid).  RFC 8461 §2 lets a sender supporting both prefer DANE, so the
  domain's senders disagree on what is deliverable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from engine.status import Status
from probes.dane.tlsa import DaneResult, DaneStatus
from probes.dns.records import Answer
from probes.mtasts.match import Coverage, coverage, normalize_name
from probes.mtasts.policy import Mode, StsPolicy, parse_policy
from probes.mtasts.record import assess_sts_answer
from probes.mtasts.records import Finding, MtaStsResult, PolicyFetch

__all__ = ["assess_mta_sts", "policy_usable", "would_deliver"]

#: DANE statuses under which a DANE sender refuses the host (RFC 7672 §2.2, §3).
_DANE_REFUSES = frozenset({DaneStatus.MISMATCH, DaneStatus.BOGUS})
_APPLIED_MODES = (Mode.ENFORCE, Mode.TESTING)


def _lookup(table: Mapping[str, object], host: str) -> object:
    """``table[host]``, also under the normalised name (lowercase, no final dot)."""
    if host in table:
        return table[host]
    key = normalize_name(host)
    if key is not None:
        for name, value in table.items():
            if normalize_name(name) == key:
                return value
    return None


def policy_usable(fetch: PolicyFetch | None, policy: StsPolicy | None) -> bool:
    """Fetched with success over a PKIX-valid chain and valid by §3.2 (RFC 8461 §3.3)."""
    return (
        fetch is not None
        and fetch.status is Status.SUCCESS
        and fetch.pkix is not None
        and fetch.pkix.valid
        and policy is not None
        and policy.valid
    )


def would_deliver(cover: Coverage, pkix_by_host: Mapping[str, bool | None]) -> bool | None:
    """Whether some MX host is covered (§4.1) AND PKIX-valid (§4.2); None when unknown."""
    if not cover.hosts:
        return None  # no MX host: nothing to deliver to, the question does not apply
    unknown = False
    for entry in cover.hosts:
        if entry.pattern is None:
            continue
        valid = _lookup(pkix_by_host, entry.host)
        if valid is True:
            return True
        unknown = unknown or valid is None
    return None if unknown else False


def _disagrees(
    host: str,
    covered: bool,
    pkix_by_host: Mapping[str, bool | None],
    dane_by_host: Mapping[str, DaneResult | None],
) -> bool:
    dane = _lookup(dane_by_host, host)
    if not isinstance(dane, DaneResult):
        return False
    pkix = _lookup(pkix_by_host, host)
    sts_accepts = covered and pkix is True
    sts_refuses = not covered or pkix is False
    return (dane.status is DaneStatus.VALID and sts_refuses) or (dane.status in _DANE_REFUSES and sts_accepts)


def _dane_unknown(dane_by_host: Mapping[str, DaneResult | None]) -> bool:
    """Some MX host's DANE status is undetermined: "no DANE" cannot be said for the domain."""
    return any(d is not None and d.status is DaneStatus.UNDETERMINED for d in dane_by_host.values())


def _senders_disagree(
    cover: Coverage,
    pkix_by_host: Mapping[str, bool | None],
    dane_by_host: Mapping[str, DaneResult | None],
) -> bool:
    """For some MX host a DANE sender and an MTA-STS sender decide differently (RFC 8461 §2)."""
    return any(
        _disagrees(entry.host, entry.pattern is not None, pkix_by_host, dane_by_host) for entry in cover.hosts
    )


def assess_mta_sts(
    *,
    domain: str,
    sts_txt: Answer,
    policy_host_a: Answer | None,
    fetch: PolicyFetch | None,
    body: bytes | None,
    mx_hosts: Sequence[str],
    pkix_by_host: Mapping[str, bool | None],
    dane_by_host: Mapping[str, DaneResult | None],
    tlsrpt_valid: bool | None,
    dane_published: bool,
    provider_of: Callable[[str], str | None],
) -> MtaStsResult:
    """The MTA-STS result of ``domain`` with its cross-check findings (see the module docstring)."""
    record = assess_sts_answer(sts_txt)
    # "No valid record" is a fact only after a definite answer: a failed lookup leaves valid None.
    no_record = record.valid is False
    policy_host = f"mta-sts.{domain}"
    host_cname = tuple(policy_host_a.cname_chain) if policy_host_a is not None else ()
    policy = parse_policy(body) if body is not None else None
    cover = coverage(policy.mx, mx_hosts) if policy is not None else None
    usable = policy_usable(fetch, policy)
    mode = policy.mode if (record.valid and usable and policy is not None) else None
    deliver = would_deliver(cover, pkix_by_host) if cover is not None and mode in _APPLIED_MODES else None

    findings: set[Finding] = set()
    if deliver is False:
        findings.add(Finding.ENFORCE_WOULD_FAIL if mode is Mode.ENFORCE else Finding.TESTING_WOULD_FAIL)
    applies = policy is not None and policy.valid and policy.mode in _APPLIED_MODES
    if applies and cover is not None:
        if cover.uncovered:
            findings.add(Finding.MX_NOT_COVERED)
        if cover.stale_patterns and cover.hosts:
            findings.add(Finding.STALE_MX_PATTERN)
    if record.valid and not usable:
        findings.add(Finding.TXT_WITHOUT_POLICY)
    if usable and no_record:
        findings.add(Finding.POLICY_WITHOUT_TXT)
    if tlsrpt_valid and no_record and not dane_published and not _dane_unknown(dane_by_host):
        findings.add(Finding.TLSRPT_WITHOUT_POLICY)
    if mode in _APPLIED_MODES and cover is not None and _senders_disagree(cover, pkix_by_host, dane_by_host):
        findings.add(Finding.DANE_MTA_STS_DISAGREE)

    return MtaStsResult(
        record=record,
        txt_cname=tuple(sts_txt.cname_chain),
        policy_host=policy_host,
        policy_host_cname=host_cname,
        policy_host_provider=provider_of(host_cname[-1] if host_cname else policy_host),
        fetch=fetch,
        policy=policy,
        coverage=cover,
        mode=mode.value if mode is not None else None,
        would_deliver=deliver,
        findings=tuple(sorted(findings)),
    )
