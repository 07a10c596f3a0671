"""The columns of ``mxscan export``: for each level, each column's stable name, type,
meaning and how its value is read from a record (``report.export`` streams the rows).

The domain level's answers are ``probes.posture.DomainAnswers``, the one reduction
behind the report's headline figures.  Every answer is a tri-state: True, False, or
None for "unknown" or "not measured", which is never written as False.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from probes.posture import (
    Answer,
    DomainAnswers,
    Reading,
    coverage,
    host_pkix_of,
    host_starttls_of,
    host_tlsa,
)

__all__ = ["COLUMNS", "GETTERS", "LEVELS", "TYPES", "Column", "Row", "leaf_cert"]

LEVELS = ("domain", "host", "address")
TYPES = ("string", "bool", "int", "float")
_SEP = ";"


@dataclass(frozen=True, slots=True)
class Column:
    """One exported column: its stable name, type (string/bool/int/float) and meaning."""

    name: str
    type: str
    doc: str


#: Answers as tri-states (``.get`` gives None for unknown and not-measured, never False).
_YN = {Answer.YES: True, Answer.NO: False}


def _tri(reading: Reading[Any] | Answer) -> bool | None:
    return _YN.get(reading.answer if isinstance(reading, Reading) else reading)


def _joined(values: Iterable[Any]) -> str | None:
    items = {str(v) for v in values if v is not None and v != ""}
    return _SEP.join(sorted(items)) if items else None


@dataclass(slots=True)
class Row:
    """What one row is made from: the record and its facts, and at the host and address
    levels the MX host's transport, its DNS answers and the address's SMTP result."""

    record: dict[str, Any]
    facts: DomainAnswers
    transport: dict[str, Any]
    dns_host: dict[str, Any] | None
    probe: dict[str, Any]
    preferred: bool


Getter = Callable[[Row], Any]


def _sts_reasons(record: dict[str, Any]) -> str | None:
    sts = record.get("mta_sts") or {}
    rec, policy = sts.get("record") or {}, sts.get("policy") or {}
    reasons = [] if rec.get("valid") else list(rec.get("reasons") or ())
    if policy and not policy.get("valid"):
        reasons += policy.get("reasons") or ()
    return _joined(reasons)


def _pkix_reasons(probes: Iterable[dict[str, Any]]) -> str | None:
    return _joined((p.get("pkix") or {}).get("reason") for p in probes)


def _statuses(probes: Iterable[dict[str, Any]]) -> str | None:
    return _joined(p.get("status") for p in probes)


def _probes(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for transport in record.get("mx_transport") or ():
        yield from transport.get("addresses") or ()


def _mx_hosts(r: Row) -> int | None:
    dns = r.record.get("dns")
    return None if dns is None else len(dns.get("mx_hosts") or ())


def _host_starttls(transport: dict[str, Any]) -> bool | None:
    return host_starttls_of(transport.get("addresses") or ())


def _host_pkix(transport: dict[str, Any]) -> bool | None:
    """As posture rolls a host up: any address valid; false once every address settled it."""
    return host_pkix_of(transport.get("addresses") or ())


def leaf_cert(probe: dict[str, Any]) -> dict[str, Any]:
    certs = (((probe.get("tls") or {}).get("chain")) or {}).get("certs") or ()
    return dict(certs[0]) if certs else {}


def _c(name: str, type_: str, doc: str, get: Getter) -> tuple[Column, Getter]:
    assert type_ in TYPES, type_
    return Column(name, type_, doc), get


_DOMAIN_COLUMNS: tuple[tuple[Column, Getter], ...] = (
    _c(
        "domain",
        "string",
        "the normalised domain (A-label); for invalid input the raw text",
        lambda r: r.facts.domain,
    ),
    _c(
        "status",
        "string",
        "success / invalid-input / skipped / unknown-error for the domain as a whole",
        lambda r: r.facts.status,
    ),
    _c(
        "reason",
        "string",
        "why status is not success; empty otherwise",
        lambda r: r.record.get("reason") or None,
    ),
    _c(
        "has_mx",
        "bool",
        "at least one MX record that is not the null MX: the base of every figure; "
        "empty when the MX lookup failed or DNS was not measured",
        lambda r: _tri(r.facts.mx),
    ),
    _c(
        "mx_state",
        "string",
        "mx / null-mx / implicit-only / no-mx / unknown / not-measured",
        lambda r: r.facts.mx.text,
    ),
    _c("mx_hosts", "int", "MX hosts in the domain's MX answer", _mx_hosts),
    _c(
        "provider",
        "string",
        "provider of the most preferred MX host, as the provider tables count it",
        lambda r: r.facts.provider,
    ),
    _c(
        "starttls",
        "bool",
        "at least one MX host advertised STARTTLS (posture.starttls all or some)",
        lambda r: _tri(r.facts.starttls),
    ),
    _c(
        "starttls_coverage",
        "string",
        "over the MX hosts: all / some / none / unknown / not-measured",
        lambda r: r.facts.starttls.text,
    ),
    _c(
        "pkix_valid",
        "bool",
        "at least one MX host presented a PKIX-valid chain for its name (posture.pkix_valid all or some)",
        lambda r: _tri(r.facts.pkix),
    ),
    _c(
        "pkix_coverage",
        "string",
        "over the MX hosts: all / some / none / unknown / not-measured",
        lambda r: r.facts.pkix.text,
    ),
    _c(
        "dnssec_mx",
        "string",
        "DNSSEC status of the MX answer: secure / insecure / bogus / unknown / not-measured",
        lambda r: r.facts.dnssec.text,
    ),
    _c(
        "dnssec_signed",
        "bool",
        "the MX answer is DNSSEC-secure (bogus counts as not signed)",
        lambda r: _tri(r.facts.dnssec),
    ),
    _c(
        "dane_published",
        "bool",
        "the study's DANE: the MX answer secure and TLSA records in a secure "
        "answer for some MX host, whether or not they match",
        lambda r: _tri(r.facts.dane),
    ),
    _c(
        "dane_valid",
        "bool",
        "at least one MX host's DANE verdict is valid (posture.dane_valid all or some)",
        lambda r: _tri(coverage(r.record.get("posture"), "dane_valid")),
    ),
    _c(
        "dane_valid_coverage",
        "string",
        "over the MX hosts: all / some / none / unknown / not-measured",
        lambda r: coverage(r.record.get("posture"), "dane_valid").text,
    ),
    _c(
        "mta_sts",
        "bool",
        "exactly one valid STSv1 TXT record at _mta-sts.<domain> (CNAMEs followed)",
        lambda r: _tri(r.facts.sts_record),
    ),
    _c(
        "mta_sts_policy",
        "bool",
        "the policy was also fetched and parsed: the record has an effective mode",
        lambda r: _tri(r.facts.sts_policy),
    ),
    _c(
        "mta_sts_mode",
        "string",
        "enforce / testing / none from a valid record and policy; empty otherwise",
        lambda r: r.facts.sts_mode,
    ),
    _c(
        "mta_sts_delegated",
        "bool",
        "the valid record was reached through a CNAME; empty without one",
        lambda r: r.facts.sts_delegated if r.facts.sts_record is Answer.YES else None,
    ),
    _c(
        "mta_sts_findings",
        "string",
        "MTA-STS findings (enforce-would-fail, mx-not-covered, ...), ';'-separated",
        lambda r: _joined((r.record.get("mta_sts") or {}).get("findings") or ()),
    ),
    _c(
        "mta_sts_reasons",
        "string",
        "why the TXT record or the policy is invalid, ';'-separated",
        lambda r: _sts_reasons(r.record),
    ),
    _c(
        "tlsrpt",
        "bool",
        "exactly one valid TLS-RPT record with a usable rua URI",
        lambda r: _tri(r.facts.tlsrpt),
    ),
    _c(
        "tlsa_records",
        "int",
        "TLSA records in DNSSEC-secure answers over the MX hosts",
        lambda r: None if r.record.get("dns") is None else len(r.facts.tlsa),
    ),
    _c(
        "smtp_statuses",
        "string",
        "SMTP probe statuses over the domain's probed addresses, ';'-separated",
        lambda r: _statuses(_probes(r.record)),
    ),
    _c(
        "pkix_reasons",
        "string",
        "PKIX verdict reasons over the domain's probed addresses, ';'-separated",
        lambda r: _pkix_reasons(_probes(r.record)),
    ),
    _c(
        "errors",
        "string",
        "probes that gave no result, as probe:status, ';'-separated",
        lambda r: _joined(f"{e.get('probe')}:{e.get('status')}" for e in r.record.get("errors") or ()),
    ),
    _c(
        "measured_at",
        "string",
        "when the domain's measurement finished, ISO 8601 UTC",
        lambda r: r.record.get("measured_at"),
    ),
    _c(
        "scan_started",
        "string",
        "when the scan run that measured it started, ISO 8601 UTC",
        lambda r: (r.record.get("scan") or {}).get("started"),
    ),
    _c(
        "dnssec_validating",
        "bool",
        "the resolver validated (AD read); when false every DNSSEC answer is unknown",
        lambda r: (r.record.get("scan") or {}).get("dnssec_validating"),
    ),
)

#: The MX host's own columns, the same at the host and the address level.
_MX_HOST = _c("host", "string", "the MX host name", lambda r: r.transport.get("host"))
_MX_PROVIDER = _c(
    "provider",
    "string",
    "the provider operating the host; empty if unknown",
    lambda r: r.transport.get("provider"),
)

_HOST_COLUMNS: tuple[tuple[Column, Getter], ...] = (
    _c("domain", "string", "the domain whose MX host this is", lambda r: r.facts.domain),
    _MX_HOST,
    _c("preference", "int", "its MX preference", lambda r: r.transport.get("preference")),
    _MX_PROVIDER,
    _c(
        "preferred",
        "bool",
        "the domain's most preferred MX host (lowest preference, then name): the one "
        "its provider column names",
        lambda r: r.preferred,
    ),
    _c(
        "addresses_probed",
        "int",
        "addresses of the host probed (IPv4 and IPv6)",
        lambda r: len(r.transport.get("addresses") or ()),
    ),
    _c(
        "addresses_not_probed",
        "int",
        "addresses left unprobed by the per-host or per-domain caps",
        lambda r: sum((r.transport.get("not_probed") or {}).values()),
    ),
    _c(
        "starttls",
        "bool",
        "some address advertised STARTTLS; false when every address answered without it",
        lambda r: _host_starttls(r.transport),
    ),
    _c(
        "pkix_valid",
        "bool",
        "some address presented a PKIX-valid chain; false once every address settled it otherwise",
        lambda r: _host_pkix(r.transport),
    ),
    _c(
        "pkix_reasons",
        "string",
        "PKIX verdict reasons over its addresses, ';'-separated",
        lambda r: _pkix_reasons(r.transport.get("addresses") or ()),
    ),
    _c(
        "smtp_statuses",
        "string",
        "SMTP probe statuses over its addresses, ';'-separated",
        lambda r: _statuses(r.transport.get("addresses") or ()),
    ),
    _c(
        "tlsa_published",
        "bool",
        "TLSA records in a DNSSEC-secure answer for this host",
        lambda r: None if r.dns_host is None else _tri(host_tlsa(r.dns_host)),
    ),
    _c(
        "dane_status",
        "string",
        "DANE verdict in this domain's context: none / valid / mismatch / unusable / "
        "no-tls / insecure / bogus / undetermined; empty when not assessed",
        lambda r: (r.transport.get("dane") or {}).get("status"),
    ),
    _c(
        "dane_detail",
        "string",
        "why that DANE verdict",
        lambda r: (r.transport.get("dane") or {}).get("detail") or None,
    ),
    _c("dnssec_mx", "string", "DNSSEC status of the domain's MX answer", lambda r: r.facts.dnssec.text),
)

_ADDRESS_COLUMNS: tuple[tuple[Column, Getter], ...] = (
    _c("domain", "string", "the domain whose MX host this address serves", lambda r: r.facts.domain),
    _MX_HOST,
    _MX_PROVIDER,
    _c(
        "ref",
        "string",
        "the probe's reference (smtp:host@address:port), shared by every domain using the "
        "host: distinct refs are distinct probes",
        lambda r: _ref(r.probe),
    ),
    _c("address", "string", "the probed IP address", lambda r: r.probe.get("address")),
    _c(
        "family",
        "string",
        "ipv4 / ipv6",
        lambda r: "ipv6" if ":" in str(r.probe.get("address", "")) else "ipv4",
    ),
    _c("port", "int", "the SMTP port", lambda r: r.probe.get("port")),
    _c(
        "status",
        "string",
        "the probe's status (success, connection-refused, connection-timeout, io-timeout, "
        "protocol-error, application-error, ...)",
        lambda r: r.probe.get("status"),
    ),
    _c("phase", "string", "how far the exchange got", lambda r: r.probe.get("phase")),
    _c("starttls", "string", "STARTTLS advertised: yes / no / unknown", lambda r: r.probe.get("starttls")),
    _c("banner_code", "int", "the banner's reply code", lambda r: r.probe.get("banner_code")),
    _c(
        "tls_version",
        "string",
        "the negotiated TLS version; empty without a TLS session",
        lambda r: (r.probe.get("tls") or {}).get("version"),
    ),
    _c(
        "tls_cipher",
        "string",
        "the negotiated cipher suite",
        lambda r: (r.probe.get("tls") or {}).get("cipher"),
    ),
    _c(
        "pkix_valid",
        "bool",
        "the presented chain is PKIX-valid for the MX host name; empty: no verdict",
        lambda r: (r.probe.get("pkix") or {}).get("valid"),
    ),
    _c(
        "pkix_reason",
        "string",
        "the PKIX verdict's reason (ok, expired, self-signed, hostname-mismatch, ...)",
        lambda r: (r.probe.get("pkix") or {}).get("reason"),
    ),
    _c(
        "cert_not_after",
        "string",
        "the leaf certificate's expiry, ISO 8601",
        lambda r: leaf_cert(r.probe).get("not_after"),
    ),
    _c("cert_issuer", "string", "the leaf certificate's issuer", lambda r: leaf_cert(r.probe).get("issuer")),
    _c(
        "greylisted",
        "bool",
        "the first contact was greylisted (450/451)",
        lambda r: r.probe.get("greylisted"),
    ),
    _c("attempts", "int", "connection attempts made", lambda r: r.probe.get("attempts")),
    _c(
        "plaintext_injection",
        "bool",
        "plaintext followed the STARTTLS reply (RFC 3207 §4.2)",
        lambda r: r.probe.get("plaintext_injection"),
    ),
    _c(
        "duration_ms",
        "float",
        "the probe's wall-clock time in milliseconds",
        lambda r: r.probe.get("duration_ms"),
    ),
    _c("detail", "string", "the failure's detail; empty on success", lambda r: r.probe.get("detail") or None),
)

#: The stable columns of each level (the contract documented in schema/export-columns.md).
COLUMNS: dict[str, tuple[Column, ...]] = {
    "domain": tuple(c for c, _ in _DOMAIN_COLUMNS),
    "host": tuple(c for c, _ in _HOST_COLUMNS),
    "address": tuple(c for c, _ in _ADDRESS_COLUMNS),
}
GETTERS: dict[str, tuple[Getter, ...]] = {
    "domain": tuple(g for _, g in _DOMAIN_COLUMNS),
    "host": tuple(g for _, g in _HOST_COLUMNS),
    "address": tuple(g for _, g in _ADDRESS_COLUMNS),
}


def _ref(probe: dict[str, Any]) -> str:
    address = str(probe.get("address", ""))
    shown = f"[{address}]" if ":" in address else address
    return f"smtp:{probe.get('host', '')}@{shown}:{probe.get('port', '')}"
