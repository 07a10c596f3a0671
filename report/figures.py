"""The study's headline figures, computed from results-file dicts in one pass.

Theory of operation
-------------------
``domain_facts`` reduces one parsed record (an ``orjson`` dict of a
``probes.domain.DomainRecord``) to a small ``DomainFacts``: one tri-state per
question the study asks.  Every question has four answers, never folded
together: ``yes``, ``no``, ``unknown`` (we asked and could not tell: a
timeout is not an absence) and ``not-measured`` (the file has no data for it:
an older or ``--dns-only`` file, or a probe that crashed).  ``Headline`` adds
facts up; ``headline_figures`` turns the counters into figures whose
definitions are the footnotes of every report.

Records may lack whole sections.  Where the DNS section alone settles a
question the way the probe would (DANE published, a valid STSv1 TXT record,
a valid TLS-RPT record), the figure is derived from the DNS answers with the
probe's own pure assessor and the footnote says so; otherwise the figure is
"not measured in this file".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from probes.mtasts.record import assess_sts_txt
from probes.tlsrpt.record import assess_tlsrpt_txt

__all__ = [
    "FOOTNOTES",
    "NOT_MEASURED",
    "UNKNOWN",
    "DomainFacts",
    "Headline",
    "domain_facts",
    "headline_figures",
    "host_tlsa",
    "percent",
    "preferred_transport",
]

YES, NO, UNKNOWN, NOT_MEASURED = "yes", "no", "unknown", "not-measured"
DNS_UNSETTLED = frozenset({"servfail", "refused", "timeout", "error"})
_ALL_SOME = frozenset({"all", "some"})


def percent(count: int, base: int) -> float:
    """``count`` of ``base`` in percent, 0 for an empty base, rounded to 0.01."""
    return round(100.0 * count / base, 2) if base else 0.0


@dataclass(slots=True)
class DomainFacts:
    """What one record says about the study's questions (see the module docstring)."""

    domain: str
    status: str
    valid_name: bool
    mx: str  # mx / null-mx / implicit-only / no-mx / unknown / not-measured
    starttls: str  # all / some / none / unknown / not-measured (posture.starttls)
    pkix: str  # all / some / none / unknown / not-measured (posture.pkix_valid)
    dnssec: str  # secure / insecure / bogus / unknown / not-measured (dns.mx.dnssec)
    dane: str  # yes / no / unknown / not-measured
    dane_from_dns: bool
    sts_record: str  # yes / no / unknown / not-measured: a valid STSv1 TXT record
    sts_from_dns: bool
    sts_delegated: bool  # the valid record was reached through a CNAME
    sts_policy: str  # yes / no / unknown / not-measured: a usable policy (mode set)
    sts_mode: str | None
    sts_id: str
    tlsrpt: str  # yes / no / unknown / not-measured
    provider: str | None  # provider of the most preferred MX host
    tlsa: tuple[str, ...]  # every TLSA record (host + data) in a secure answer, sorted


def _coverage(posture: dict[str, Any] | None, key: str) -> str:
    if posture is None:
        return NOT_MEASURED
    value = posture.get(key)
    if value in ("all", "some", "none", "unknown"):
        return str(value)
    return NOT_MEASURED  # not-applicable for a domain with MX: SMTP was not probed


def _mx_state(dns: dict[str, Any] | None) -> str:
    if dns is None:
        return NOT_MEASURED
    if dns.get("has_mx"):
        return "mx"
    if dns.get("null_mx"):
        return "null-mx"
    outcome = (dns.get("mx") or {}).get("outcome")
    if outcome in DNS_UNSETTLED:
        return UNKNOWN
    implicit = dns.get("implicit_mx") or {}
    if any((implicit.get(k) or {}).get("outcome") == "ok" for k in ("a", "aaaa")):
        return "implicit-only"
    return "no-mx"


def _dnssec(dns: dict[str, Any] | None) -> str:
    if dns is None:
        return NOT_MEASURED
    value = (dns.get("mx") or {}).get("dnssec")
    return value if value in ("secure", "insecure", "bogus") else UNKNOWN


def host_tlsa(host: dict[str, Any]) -> str:
    """yes / no / unknown: one MX host (a ``dns.mx_hosts`` item) has TLSA records in a
    DNSSEC-secure answer.  A property of the host, whatever the domain pointing at it."""
    tlsa = host.get("tlsa")
    if tlsa is None:
        skipped = host.get("tlsa_skipped")
        if skipped == "resolver-not-validating":
            return UNKNOWN
        if skipped == "address-unresolved":
            # Unsettled only when an address lookup itself failed; an MX name that
            # definitely does not exist (NXDOMAIN/NODATA) has no TLSA: a definite no.
            answers = [host.get("a"), host.get("aaaa")]
            return UNKNOWN if any(a is None or a.get("outcome") in DNS_UNSETTLED for a in answers) else NO
        return NO
    if tlsa.get("outcome") == "ok" and tlsa.get("dnssec") == "secure" and tlsa.get("data"):
        return YES
    if tlsa.get("outcome") in DNS_UNSETTLED or tlsa.get("dnssec") in ("indeterminate", "unknown"):
        return UNKNOWN
    return NO


