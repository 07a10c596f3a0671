"""The study's headline figures over results-file records, computed in one pass.

Theory of operation
-------------------
Each record is reduced once by ``probes.posture.answers`` (the one reduction:
yes / no / unknown / not-measured per question, never folded together).
``Headline`` adds the answers up per question of ``QUESTIONS`` (the report's
table of questions); ``headline_figures`` turns the counters into figures whose
definitions are the footnotes of every report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probes.mtasts.policy import Mode
from probes.posture import Answer, DomainAnswers, MxKind, Reading
from probes.transport import Coverage3

__all__ = ["FOOTNOTES", "QUESTIONS", "Headline", "Question", "headline_figures", "percent"]


def percent(count: int, base: int) -> float:
    """``count`` of ``base`` in percent, 0 for an empty base, rounded to 0.01."""
    return round(100.0 * count / base, 2) if base else 0.0


@dataclass(frozen=True, slots=True)
class Question:
    """One headline figure: a question of the reduction as the report shows it."""

    key: str
    label: str
    #: The label of its line in the trend chart.
    short: str
    #: The answer (a ``Reading`` where the figure also counts "all MX").
    ask: Callable[[DomainAnswers], Answer | Reading[Any]]
    #: In the study (beyond it: shown, but not the study's figure).
    study: bool
    #: The figure also counts the domains where every MX host has the property.
    all_mx: bool = False


#: The report's table of questions, in the study's order (the figures' keys are stable:
#: reports, trends and metrics name them).
QUESTIONS: tuple[Question, ...] = (
    Question("starttls", "STARTTLS support", "STARTTLS", lambda a: a.starttls, True, all_mx=True),
    Question("pkix", "Valid public-CA certificate", "Valid certificate", lambda a: a.pkix, True, all_mx=True),
    Question("dnssec", "DNSSEC-signed MX", "DNSSEC", lambda a: a.dnssec, True),
    Question("dane", "DANE (TLSA published)", "DANE", lambda a: a.dane, True),
    Question("mta_sts", "MTA-STS record", "MTA-STS", lambda a: a.sts_record, True),
    Question("mta_sts_enforce", "MTA-STS enforce", "MTA-STS enforce", lambda a: a.sts_enforce, True),
    Question("tlsrpt", "TLS-RPT record", "TLS-RPT", lambda a: a.tlsrpt, False),
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
    """Counters behind the headline figures; ``add`` one ``DomainAnswers`` at a time."""

    __slots__ = ("all_mx", "answers", "derived", "lines", "mx_states", "scanned", "statuses", "with_mx")

    def __init__(self) -> None:
        self.lines = 0
        self.scanned = 0
        self.with_mx = 0
        self.statuses: Counter[str] = Counter()
        self.mx_states: Counter[str] = Counter()
        #: (question key, answer) -> domains with MX giving that answer; beside the
        #: questions: "mta_sts_policy" (a usable policy), "mta_sts_delegated", "mta_sts_testing".
        self.answers: Counter[tuple[str, Answer]] = Counter()
        #: question key -> domains with MX where every MX host has the property
        self.all_mx: Counter[str] = Counter()
        self.derived: Counter[str] = Counter()

    def add(self, facts: DomainAnswers) -> None:
        self.lines += 1
        self.statuses[facts.status] += 1
        if not facts.valid_name:
            return
        self.scanned += 1
        self.mx_states[facts.mx.text] += 1
        if facts.mx.kind is not MxKind.MX:
            return
        self.with_mx += 1
        answers = self.answers
        for question in QUESTIONS:
            answer = question.ask(facts)
            if isinstance(answer, Reading):
                self.all_mx[question.key] += answer.kind is Coverage3.ALL and question.all_mx
                answer = answer.answer
            answers[question.key, answer] += 1
        answers["mta_sts_policy", facts.sts_policy] += 1
        answers["mta_sts_delegated", _YES_NO[facts.sts_delegated]] += 1
        answers["mta_sts_testing", _YES_NO[facts.sts_mode == Mode.TESTING]] += 1
        self.derived["dane"] += facts.dane_from_dns
        self.derived["mta_sts"] += facts.sts_from_dns


_YES_NO = {True: Answer.YES, False: Answer.NO}


def headline_figures(h: Headline) -> list[dict[str, Any]]:
    """The figures, in the study's order, as plain dicts (the JSON report's ``headline``)."""
    base = h.with_mx
    figures: list[dict[str, Any]] = [
        _figure("scanned", "Domains scanned", h.scanned, h.scanned, study=True),
        _figure("with_mx", "Domains with MX", h.with_mx, h.scanned, study=True),
    ]
    figures[1]["extras"] = {
        "null MX": h.mx_states[MxKind.NULL_MX],
        "implicit MX only": h.mx_states[MxKind.IMPLICIT_ONLY],
        "MX lookup unknown": h.mx_states[Answer.UNKNOWN],
    }
    figures[1]["unknown"] = h.mx_states[Answer.UNKNOWN] + h.mx_states[Answer.NOT_MEASURED]
    for q in QUESTIONS:
        a = {answer: h.answers[q.key, answer] for answer in Answer}
        fig = _figure(
            q.key,
            q.label,
            a[Answer.YES],
            base,
            study=q.study,
            unknown=a[Answer.UNKNOWN],
            not_measured=a[Answer.NOT_MEASURED],
        )
        if q.all_mx:
            fig["extras"]["all MX"] = h.all_mx[q.key]
        fig["extras"].update(_extras(h, q.key))
        if h.derived[q.key]:
            fig["derived_from_dns"] = h.derived[q.key]
        figures.append(fig)
    return figures


def _extras(h: Headline, key: str) -> dict[str, int]:
    """The MTA-STS figures' further counts."""
    if key == "mta_sts":
        extras = {"delegated (CNAME)": h.answers["mta_sts_delegated", Answer.YES]}
        if h.answers["mta_sts_policy", Answer.NOT_MEASURED] < h.with_mx or not h.with_mx:
            extras["usable policy"] = h.answers["mta_sts_policy", Answer.YES]
        return extras
    if key == "mta_sts_enforce":
        return {"testing": h.answers["mta_sts_testing", Answer.YES]}
    return {}


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
