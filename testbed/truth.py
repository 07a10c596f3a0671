"""Ground truth: what a correct scan of the world must report, per domain.

Derived from the world *definition* (fields of ``Domain`` and ``Host``), not
from the DNS server's answers, so a test comparing a scan with the truth also
checks the servers.  Values use the scanner's vocabulary as plain strings
(``probes/dns/records.py`` Outcome/Dnssec/TlsaSkip, ``engine/status.py``
Status); this package imports nothing of the scanner.

Interpretations a reader should know:
- A bogus zone: the scanner's CD=1 retry gets the data, so MX is "ok" with
  dnssec "bogus" (``Dnssec.BOGUS``: "SERVFAIL that succeeds with CD=1").
- TLSA is expected (a list) only for MX hosts with addresses in a signed zone
  (RFC 7672 §2.2); otherwise null with the skip reason.
- TLSA association data comes from ``zones.placeholder_tlsa_data`` until
  ``testbed/pki.py`` binds real certificates; "dane" says whether it *should* match.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from testbed.world import CertKind, Domain, Host, SmtpBehaviour, TlsaBinds, World, ZoneStatus
from testbed.zones import TlsaData, placeholder_tlsa_data

__all__ = ["domain_truth", "smtp_expectation", "truth"]

_S = SmtpBehaviour
#: SMTP behaviour -> (engine Status value, STARTTLS advertised: yes/no/unknown, TLS established).
_SMTP: dict[SmtpBehaviour, tuple[str, str, bool]] = {
    _S.GOOD: ("success", "yes", True),
    _S.REFUSED: ("connection-refused", "unknown", False),
    _S.BLACKHOLE: ("io-timeout", "unknown", False),
    _S.BANNER_554: ("application-error", "unknown", False),
    _S.CLOSE_421: ("application-error", "unknown", False),
    _S.NO_STARTTLS: ("success", "no", False),
    _S.STARTTLS_454: ("application-error", "yes", False),
    _S.HANDSHAKE_FAIL: ("tls-handshake-error", "yes", False),
    _S.SLOW_BANNER: ("success", "yes", True),
    _S.TARPIT: ("io-timeout", "unknown", False),
}
_DNSSEC = {ZoneStatus.SIGNED: "secure", ZoneStatus.UNSIGNED: "insecure", ZoneStatus.BOGUS: "bogus"}


def truth(world: World, tlsa_data: TlsaData = placeholder_tlsa_data) -> Iterator[dict[str, Any]]:
    """One dict per domain, in the world's domain order."""
    hosts = {h.name: h for h in world.hosts}
    zones = {z.apex: z.status for z in world.zones}
    for d in world.domains:
        yield domain_truth(d, hosts, zones, tlsa_data)


def _zone_status(name: str, zones: dict[str, ZoneStatus]) -> ZoneStatus:
    while name:
        if name in zones:
            return zones[name]
        _, _, name = name.partition(".")
    return zones.get("", ZoneStatus.SIGNED)


def domain_truth(
    d: Domain,
    hosts: dict[str, Host],
    zones: dict[str, ZoneStatus],
    tlsa_data: TlsaData = placeholder_tlsa_data,
) -> dict[str, Any]:
    out: dict[str, Any] = {"domain": d.name, "scenario": d.scenario}
    chain: list[str] = []
    if d.fault is not None:
        outcome, dnssec = d.fault.value, "indeterminate"
    elif not d.exists:
        outcome, dnssec = "nxdomain", _DNSSEC[_zone_status(d.name.partition(".")[2], zones)]
    else:
        status = d.dnssec
        if d.cname is not None:
            chain = [d.cname]
            # A chain is secure only if every zone on it is signed (RFC 4035 §5).
            target = _zone_status(d.cname, zones)
            if ZoneStatus.BOGUS in (status, target):
                status = ZoneStatus.BOGUS
            elif status is not target:
                status = ZoneStatus.UNSIGNED
        outcome = "nodata" if d.mx is None else "ok"
        dnssec = _DNSSEC[status]
    usable = outcome == "ok" and d.mx is not None
    null_mx = usable and d.mx is not None and any(m.host == "." for m in d.mx)
    mx = sorted(d.mx or (), key=lambda m: (m.preference, m.host)) if usable and not null_mx else []
    out.update(
        mx_outcome=outcome,
        mx_dnssec=dnssec,
        mx_cname_chain=chain,
        has_mx=bool(mx),
        null_mx=null_mx,
        mx_hosts=[_mx_host(m.preference, m.host, hosts.get(m.host), tlsa_data) for m in mx],
        implicit_mx=(
            {"ipv4": [a for a in d.a if ":" not in a], "ipv6": [a for a in d.a if ":" in a]}
            if d.exists and d.fault is None and d.mx is None
            else None
        ),
    )
    present = d.exists and d.fault is None
    sts = list(d.sts_txt) if present else []
    out["mta_sts_txt"] = sts
    out["mta_sts_cname"] = [d.sts_cname] if present and d.sts_cname else []
    out["tlsrpt_txt"] = list(d.tlsrpt_txt) if present else []
    out["mta_sts"] = _mta_sts(d, sts, out["mx_hosts"])
    out["tlsrpt_valid"] = _tlsrpt_valid(out["tlsrpt_txt"])
    return out