def _tlsa(dns: dict[str, Any] | None) -> tuple[tuple[str, ...], bool]:
    """(secure TLSA records as "host data", any TLSA lookup unsettled)."""
    found: list[str] = []
    unsettled = False
    for host in (dns or {}).get("mx_hosts") or ():
        state = host_tlsa(host)
        if state == YES:
            found.extend(f"{host.get('host', '')} {d}" for d in host["tlsa"]["data"])
        unsettled |= state == UNKNOWN
    return tuple(sorted(found)), unsettled


def _dane(
    posture: dict[str, Any] | None, dns: dict[str, Any] | None, tlsa: tuple[str, ...], unsettled: bool
) -> tuple[str, bool]:
    """The study's DANE: the MX answer and some MX host's TLSA answer both DNSSEC-secure
    (posture.dane_published; RFC 7672 §2.2.1: below an insecure MX RRset DANE does not apply)."""
    if dns is None:
        return NOT_MEASURED, False
    derived = posture is None or "dane_published" not in posture
    published = bool(tlsa) if derived else bool(posture and posture["dane_published"])
    mx = _dnssec(dns)
    # The MX status is checked here too: files written before posture.dane_published
    # required a secure MX answer counted a DANE provider's unsigned customers.
    if mx in ("insecure", "bogus"):
        return NO, derived
    if mx != "secure":
        return UNKNOWN, derived
    return (YES if published else UNKNOWN if unsettled else NO), derived


def _sts_from_dns(dns: dict[str, Any] | None) -> tuple[str, bool]:
    if dns is None:
        return NOT_MEASURED, False
    answer = dns.get("mta_sts") or {}
    outcome = answer.get("outcome")
    if outcome == "ok":
        valid = assess_sts_txt(tuple(answer.get("data") or ())).valid
        return (YES if valid else NO), bool(answer.get("cname_chain"))
    return (UNKNOWN if outcome in DNS_UNSETTLED or outcome is None else NO), False


def _sts(
    mta_sts: dict[str, Any] | None, dns: dict[str, Any] | None
) -> tuple[str, bool, bool, str, str | None, str]:
    """(record, from_dns, delegated, policy, mode, id)."""
    if mta_sts is None:
        record, delegated = _sts_from_dns(dns)
        return record, dns is not None, delegated and record == YES, NOT_MEASURED, None, ""
    rec = mta_sts.get("record") or {}
    if rec.get("valid"):
        record = YES
    elif rec.get("valid") is None or _txt_failed(dns, "mta_sts"):
        # The TXT lookup failed: unknown (null since the record said so itself; files from
        # before carry present/valid false beside the failed DNS answer).
        record = UNKNOWN
    else:
        record = NO
    mode = mta_sts.get("mode")
    if mode:
        policy = YES
    elif record == YES:
        fetch = mta_sts.get("fetch")
        # The server answered (any HTTP status): "no usable policy" is then definite;
        # only a fetch that got no HTTP answer at all leaves the policy unknown.
        fetched = fetch is not None and (
            fetch.get("status") == "success" or fetch.get("http_status") is not None
        )
        policy = NO if fetched or mta_sts.get("policy") is not None else UNKNOWN
    else:
        policy = NO if record == NO else record
    delegated = record == YES and bool(mta_sts.get("txt_cname"))
    return record, False, delegated, policy, mode, str(rec.get("id") or "")


def _txt_failed(dns: dict[str, Any] | None, key: str) -> bool:
    """The TXT lookup ``dns[key]`` failed (servfail, refused, timeout, error)."""
    return ((dns or {}).get(key) or {}).get("outcome") in DNS_UNSETTLED


def _tlsrpt(tlsrpt: dict[str, Any] | None, dns: dict[str, Any] | None) -> str:
    if tlsrpt is not None:
        if tlsrpt.get("valid"):
            return YES
        # A failed lookup is unknown, never "no" (see _sts for files from before the null).
        return UNKNOWN if tlsrpt.get("valid") is None or _txt_failed(dns, "tlsrpt") else NO
    if dns is None:
        return NOT_MEASURED
    answer = dns.get("tlsrpt") or {}
    outcome = answer.get("outcome")
    if outcome == "ok":
        return YES if assess_tlsrpt_txt(tuple(answer.get("data") or ())).valid else NO
    return UNKNOWN if outcome in DNS_UNSETTLED or outcome is None else NO


