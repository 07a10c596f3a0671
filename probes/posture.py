"""The study's answers from one domain record: the one reduction every reader uses.

Theory of operation
-------------------
``answers`` reduces one parsed record (the ``orjson`` dict of a
``probes.domain.DomainRecord``, as every reader holds it) to a small typed
``DomainAnswers``.  Every question has four answers, never folded together
(``Answer``): yes, no, unknown (we asked and could not tell: a timeout is not an
absence) and not-measured (the record has no data for it: an older or
``--dns-only`` file, or a probe that crashed).  Where a settled answer has kinds
the study counts (all or some MX hosts; a secure, insecure or bogus MX answer;
a null MX), a ``Reading`` carries the kind beside the answer.

The per-host and per-domain rules are the scan's own (``probes.transport``:
``host_starttls``, ``host_pkix``, ``secure_tlsa``), so the report, the diff, the
trend, the export and ``--retry-unknown`` read a record the way the scan rolled it
up.  Records may lack whole sections: where the DNS section alone settles a
question the way the probe would (DANE published, a valid STSv1 TXT record, a
valid TLS-RPT record), the answer is derived from the DNS answers with the
probe's own pure assessor (``dane_from_dns``, ``sts_from_dns`` say so).

Adding a question: a field of ``DomainAnswers`` computed in ``answers``, an entry
in ``QUESTIONS``, and its row in the report's table (``report.figures``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from engine.status import Status
from probes.dns.records import DEFINITE_OUTCOMES, Dnssec, Outcome, TlsaSkip
from probes.mtasts.policy import Mode
from probes.mtasts.record import assess_sts_txt
from probes.smtp.records import Starttls
from probes.tlsrpt.record import assess_tlsrpt_txt
from probes.transport import Coverage3, host_pkix, host_starttls, secure_tlsa

__all__ = [
    "QUESTIONS",
    "Answer",
    "DomainAnswers",
    "MxKind",
    "Reading",
    "answers",
    "coverage",
    "dns_unsettled",
    "host_pkix_of",
    "host_starttls_of",
    "host_tlsa",
    "preferred_transport",
]


class Answer(StrEnum):
    """The answer to one question: the one spelling of "cannot tell" is ``UNKNOWN``."""

    YES = "yes"
    NO = "no"
    #: We asked and could not tell (timeout, SERVFAIL, refused, a resolver not validating):
    #: never counted as no.
    UNKNOWN = "unknown"
    #: The record holds no data for the question (an older or --dns-only file, a crashed probe).
    NOT_MEASURED = "not-measured"


class MxKind(StrEnum):
    """What a settled MX question found."""

    #: At least one MX record that is not the RFC 7505 null MX.
    MX = "mx"
    #: The RFC 7505 null MX ("0 ."): the domain accepts no mail.
    NULL_MX = "null-mx"
    #: No MX, but an A/AAAA record: mail would go there (implicit MX, RFC 5321 §5.1).
    IMPLICIT_ONLY = "implicit-only"
    #: No MX and no address.
    NO_MX = "no-mx"


K = TypeVar("K", MxKind, Coverage3, Dnssec)


@dataclass(frozen=True, slots=True)
class Reading(Generic[K]):
    """An answer and, when it is yes or no, the kind of yes or no."""

    answer: Answer
    kind: K | None = None

    @property
    def text(self) -> str:
        """The kind when settled, else the answer: the value reports and exports print."""
        return self.answer.value if self.kind is None else self.kind.value


def dns_unsettled(outcome: object) -> bool:
    """A lookup that failed (servfail, refused, timeout, error): unknown, never absent."""
    return outcome in _FAILED


_FAILED = frozenset(o.value for o in Outcome if o not in DEFINITE_OUTCOMES)
_NOT_MEASURED: Reading[Any] = Reading(Answer.NOT_MEASURED)
_UNKNOWN: Reading[Any] = Reading(Answer.UNKNOWN)
_COVERAGE: dict[str, Reading[Coverage3]] = {
    Coverage3.ALL: Reading(Answer.YES, Coverage3.ALL),
    Coverage3.SOME: Reading(Answer.YES, Coverage3.SOME),
    Coverage3.NONE: Reading(Answer.NO, Coverage3.NONE),
    Coverage3.UNKNOWN: _UNKNOWN,
}
_DNSSEC: dict[str, Reading[Dnssec]] = {
    Dnssec.SECURE: Reading(Answer.YES, Dnssec.SECURE),
    Dnssec.INSECURE: Reading(Answer.NO, Dnssec.INSECURE),
    Dnssec.BOGUS: Reading(Answer.NO, Dnssec.BOGUS),
}
_YES_NO = {True: Answer.YES, False: Answer.NO}


@dataclass(frozen=True, slots=True)
class DomainAnswers:
    """What one record says about the study's questions (see the module docstring)."""

    domain: str
    status: str
    #: The input was a domain name (status other than invalid-input).
    valid_name: bool
    mx: Reading[MxKind]
    #: MX hosts offering STARTTLS (posture.starttls): all / some (yes), none (no).
    starttls: Reading[Coverage3]
    #: MX hosts presenting a PKIX-valid certificate (posture.pkix_valid).
    pkix: Reading[Coverage3]
    #: The MX answer's DNSSEC status: secure (yes), insecure or bogus (no).
    dnssec: Reading[Dnssec]
    #: The study's DANE: MX answer and some MX host's TLSA answer DNSSEC-secure.
    dane: Answer
    dane_from_dns: bool
    #: A valid STSv1 TXT record (RFC 8461 §3.1).
    sts_record: Answer
    sts_from_dns: bool
    #: The valid record was reached through a CNAME.
    sts_delegated: bool
    #: A usable policy (a mode is set).
    sts_policy: Answer
    #: The policy's mode (enforce / testing / none), None without a usable policy.
    sts_mode: str | None
    #: MTA-STS in enforce mode; unknown or not-measured as the policy is.
    sts_enforce: Answer
    sts_id: str
    #: A valid TLS-RPT record (RFC 8460 §3).
    tlsrpt: Answer
    #: The provider of the most preferred MX host.
    provider: str | None
    #: Every TLSA record (host + data) in a secure answer, sorted.
    tlsa: tuple[str, ...]

    def unknown(self) -> tuple[str, ...]:
        """The questions (``QUESTIONS`` keys) this record could not settle."""
        return tuple(key for key, ask in QUESTIONS.items() if ask(self) is Answer.UNKNOWN)