def _mx_host(pref: int, name: str, host: Host | None, tlsa_data: TlsaData) -> dict[str, Any]:
    ipv4 = [host.ipv4] if host and host.ipv4 else []
    ipv6 = [host.ipv6] if host and host.ipv6 else []
    status = host.dnssec if host else ZoneStatus.UNSIGNED
    tlsa: list[str] | None = None
    skipped: str | None
    if not (ipv4 or ipv6) or status is ZoneStatus.BOGUS:
        skipped = "address-unresolved"
    elif status is ZoneStatus.UNSIGNED:
        skipped = "address-insecure"
    else:
        skipped = None
        assert host is not None
        tlsa = [f"{t.usage} {t.selector} {t.mtype} {tlsa_data(host, t)}" for t in host.tlsa]
    return {
        "preference": pref,
        "host": name,
        "ipv4": ipv4,
        "ipv6": ipv6,
        "address_dnssec": _DNSSEC[status] if (ipv4 or ipv6) else "insecure",
        "tlsa": tlsa,
        "tlsa_skipped": skipped,
        "smtp": smtp_expectation(host, tlsa),
    }


def smtp_expectation(host: Host | None, tlsa: list[str] | None) -> dict[str, Any]:
    """What an SMTP probe of the host must find (status, STARTTLS, PKIX, DANE)."""
    if host is None or not (host.ipv4 or host.ipv6):
        return {
            "status": "resolve-error",
            "starttls": "unknown",
            "pkix_valid": None,
            "cert": None,
            "dane": None,
        }
    status, starttls, tls = _SMTP[host.smtp or SmtpBehaviour.REFUSED]
    cert = host.cert.value if tls and host.cert else None
    if tlsa is None:
        dane = "not-applicable"
    elif not host.tlsa:
        dane = "none"
    elif all(t.usage in (0, 1) for t in host.tlsa):
        dane = "unusable"  # RFC 7672 §3.1.3: PKIX-TA/PKIX-EE are not for SMTP
    elif not tls:
        dane = "unknown"
    else:
        ok = any(t.usage in (2, 3) and t.binds is not TlsaBinds.MISMATCH for t in host.tlsa)
        dane = "match" if ok else "mismatch"
    return {
        "status": status,
        "starttls": starttls,
        "pkix_valid": cert == CertKind.VALID if cert else None,
        "cert": cert,
        "dane": dane,
    }


def _mta_sts(d: Domain, txt: list[str], mx_hosts: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not txt:
        return None
    records = [t for t in txt if t.startswith("v=STSv1")]
    p = d.policy
    if p is None:
        return {
            "txt_valid": len(records) == 1,
            "http": None,
            "mode": None,
            "valid": False,
            "reasons": ["no-policy"],
        }
    smtp = [h["smtp"] for h in mx_hosts]
    return {
        "txt_valid": len(records) == 1,
        "http": p.http.value,
        "mode": p.mode,
        "valid": p.valid,
        "reasons": list(p.reasons),
        "mx_covered": p.mx_covered,
        # RFC 8461 §5: in enforce mode, mail goes only to MX hosts with valid PKIX certificates.
        "would_bounce": p.valid and p.mode == "enforce" and not any(s["pkix_valid"] for s in smtp),
    }


def _tlsrpt_valid(txt: list[str]) -> bool | None:
    """RFC 8460 §3: exactly one record starting v=TLSRPTv1 whose rua URIs are mailto: or https:."""
    if not txt:
        return None
    records = [t for t in txt if t.startswith("v=TLSRPTv1")]
    if len(records) != 1:
        return False
    fields = dict(f.strip().partition("=")[::2] for f in records[0].split(";") if "=" in f)
    rua = [u.strip() for u in fields.get("rua", "").split(",") if u.strip()]
    return bool(rua) and all(u.startswith(("mailto:", "https:")) for u in rua)
