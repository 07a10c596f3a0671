"""Per-MX transport results and the domain-level roll-ups the study reports.

Roll-ups are pure functions of the observations, so a results file can be
re-assessed without rescanning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from engine.status import Status
from probes.dane.tlsa import DaneResult, DaneStatus
from probes.dns.records import Answer, Dnssec, MxHost, Outcome
from probes.smtp.records import SmtpResult, Starttls

__all__ = [
    "Coverage3",
    "MxTransport",
    "Posture",
    "dane_published",
    "host_pkix",
    "host_pkix_valid",
    "host_starttls",
    "no_tls_reason",
    "posture",
    "secure_tlsa",
    "smtp_ref",
]


class Coverage3(StrEnum):
    """How many of a domain's MX hosts have a property."""

    ALL = "all"
    SOME = "some"
    NONE = "none"
    #: Some hosts could not be measured and the measured ones do not settle it.
    UNKNOWN = "unknown"
    #: The domain has no MX hosts to measure.
    NOT_APPLICABLE = "not-applicable"


@dataclass(frozen=True, slots=True)
class MxTransport:
    """One MX host of a domain as a sender would reach it.

    Fields:
      host: the MX host name.
      preference: its MX preference.
      provider: the provider operating it (registrable domain or override), null if unknown.
      smtp_refs: one reference per address of the host probed (IPv4 and IPv6): the ``ref`` of
        the smtp-host line, earlier in the same results file, holding that address's SMTP
        probe (shared with every domain using the host; see smtp_ref).
      dane: the DANE verdict for this host in this domain's context (needs the domain's MX
        RRset DNSSEC status); null when not assessed.
      not_probed: addresses of the host not probed, counted by reason: "host-cap" (more than
        --max-addresses-per-host of one address family), "domain-cap" (the domain's
        --max-addresses-per-domain spent on hosts of lower preference values); empty when every
        address was probed.
    """

    host: str
    preference: int
    provider: str | None
    smtp_refs: tuple[str, ...]
    dane: DaneResult | None
    #: Last, with a default: optional in lines from before it.
    not_probed: dict[str, int] = field(default_factory=dict)


def smtp_ref(result: SmtpResult) -> str:
    """The reference of one (host, address, port) probe: ``smtp:host@address:port``
    (IPv6 in brackets), readable and unique within a results file."""
    address = f"[{result.address}]" if ":" in result.address else result.address
    return f"smtp:{result.host}@{address}:{result.port}"


@dataclass(frozen=True, slots=True)
class Posture:
    """Domain-level roll-ups, as the study counts them.

    Fields:
      starttls: MX hosts offering STARTTLS: all / some / none / unknown / not-applicable.
        A host counts as offering it when any of its addresses advertised it.
      pkix_valid: MX hosts presenting a PKIX-valid certificate for their name: all / some / none /
        unknown / not-applicable.
      dane_valid: MX hosts whose DANE verdict is valid: all / some / none / unknown / not-applicable
        ("none" includes hosts without TLSA and hosts a DANE sender would not deliver to: no-tls).
      dane_published: the domain's MX answer is DNSSEC-secure and at least one MX host has TLSA
        records in a DNSSEC-secure answer (the study's "supports DANE"; RFC 7672 §2.2.1: with an
        insecure MX RRset DANE does not apply), whether or not they match.
      dnssec_mx: the DNSSEC status of the domain's MX answer.
      mta_sts_mode: enforce / testing / none from a valid record and policy; null otherwise.
      tlsrpt: a valid TLS-RPT record is published; null when the _smtp._tls TXT lookup failed
        (unknown, never "no").
    """

    starttls: Coverage3
    pkix_valid: Coverage3
    dane_valid: Coverage3
    dane_published: bool
    dnssec_mx: str
    mta_sts_mode: str | None
    tlsrpt: bool | None