#: The study's questions, each as the yes / no / unknown / not-measured of a record.
QUESTIONS: dict[str, Callable[[DomainAnswers], Answer]] = {
    "mx": lambda a: a.mx.answer,
    "starttls": lambda a: a.starttls.answer,
    "pkix": lambda a: a.pkix.answer,
    "dnssec": lambda a: a.dnssec.answer,
    "dane": lambda a: a.dane,
    "sts_record": lambda a: a.sts_record,
    "sts_policy": lambda a: a.sts_policy,
    "tlsrpt": lambda a: a.tlsrpt,
}


def coverage(posture: dict[str, Any] | None, key: str) -> Reading[Coverage3]:
    """A roll-up over the MX hosts (``Posture.starttls``, ``pkix_valid``, ``dane_valid``)."""
    if posture is None:
        return _NOT_MEASURED
    value = posture.get(key)
    # not-applicable for a domain with MX: SMTP was not probed.
    return _COVERAGE.get(value, _NOT_MEASURED) if isinstance(value, str) else _NOT_MEASURED


def _mx(dns: dict[str, Any] | None) -> Reading[MxKind]:
    if dns is None:
        return _NOT_MEASURED
    if dns.get("has_mx"):
        return Reading(Answer.YES, MxKind.MX)
    if dns.get("null_mx"):
        return Reading(Answer.NO, MxKind.NULL_MX)
    if dns_unsettled((dns.get("mx") or {}).get("outcome")):
        return _UNKNOWN
    implicit = dns.get("implicit_mx") or {}
    if any((implicit.get(k) or {}).get("outcome") == Outcome.OK for k in ("a", "aaaa")):
        return Reading(Answer.NO, MxKind.IMPLICIT_ONLY)
    return Reading(Answer.NO, MxKind.NO_MX)


def _dnssec(dns: dict[str, Any] | None) -> Reading[Dnssec]:
    if dns is None:
        return _NOT_MEASURED
    value = (dns.get("mx") or {}).get("dnssec")
    return _DNSSEC.get(value, _UNKNOWN) if isinstance(value, str) else _UNKNOWN


