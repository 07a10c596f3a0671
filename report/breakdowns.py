"""Failure breakdowns, misconfiguration lists and the reasons behind unknowns.

Split from ``figures`` (which holds the study's headline questions): these are
the tables beyond the study, fed the same ``DomainAnswers`` in the same pass.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

from engine.status import Status
from probes.dane.tlsa import DaneStatus
from probes.dns.records import Dnssec, TlsaSkip
from probes.mtasts.records import Finding
from probes.posture import Answer, DomainAnswers, MxKind, dns_unsettled
from probes.smtp.records import Starttls
from probes.tls.verify import PkixReason
from report.ptr import ptr_label

__all__ = [
    "CERT_INVALID",
    "STS_CERT_TITLE",
    "STS_FETCH_TITLE",
    "Breakdowns",
    "Capped",
    "report_view_of_smtp",
    "sts_fetch_outcome",
]


class Capped:
    """The ``cap`` smallest rows (so the list is the same however the file is ordered) and a total."""

    __slots__ = ("cap", "rows", "total")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.rows: list[tuple[str, ...]] = []
        self.total = 0

    def add(self, row: tuple[str, ...]) -> None:
        self.total += 1
        rows = self.rows
        if len(rows) >= self.cap and (not rows or row >= rows[-1]):
            return
        bisect.insort(rows, row)
        if len(rows) > self.cap:
            rows.pop()

    def result(self, columns: tuple[str, ...]) -> dict[str, Any]:
        return {
            "total": self.total,
            "shown": len(self.rows),
            "columns": list(columns),
            "rows": [list(r) for r in self.rows],
        }


#: TLSA not asked for a reason that leaves DANE unknown (the others settle it: no TLSA).
_TLSA_UNASKED = (TlsaSkip.ADDRESS_UNRESOLVED, TlsaSkip.RESOLVER_NOT_VALIDATING)
_DNSSEC_UNSETTLED = (Dnssec.INDETERMINATE, Dnssec.UNKNOWN)


def _code(reason: str) -> str:
    return reason.partition(":")[0] or "(empty)"


#: A policy fetch whose HTTPS exchange worked but whose certificate failed PKIX.  RFC 8461
#: §3.3 makes such a policy unusable; the fetch shell keeps the exchange's status
#: ``success`` (the HTTP part did work) with ``pkix.valid`` false, so a report that counted
#: the status alone would call a refused policy a success.
CERT_INVALID = "certificate-invalid"
#: A fetch recorded ``success`` without a certificate verdict (no chain could be read).
NO_CERT_VERDICT = "success, no certificate verdict"
STS_FETCH_TITLE = "MTA-STS: policy fetch outcome"
STS_CERT_TITLE = "MTA-STS: policy-host certificate failures by PKIX reason, domains"


def sts_fetch_outcome(fetch: dict[str, Any]) -> str:
    """The fetch status, except that a success whose certificate failed PKIX is CERT_INVALID."""
    status = str(fetch.get("status", "?"))
    if status != Status.SUCCESS:
        return status
    pkix = fetch.get("pkix")
    if pkix is None:
        return NO_CERT_VERDICT
    return Status.SUCCESS.value if pkix.get("valid") is True else CERT_INVALID


class Breakdowns:
    """Failure breakdowns, misconfiguration lists and the reasons behind unknowns.

    SMTP results are shared by every domain using an MX host, so SMTP and certificate
    outcomes are counted once per distinct (host, address, port) probe; DANE verdicts
    depend on the domain's MX answer and are counted per (domain, MX host).
    """

    def __init__(self, cap: int = 20) -> None:
        self.cap = cap
        self.invalid_reasons: Counter[str] = Counter()
        self.crash_reasons: Counter[str] = Counter()
        self.probe_errors: Counter[str] = Counter()
        self.dns_outcomes: Counter[str] = Counter()
        self.smtp_status: Counter[str] = Counter()
        self.smtp_starttls: Counter[str] = Counter()
        self.pkix_reasons: Counter[str] = Counter()
        self.plaintext_injection = 0
        self.dane_status: Counter[str] = Counter()
        self.sts_fetch: Counter[str] = Counter()
        self.sts_cert_reasons: Counter[str] = Counter()
        self.sts_findings: Counter[str] = Counter()
        self.sts_record_reasons: Counter[str] = Counter()
        self.sts_policy_reasons: Counter[str] = Counter()
        self.tlsrpt_reasons: Counter[str] = Counter()
        self.unknown_why: dict[str, Counter[str]] = {}
        self.enforce_would_fail = Capped(cap)
        self.dane_mismatch = Capped(cap)
        self.smtp_failures = Capped(cap)
        self.expired: dict[str, list[Any]] = {}
        self._probes_seen: set[tuple[str, str, int]] = set()

    def _why(self, question: str, reason: str) -> None:
        self.unknown_why.setdefault(question, Counter())[reason] += 1

    def add(self, record: dict[str, Any], facts: DomainAnswers) -> None:
        if facts.status == Status.INVALID_INPUT:
            self.invalid_reasons[_code(str(record.get("reason", "")))] += 1
            return
        if facts.status == Status.UNKNOWN_ERROR:
            self.crash_reasons[_code(str(record.get("reason", "")))] += 1
        for err in record.get("errors") or ():
            self.probe_errors[f"{err.get('probe', '?')} {err.get('status', '?')}"] += 1
        dns = record.get("dns")
        if dns is not None:
            mx = dns.get("mx") or {}
            self.dns_outcomes[f"{mx.get('outcome', '?')} / {mx.get('dnssec', '?')}"] += 1
        self._transports(record, facts)
        self._mta_sts(record, facts)
        tlsrpt = record.get("tlsrpt")
        if tlsrpt is not None and tlsrpt.get("present") and not tlsrpt.get("valid"):
            for reason in tlsrpt.get("reasons") or ():
                self.tlsrpt_reasons[_code(reason)] += 1
        if facts.mx.kind is MxKind.MX:
            self._unknowns(record, facts)

    def _transports(self, record: dict[str, Any], facts: DomainAnswers) -> None:
        seen = self._probes_seen
        expired_here: set[str] = set()
        for transport in record.get("mx_transport") or ():
            host = str(transport.get("host", ""))
            dane = transport.get("dane")
            if dane is not None:
                status = str(dane.get("status", "?"))
                self.dane_status[status] += 1
                if status == DaneStatus.MISMATCH:
                    self.dane_mismatch.add((facts.domain, host, str(dane.get("detail", ""))))
            for probe in transport.get("addresses") or ():
                pkix = probe.get("pkix")
                if pkix is not None and pkix.get("reason") == PkixReason.EXPIRED and host not in expired_here:
                    expired_here.add(host)
                    entry = self.expired.get(host)
                    if entry is None:
                        entry = [str(probe.get("address", "")), _not_after(probe), set(), 0]
                        self.expired[host] = entry
                    if len(entry[2]) < 3:
                        entry[2].add(facts.domain)
                    entry[3] += 1
                key = (host, str(probe.get("address", "")), int(probe.get("port", 25) or 25))
                if key in seen:
                    continue
                seen.add(key)
                status = str(probe.get("status", "?"))
                self.smtp_status[status] += 1
                self.smtp_starttls[str(probe.get("starttls", "?"))] += 1
                if pkix is not None:
                    self.pkix_reasons[str(pkix.get("reason", "?"))] += 1
                self.plaintext_injection += bool(probe.get("plaintext_injection"))
                if status != Status.SUCCESS:
                    self.smtp_failures.add(
                        (
                            host,
                            key[1],
                            status,
                            str(probe.get("phase", "")),
                            str(probe.get("banner", "")),
                            str((probe.get("ehlo") or {}).get("greeting_name", "")),
                            str(probe.get("detail") or probe.get("last_text") or ""),
                        )
                    )

    def _mta_sts(self, record: dict[str, Any], facts: DomainAnswers) -> None:
        mta_sts = record.get("mta_sts")
        if mta_sts is None:
            return
        rec = mta_sts.get("record") or {}
        if rec.get("present") and not rec.get("valid"):
            for reason in rec.get("reasons") or ():
                self.sts_record_reasons[_code(reason)] += 1
        fetch = mta_sts.get("fetch")
        if fetch is not None:
            self.sts_fetch[sts_fetch_outcome(fetch)] += 1
            pkix = fetch.get("pkix")
            # Every fetch whose policy host presented an invalid chain, whatever HTTP said after.
            if pkix is not None and pkix.get("valid") is not True:
                self.sts_cert_reasons[str(pkix.get("reason", "?"))] += 1
        policy = mta_sts.get("policy")
        if policy is not None and not policy.get("valid"):
            for reason in policy.get("reasons") or ():
                self.sts_policy_reasons[_code(reason)] += 1
        findings = mta_sts.get("findings") or ()
        for finding in findings:
            self.sts_findings[str(finding)] += 1
        if Finding.ENFORCE_WOULD_FAIL in findings:
            mx = ", ".join((policy or {}).get("mx") or ())
            self.enforce_would_fail.add((facts.domain, str(mta_sts.get("mode") or ""), mx))

    def _unknowns(self, record: dict[str, Any], facts: DomainAnswers) -> None:
        dns = record.get("dns") or {}
        if facts.dnssec.answer is Answer.UNKNOWN:
            validating = (record.get("scan") or {}).get("dnssec_validating", True)
            mx_dnssec = str((dns.get("mx") or {}).get("dnssec", "?"))
            self._why("dnssec", mx_dnssec + ("" if validating else " (resolver not validating)"))
        starttls, pkix = facts.starttls.answer, facts.pkix.answer
        if Answer.UNKNOWN in (starttls, pkix):
            reasons = {
                str(p.get("status", "?"))
                for t in record.get("mx_transport") or ()
                for p in t.get("addresses") or ()
                if p.get("starttls") == Starttls.UNKNOWN or p.get("pkix") is None
            }
            for reason in reasons or {"no address probed"}:
                if starttls is Answer.UNKNOWN:
                    self._why("starttls", reason)
                if pkix is Answer.UNKNOWN:
                    self._why("pkix", reason)
        if facts.dane is Answer.UNKNOWN:
            mx_status = str((dns.get("mx") or {}).get("dnssec", "?"))
            if mx_status != Dnssec.SECURE:  # the study's DANE needs the MX answer secure too
                self._why("dane", f"MX dnssec {mx_status}")
            for host in dns.get("mx_hosts") or ():
                tlsa = host.get("tlsa")
                skipped = host.get("tlsa_skipped")
                if tlsa is None and skipped in _TLSA_UNASKED:
                    self._why("dane", f"TLSA not asked: {host['tlsa_skipped']}")
                elif tlsa is not None and dns_unsettled(tlsa.get("outcome")):
                    self._why("dane", f"TLSA lookup {tlsa['outcome']}")
                elif tlsa is not None and tlsa.get("dnssec") in _DNSSEC_UNSETTLED:
                    self._why("dane", f"TLSA dnssec {tlsa['dnssec']}")
        if facts.sts_record is Answer.UNKNOWN:
            self._why("mta_sts", f"TXT lookup {(dns.get('mta_sts') or {}).get('outcome', '?')}")
        if facts.sts_policy is Answer.UNKNOWN and facts.sts_record is Answer.YES:
            fetch = (record.get("mta_sts") or {}).get("fetch")
            why = "not fetched" if fetch is None else f"fetch {fetch.get('status', '?')}"
            self._why("mta_sts_policy", why)
        if facts.tlsrpt is Answer.UNKNOWN:
            self._why("tlsrpt", f"TXT lookup {(dns.get('tlsrpt') or {}).get('outcome', '?')}")

    def result(self, lists_cap: int | None = None) -> dict[str, Any]:
        expired = Capped(lists_cap or self.cap)
        for host, (address, not_after, domains, count) in self.expired.items():
            expired.add((host, address, not_after, str(count), ", ".join(sorted(domains))))
        top = self.cap
        return {
            "failures": {
                "records: invalid input (by reason)": dict(self.invalid_reasons.most_common(top)),
                "records: unknown-error (by reason)": dict(self.crash_reasons.most_common(top)),
                "probe errors (probe, status)": dict(self.probe_errors.most_common(top)),
                "DNS: MX lookup (outcome / dnssec), domains": dict(self.dns_outcomes.most_common()),
                "SMTP: probe status, distinct host addresses": dict(self.smtp_status.most_common()),
                "SMTP: STARTTLS advertised, distinct host addresses": dict(self.smtp_starttls.most_common()),
                "Certificates: PKIX verdict by reason, distinct host addresses": dict(
                    self.pkix_reasons.most_common()
                ),
                "DANE: verdict per (domain, MX host)": dict(self.dane_status.most_common()),
                STS_FETCH_TITLE: dict(self.sts_fetch.most_common()),
                STS_CERT_TITLE: dict(self.sts_cert_reasons.most_common()),
                "MTA-STS: findings": dict(self.sts_findings.most_common()),
                "MTA-STS: invalid TXT record reasons": dict(self.sts_record_reasons.most_common(top)),
                "MTA-STS: invalid policy reasons": dict(self.sts_policy_reasons.most_common(top)),
                "TLS-RPT: invalid record reasons": dict(self.tlsrpt_reasons.most_common(top)),
            },
            "failure_notes": {
                STS_FETCH_TITLE: f"{CERT_INVALID}: the policy host answered over HTTPS but its certificate "
                "failed PKIX for mta-sts.<domain>, so no sender may use the policy (RFC 8461 §3.3); it is "
                "not counted as success.",
                STS_CERT_TITLE: "Every policy fetch whose host presented a certificate chain that is not "
                "PKIX-valid for mta-sts.<domain>, whatever the HTTP exchange gave after the handshake.",
            },
            "plaintext_injection": self.plaintext_injection,
            "misconfigurations": {
                "MTA-STS enforce that would fail delivery": self.enforce_would_fail.result(
                    ("domain", "mode", "policy mx patterns")
                ),
                "DANE mismatches that would bounce mail": self.dane_mismatch.result(
                    ("domain", "MX host", "detail")
                ),
                "Expired certificates on MX hosts": expired.result(
                    ("MX host", "address", "not after", "domains", "some domains")
                ),
            },
            "smtp_failures": self.smtp_failures.result(
                ("MX host", "address", "status", "phase", "banner", "EHLO name", "detail")
            ),
            "unknown_why": {k: dict(v.most_common(top)) for k, v in sorted(self.unknown_why.items())},
        }


_SMTP_FIELDS_USED = (
    "host",
    "address",
    "port",
    "status",
    "phase",
    "starttls",
    "banner",
    "detail",
    "last_text",
    "pkix",
    "plaintext_injection",
)


def report_view_of_smtp(smtp: dict[str, Any]) -> dict[str, Any]:
    """What reports read of one SMTP result (memory grows with distinct hosts, so the
    certificate facts shrink to the leaf's expiry)."""
    view = {key: smtp.get(key) for key in _SMTP_FIELDS_USED}
    view["ehlo"] = {"greeting_name": (smtp.get("ehlo") or {}).get("greeting_name", "")}
    view["ptr"] = ptr_label(smtp.get("ptr"))  # the address's PTR/FCrDNS as one shared label
    not_after = _not_after(smtp)
    view["tls"] = {"chain": {"certs": [{"not_after": not_after}]}} if not_after else None
    return view


def _not_after(probe: dict[str, Any]) -> str:
    certs = (((probe.get("tls") or {}).get("chain")) or {}).get("certs") or ()
    return str(certs[0].get("not_after", "")) if certs else ""