def _roll(values: Sequence[bool | None]) -> Coverage3:
    """all/some/none over per-host tri-states; unknown hosts only matter if they could change it."""
    if not values:
        return Coverage3.NOT_APPLICABLE
    yes = sum(v is True for v in values)
    unknown = sum(v is None for v in values)
    if unknown == 0:
        return Coverage3.ALL if yes == len(values) else Coverage3.SOME if yes else Coverage3.NONE
    return Coverage3.SOME if yes else Coverage3.UNKNOWN


def host_starttls(states: Iterable[str | None]) -> bool | None:
    """One MX host offers STARTTLS when any address advertised it; it does not once every
    address was seen not to; else unknown.  ``states``: its addresses' ``Starttls`` values
    (typed, or as a results file spells them: the one rule for the scan and the report)."""
    seen = list(states)
    if Starttls.YES in seen:
        return True
    if seen and all(s == Starttls.NO for s in seen):
        return False
    return None


def host_pkix(verdicts: Sequence[tuple[bool | None, bool]]) -> bool | None:
    """True if any address presented a valid chain; False once every address settled it
    (an invalid chain, or no STARTTLS at all); else unknown.  ``verdicts``: per address,
    (its PKIX verdict's ``valid``, None without a verdict; STARTTLS was not offered)."""
    if any(valid for valid, _ in verdicts):
        return True
    settled = sum(valid is not None or no_starttls for valid, no_starttls in verdicts)
    return False if verdicts and settled == len(verdicts) else None


def host_pkix_valid(results: Sequence[SmtpResult]) -> bool | None:
    """``host_pkix`` over one host's SMTP results."""
    return host_pkix([(None if r.pkix is None else r.pkix.valid, r.starttls is Starttls.NO) for r in results])


def no_tls_reason(results: Sequence[SmtpResult]) -> str | None:
    """Why no address of a host gave a TLS session, once every address settled that
    (STARTTLS not offered, refused, the handshake failed, unreachable); None when one did,
    or when some address was not measured (skipped, or the probe gave no result), so a
    DANE verdict of "no-tls" never rests on a probe that did not run."""
    if not results:
        return None
    reasons: dict[str, None] = {}
    for r in results:
        if r.tls is not None or r.status in (Status.SKIPPED, Status.UNKNOWN_ERROR):
            return None
        if r.starttls is Starttls.NO:
            reasons["STARTTLS not offered"] = None
        else:
            reasons[f"{r.status.value} at {r.phase.value}"] = None
    return "; ".join(reasons)


def secure_tlsa(outcome: str | None, dnssec: str | None, data: Sequence[str]) -> bool:
    """A TLSA answer that publishes DANE: records, in a DNSSEC-secure answer (RFC 7672 §2.2)."""
    return outcome == Outcome.OK and dnssec == Dnssec.SECURE and bool(data)


def dane_published(mx: Answer, hosts: Iterable[MxHost]) -> bool:
    """The study's DANE definition (``Posture.dane_published``): the MX answer is
    DNSSEC-secure and some MX host's TLSA answer is ``secure_tlsa``."""
    if mx.dnssec is not Dnssec.SECURE:
        return False
    return any(h.tlsa is not None and secure_tlsa(h.tlsa.outcome, h.tlsa.dnssec, h.tlsa.data) for h in hosts)


def _host_dane(dane: DaneResult | None) -> bool | None:
    if dane is None or dane.status is DaneStatus.UNDETERMINED:
        return None
    return dane.status is DaneStatus.VALID


def posture(
    hosts: Sequence[tuple[Sequence[SmtpResult], DaneResult | None]],
    *,
    dnssec_mx: str,
    dane_published: bool,
    mta_sts_mode: str | None,
    tlsrpt: bool | None,
) -> Posture:
    """Roll-ups over the MX hosts: each given as (its SMTP results, its DANE verdict)."""
    return Posture(
        starttls=_roll([host_starttls(r.starttls for r in results) for results, _ in hosts]),
        pkix_valid=_roll([host_pkix_valid(results) for results, _ in hosts]),
        dane_valid=_roll([_host_dane(dane) for _, dane in hosts]),
        dane_published=dane_published,
        dnssec_mx=dnssec_mx,
        mta_sts_mode=mta_sts_mode,
        tlsrpt=tlsrpt,
    )