def preferred_transport(record: dict[str, Any]) -> dict[str, Any] | None:
    """The most preferred MX host's transport (lowest preference, then name), or None."""
    transports = record.get("mx_transport") or ()
    if not transports:
        return None
    best: dict[str, Any] = min(transports, key=lambda t: (t.get("preference", 65536), t.get("host", "")))
    return best


def domain_facts(record: dict[str, Any]) -> DomainFacts:
    """Reduce one parsed record to the answers the study's figures count."""
    status = str(record.get("status", "unknown-error"))
    dns = record.get("dns")
    posture = record.get("posture")
    tlsa, unsettled = _tlsa(dns)
    dane, dane_from_dns = _dane(posture, dns, tlsa, unsettled)
    sts_record, sts_from_dns, delegated, policy, mode, sts_id = _sts(record.get("mta_sts"), dns)
    preferred = preferred_transport(record)
    return DomainFacts(
        domain=str(record.get("domain", "")),
        status=status,
        valid_name=status != "invalid-input",
        mx=_mx_state(dns),
        starttls=_coverage(posture, "starttls"),
        pkix=_coverage(posture, "pkix_valid"),
        dnssec=_dnssec(dns),
        dane=dane,
        dane_from_dns=dane_from_dns,
        sts_record=sts_record,
        sts_from_dns=sts_from_dns,
        sts_delegated=delegated,
        sts_policy=policy,
        sts_mode=mode,
        sts_id=sts_id,
        tlsrpt=_tlsrpt(record.get("tlsrpt"), dns),
        provider=None if preferred is None else preferred.get("provider"),
        tlsa=tlsa,
    )


#: (key, label, fact attribute, values counted as yes, values counted as "all", in the study).
_QUESTIONS: tuple[tuple[str, str, str, frozenset[str], str | None, bool], ...] = (
    ("starttls", "STARTTLS support", "starttls", _ALL_SOME, "all", True),
    ("pkix", "Valid public-CA certificate", "pkix", _ALL_SOME, "all", True),
    ("dnssec", "DNSSEC-signed MX", "dnssec", frozenset({"secure"}), None, True),
    ("dane", "DANE (TLSA published)", "dane", frozenset({YES}), None, True),
    ("mta_sts", "MTA-STS record", "sts_record", frozenset({YES}), None, True),
    ("mta_sts_enforce", "MTA-STS enforce", "sts_mode", frozenset({"enforce"}), None, True),
    ("tlsrpt", "TLS-RPT record", "tlsrpt", frozenset({YES}), None, False),
)

FOOTNOTES: dict[str, str] = {
    "scanned": "Domains scanned: records whose input was a valid domain name (status other than "
    "invalid-input); skipped and unknown-error records are included and counted separately.",
    "with_mx": "Domains with MX: dns.has_mx is true, i.e. at least one MX record that is not the RFC 7505 "
    'null MX ("0 ."). Domains whose mail would go to their own A/AAAA (implicit MX, RFC 5321 §5.1) and '
    "null-MX domains are not counted. Every figure below uses this count as its base.",
    "starttls": "STARTTLS support: at least one MX host advertised STARTTLS in its EHLO reply "
    "(posture.starttls all or some; a host counts when any of its addresses did). "
    '"All MX": every MX host did.',
    "pkix": "Valid public-CA certificate: at least one MX host presented a chain that verifies to a root of "
    'the trust store for the MX host name (posture.pkix_valid all or some). "All MX": every MX host did.',
    "dnssec": "DNSSEC: the validating resolver set AD on the domain's MX answer (dns.mx.dnssec = secure). "
    "Bogus answers are counted as not signed and listed under DNS outcomes.",
    "dane": "DANE: the domain's MX answer is DNSSEC-secure and at least one MX host has TLSA records in a "
    "DNSSEC-secure answer (posture.dane_published), whether or not they match the presented certificate "
    "(the study's definition). Below an insecure MX RRset DANE does not apply (RFC 7672 §2.2.1): a domain "
    "hosted by a provider whose MX hosts publish TLSA counts only if its own MX answer is signed.",
    "mta_sts": "MTA-STS: exactly one valid STSv1 TXT record at _mta-sts.<domain> (RFC 8461 §3.1), "
    "including records reached through a CNAME (delegated policy hosting, as in the study after its edit). "
    '"Usable policy": the policy was also fetched and parsed, so the record has an effective mode.',
    "mta_sts_enforce": "MTA-STS enforce: a valid record and a valid policy whose mode is enforce "
    "(mta_sts.mode = enforce).",
    "tlsrpt": "TLS-RPT (beyond the study): exactly one valid v=TLSRPTv1 record at _smtp._tls.<domain> "
    "with a usable rua URI (RFC 8460 §3).",
    "unknown": '"Unknown" counts domains where a lookup or probe could not tell (timeout, SERVFAIL, refused '
    'connection, resolver not validating); they are never counted as "no". "Not measured" counts '
    "records that lack the section (older or --dns-only files, or a probe that crashed).",
    "derived": "Derived from DNS: for records without posture or mta_sts sections, DANE and the MTA-STS TXT "
    "record are judged from the DNS answers in the file with the scanner's own rules.",
}