def host_tlsa(host: dict[str, Any]) -> Answer:
    """One MX host (a ``dns.mx_hosts`` item) has TLSA records in a DNSSEC-secure answer.
    A property of the host, whatever the domain pointing at it."""
    tlsa = host.get("tlsa")
    if tlsa is None:
        skipped = host.get("tlsa_skipped")
        if skipped == TlsaSkip.RESOLVER_NOT_VALIDATING:
            return Answer.UNKNOWN
        if skipped == TlsaSkip.ADDRESS_UNRESOLVED:
            # Unsettled only when an address lookup itself failed; an MX name that
            # definitely does not exist (NXDOMAIN/NODATA) has no TLSA: a definite no.
            lookups = (host.get("a"), host.get("aaaa"))
            failed = any(a is None or dns_unsettled(a.get("outcome")) for a in lookups)
            return Answer.UNKNOWN if failed else Answer.NO
        return Answer.NO
    if secure_tlsa(tlsa.get("outcome"), tlsa.get("dnssec"), tlsa.get("data") or ()):
        return Answer.YES
    if dns_unsettled(tlsa.get("outcome")) or tlsa.get("dnssec") in (Dnssec.INDETERMINATE, Dnssec.UNKNOWN):
        return Answer.UNKNOWN
    return Answer.NO


def host_starttls_of(addresses: Iterable[dict[str, Any]]) -> bool | None:
    """``host_starttls`` over one MX host's SMTP results as a results file holds them."""
    return host_starttls(a.get("starttls") for a in addresses)


def host_pkix_of(addresses: Iterable[dict[str, Any]]) -> bool | None:
    """``host_pkix`` over one MX host's SMTP results as a results file holds them."""
    return host_pkix(
        [
            (
                None if a.get("pkix") is None else bool(a["pkix"].get("valid")),
                a.get("starttls") == Starttls.NO,
            )
            for a in addresses
        ]
    )


def _tlsa(dns: dict[str, Any] | None) -> tuple[tuple[str, ...], bool]:
    """(secure TLSA records as "host data", any TLSA lookup unsettled)."""
    found: list[str] = []
    unsettled = False
    for host in (dns or {}).get("mx_hosts") or ():
        state = host_tlsa(host)
        if state is Answer.YES:
            found.extend(f"{host.get('host', '')} {d}" for d in host["tlsa"]["data"])
        unsettled |= state is Answer.UNKNOWN
    return tuple(sorted(found)), unsettled


def _dane(
    posture: dict[str, Any] | None, dns: dict[str, Any] | None, tlsa: tuple[str, ...], unsettled: bool
) -> tuple[Answer, bool]:
    """(DANE, derived from DNS): posture.dane_published (RFC 7672 §2.2.1: below an insecure
    MX RRset DANE does not apply), or the DNS answers for records without it."""
    if dns is None:
        return Answer.NOT_MEASURED, False
    derived = posture is None or "dane_published" not in posture
    published = bool(tlsa) if derived else bool(posture and posture["dane_published"])
    mx = _dnssec(dns).answer
    # The MX status is checked here too: files written before posture.dane_published
    # required a secure MX answer counted a DANE provider's unsigned customers.
    if mx is not Answer.YES:
        return (Answer.NO if mx is Answer.NO else Answer.UNKNOWN), derived
    if published:
        return Answer.YES, derived
    return (Answer.UNKNOWN if unsettled else Answer.NO), derived


def _txt_answer(answer: dict[str, Any], valid: Callable[[tuple[str, ...]], bool]) -> Answer:
    """A TXT answer judged by the probe's own assessor; a failed lookup is unknown."""
    outcome = answer.get("outcome")
    if outcome == Outcome.OK:
        return _YES_NO[valid(tuple(answer.get("data") or ()))]
    return Answer.UNKNOWN if outcome is None or dns_unsettled(outcome) else Answer.NO


def _txt_failed(dns: dict[str, Any] | None, key: str) -> bool:
    """The TXT lookup ``dns[key]`` failed (servfail, refused, timeout, error)."""
    return dns_unsettled(((dns or {}).get(key) or {}).get("outcome"))