class Headline:
    """Counters behind the headline figures; ``add`` one ``DomainFacts`` at a time."""

    __slots__ = ("answers", "derived", "lines", "mx_states", "scanned", "statuses", "with_mx")

    def __init__(self) -> None:
        self.lines = 0
        self.scanned = 0
        self.with_mx = 0
        self.statuses: Counter[str] = Counter()
        self.mx_states: Counter[str] = Counter()
        #: (question key, answer) -> domains with MX giving that answer
        self.answers: Counter[tuple[str, str]] = Counter()
        self.derived: Counter[str] = Counter()

    def add(self, facts: DomainFacts) -> None:
        self.lines += 1
        self.statuses[facts.status] += 1
        if not facts.valid_name:
            return
        self.scanned += 1
        self.mx_states[facts.mx] += 1
        if facts.mx != "mx":
            return
        self.with_mx += 1
        answers = self.answers
        answers["starttls", facts.starttls] += 1
        answers["pkix", facts.pkix] += 1
        answers["dnssec", facts.dnssec] += 1
        answers["dane", facts.dane] += 1
        answers["mta_sts", facts.sts_record] += 1
        answers["mta_sts_policy", facts.sts_policy] += 1
        answers["tlsrpt", facts.tlsrpt] += 1
        if facts.sts_delegated:
            answers["mta_sts", "delegated"] += 1
        mode = facts.sts_mode or ("none-set" if facts.sts_policy in (YES, NO) else facts.sts_policy)
        answers["mta_sts_enforce", mode] += 1
        if facts.dane_from_dns:
            self.derived["dane"] += 1
        if facts.sts_from_dns:
            self.derived["mta_sts"] += 1


def headline_figures(h: Headline) -> list[dict[str, Any]]:
    """The figures, in the study's order, as plain dicts (the JSON report's ``headline``)."""
    base = h.with_mx
    figures: list[dict[str, Any]] = [
        _figure("scanned", "Domains scanned", h.scanned, h.scanned, study=True),
        _figure("with_mx", "Domains with MX", h.with_mx, h.scanned, study=True),
    ]
    figures[1]["extras"] = {
        "null MX": h.mx_states["null-mx"],
        "implicit MX only": h.mx_states["implicit-only"],
        "MX lookup unknown": h.mx_states[UNKNOWN],
    }
    figures[1]["unknown"] = h.mx_states[UNKNOWN] + h.mx_states[NOT_MEASURED]
    for key, label, _attr, yes_values, all_value, study in _QUESTIONS:
        source = "mta_sts_policy" if key == "mta_sts_enforce" else key
        a = {ans: n for (k, ans), n in h.answers.items() if k == key}
        count = sum(n for ans, n in a.items() if ans in yes_values)
        src = {ans: n for (k, ans), n in h.answers.items() if k == source}
        unknown = src.get(UNKNOWN, 0)
        not_measured = src.get(NOT_MEASURED, 0)
        fig = _figure(key, label, count, base, study=study, unknown=unknown, not_measured=not_measured)
        if all_value is not None:
            fig["extras"]["all MX"] = a.get(all_value, 0)
        if key == "mta_sts":
            fig["extras"]["delegated (CNAME)"] = a.get("delegated", 0)
            policy = {ans: n for (k, ans), n in h.answers.items() if k == "mta_sts_policy"}
            if policy.get(NOT_MEASURED, 0) < base or not base:
                fig["extras"]["usable policy"] = policy.get(YES, 0)
        if key == "mta_sts_enforce":
            fig["extras"]["testing"] = a.get("testing", 0)
        if key in h.derived:
            fig["derived_from_dns"] = h.derived[key]
        figures.append(fig)
    return figures


def _figure(
    key: str,
    label: str,
    count: int,
    base: int,
    *,
    study: bool,
    unknown: int = 0,
    not_measured: int = 0,
) -> dict[str, Any]:
    measured = not (base and not_measured == base)
    return {
        "key": key,
        "label": label,
        "count": count if measured else None,
        "base": base,
        "percent": percent(count, base) if measured else None,
        "unknown": unknown,
        "not_measured": not_measured,
        "measured": measured,
        "study": study,
        "extras": {},
        "footnote": FOOTNOTES.get(key, ""),
    }