def _probe_valid(section: dict[str, Any], dns: dict[str, Any] | None, key: str) -> Answer:
    """A probe's own ``valid``; a failed lookup is unknown, never "no" (null since the
    record said so itself; files from before carry valid false beside the failed answer)."""
    if section.get("valid"):
        return Answer.YES
    return Answer.UNKNOWN if section.get("valid") is None or _txt_failed(dns, key) else Answer.NO


@dataclass(frozen=True, slots=True)
class _Sts:
    record: Answer
    from_dns: bool
    delegated: bool
    policy: Answer
    mode: str | None
    id: str


def _sts(mta_sts: dict[str, Any] | None, dns: dict[str, Any] | None) -> _Sts:
    if mta_sts is None:
        if dns is None:
            return _Sts(Answer.NOT_MEASURED, False, False, Answer.NOT_MEASURED, None, "")
        answer = dns.get("mta_sts") or {}
        record = _txt_answer(answer, lambda data: bool(assess_sts_txt(data).valid))
        delegated = record is Answer.YES and bool(answer.get("cname_chain"))
        return _Sts(record, True, delegated, Answer.NOT_MEASURED, None, "")
    record = _probe_valid(mta_sts.get("record") or {}, dns, "mta_sts")
    mode = mta_sts.get("mode")
    if mode:
        policy = Answer.YES
    elif record is Answer.YES:
        fetch = mta_sts.get("fetch")
        # The server answered (any HTTP status): "no usable policy" is then definite;
        # only a fetch that got no HTTP answer at all leaves the policy unknown.
        fetched = fetch is not None and (
            fetch.get("status") == Status.SUCCESS or fetch.get("http_status") is not None
        )
        policy = Answer.NO if fetched or mta_sts.get("policy") is not None else Answer.UNKNOWN
    else:
        policy = record
    delegated = record is Answer.YES and bool(mta_sts.get("txt_cname"))
    sts_id = str((mta_sts.get("record") or {}).get("id") or "")
    return _Sts(record, False, delegated, policy, mode, sts_id)


def _enforce(sts: _Sts) -> Answer:
    if sts.mode == Mode.ENFORCE:
        return Answer.YES
    return Answer.NO if sts.policy in (Answer.YES, Answer.NO) else sts.policy


def _tlsrpt(tlsrpt: dict[str, Any] | None, dns: dict[str, Any] | None) -> Answer:
    if tlsrpt is not None:
        return _probe_valid(tlsrpt, dns, "tlsrpt")
    if dns is None:
        return Answer.NOT_MEASURED
    return _txt_answer(dns.get("tlsrpt") or {}, lambda data: bool(assess_tlsrpt_txt(data).valid))


def preferred_transport(record: dict[str, Any]) -> dict[str, Any] | None:
    """The most preferred MX host's transport (lowest preference, then name), or None."""
    transports = record.get("mx_transport") or ()
    if not transports:
        return None
    best: dict[str, Any] = min(transports, key=lambda t: (t.get("preference", 65536), t.get("host", "")))
    return best


def answers(record: dict[str, Any]) -> DomainAnswers:
    """Reduce one parsed record to the study's answers."""
    status = str(record.get("status", Status.UNKNOWN_ERROR))
    dns = record.get("dns")
    posture = record.get("posture")
    tlsa, unsettled = _tlsa(dns)
    dane, dane_from_dns = _dane(posture, dns, tlsa, unsettled)
    sts = _sts(record.get("mta_sts"), dns)
    preferred = preferred_transport(record)
    return DomainAnswers(
        domain=str(record.get("domain", "")),
        status=status,
        valid_name=status != Status.INVALID_INPUT,
        mx=_mx(dns),
        starttls=coverage(posture, "starttls"),
        pkix=coverage(posture, "pkix_valid"),
        dnssec=_dnssec(dns),
        dane=dane,
        dane_from_dns=dane_from_dns,
        sts_record=sts.record,
        sts_from_dns=sts.from_dns,
        sts_delegated=sts.delegated,
        sts_policy=sts.policy,
        sts_mode=sts.mode,
        sts_enforce=_enforce(sts),
        sts_id=sts.id,
        tlsrpt=_tlsrpt(record.get("tlsrpt"), dns),
        provider=None if preferred is None else preferred.get("provider"),
        tlsa=tlsa,
    )
