"""Ground truth: what a correct scan of the world must report, per domain.

Derived from the world *definition* (fields of ``Domain`` and ``Host``), not
from the servers' answers, so a test comparing a scan with the truth also
checks the servers.  Values use the scanner's vocabulary as plain strings
(``probes/dns/records.py`` Outcome/Dnssec/TlsaSkip, ``engine/status.py``
Status, ``probes/smtp/records.py`` Phase/Starttls, ``probes/tls/verify.py``
PkixReason, ``probes/dane/tlsa.py`` DaneStatus, ``probes/mtasts/records.py``
Finding, ``probes/transport.py`` Coverage3); this package imports nothing of
the scanner.  The scan is assumed to trust the world's root and to know its
intermediates (``endpoints.json``: ``--ca-file``, ``--intermediates``).

Interpretations a reader should know:
- A bogus zone: ``mx_outcome``/``mx_dnssec`` describe the zone's data as a
  CD=1 query sees it ("ok", "bogus"); a validating resolver answers SERVFAIL
  and must not hand out the data (RFC 4035 §5.5), and a sender must not use it
  (RFC 7672 §2.2.1).  So ``mx_validated_outcome`` is "servfail" and nothing
  behind the MX is measured (no transport, roll-ups not-applicable).
- TLSA is asked only for MX hosts whose addresses are DNSSEC-secure (RFC 7672
  §2.2.2); otherwise null with the skip reason.  A host whose address records
  are bogus has "address-insecure" (they validated, but not as secure).
- DANE per MX host follows RFC 7672 in the scanner's precedence: bogus MX or
  TLSA → "bogus"; no TLSA looked up or none published → "none"; TLSA secure
  but the MX answer not → "insecure"; no TLS session (every SMTP behaviour of
  the world without TLS is a settled outcome: no STARTTLS, 454, handshake
  failure, unreachable) → "no-tls" (§2.2: a DANE sender would not deliver);
  usages 0/1 only → "unusable" (§3.1.3); else "valid" or "mismatch".
- ``posture.dane_published`` (the study's DANE): the MX answer is secure and a
  followed MX host publishes TLSA in a secure answer (§2.2.1: DANE does not
  apply below an insecure MX RRset), so a DANE provider's unsigned customers
  do not count.
- The ``_mta-sts`` / ``_smtp._tls`` TXT lookups fail for a domain with a
  resolver fault (it covers the names below the domain) or in a bogus zone
  (SERVFAIL): ``tlsrpt_valid``, ``posture.tlsrpt`` and ``mta_sts_txt_valid``
  are then None (unknown, never "no record") and there are no findings.
- ``mx_hosts`` lists every MX host; a scan follows the first ``mx_followed``
  (``MX_HOSTS_FOLLOWED``), and the roll-ups and findings are over those.
- Every address of an MX host has ``ptr``: what its reverse DNS shows (``fcrdns`` as
  ``probes/dns/reverse.py`` Fcrdns, ``names``), derived from the world's PTR records and
  its forward data: "no-ptr" without a PTR record, "confirmed" when a PTR name's A/AAAA
  holds the address, "unknown" when that lookup fails at a validating resolver (a bogus
  zone, a resolver fault covering the name), else "mismatch".
- ``tlsa_data`` gives the association data: ``worldpki.WorldPki.tlsa_data``
  for a running world (real certificates), placeholders otherwise.

The Internet-like hosts (``internet.py``) are judged under the scanner's
documented policy (``scanpolicy.ScanPolicy``, one place for every deadline,
retry and cap the truth reads):
- Each MX host lists ``addresses`` in the order a sender tries them (IPv4 first,
  answer order), each with its own behaviour and expectation, and whether a
  correct scan probes it: at most ``max_addresses_per_family`` per family of a
  host ("host-cap") and ``max_addresses_per_domain`` over the followed hosts
  ("domain-cap"); ``not_probed`` counts the rest by reason (recorded, never
  dropped).  The host's ``smtp`` is over its probed addresses: a field where
  they agree (null where they differ), STARTTLS and PKIX rolled up as
  ``probes/transport.py`` does, the certificate of the addresses with TLS.
- Timeouts say the phase ("connection-timeout" at connect, "io-timeout" at the
  phase, a TLS handshake timeout "tls-handshake-error" at tls) and allow
  ``1 + timeout_retries`` connections (``max_attempts``); an address that drops
  SYNs or refuses, behind several MX names (every silent IPv6 host is ``::1``),
  costs its first probe only: the scanner records the later names the same,
  with 0 connections (still within ``max_attempts``); a greylisting 451
  greeting is retried once: "success" with ``greylisted`` true; a host that
  answers 421 above N connections per client never shows it to a scanner
  holding at most ``per_address_connections`` <= N (success); a tarpit greeting
  after d seconds is a success when d (and each slow reply) is inside its
  deadline, else a timeout in that phase.  ``max_connections`` per MX host
  bounds what ``testbed stats`` may count for it.
- A policy whose body trickles over ``body_seconds`` is usable only when that
  fits the fetch deadlines; ``mta_sts.fetch`` gives the fetch's status and phase
  where the world's timing decides them (silent and slow policy hosts).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, NamedTuple

from testbed.scanpolicy import DEFAULT_POLICY, ScanPolicy
from testbed.world import (
    CertKind,
    Domain,
    Host,
    HostAddress,
    MtaStsPolicy,
    PolicyHttp,
    SmtpBehaviour,
    Tlsa,
    TlsaBinds,
    World,
    ZoneStatus,
)
from testbed.zones import TlsaData, placeholder_tlsa_data

__all__ = ["ReverseDns", "address_expectation", "domain_truth", "smtp_expectation", "truth"]

_S = SmtpBehaviour


class _Expect(NamedTuple):
    """Status, phase reached, STARTTLS advertised (yes/no/unknown), TLS established; whether
    the status is a timeout, and whether the greeting is a transient 4xx (retried)."""

    status: str | None
    phase: str | None
    starttls: str
    tls: bool
    timeout: bool = False
    transient: bool = False


#: SMTP behaviour -> what one probe of an address finds (timed behaviours: ``_timed``).
_SMTP: dict[SmtpBehaviour, _Expect] = {
    _S.GOOD: _Expect("success", "done", "yes", True),
    _S.REFUSED: _Expect("connection-refused", "connect", "unknown", False),
    _S.BLACKHOLE: _Expect("io-timeout", "banner", "unknown", False, timeout=True),
    _S.BANNER_554: _Expect("application-error", "banner", "unknown", False),
    _S.CLOSE_421: _Expect("application-error", "banner", "unknown", False, transient=True),
    _S.NO_STARTTLS: _Expect("success", "done", "no", False),
    _S.STARTTLS_454: _Expect("application-error", "starttls", "yes", False),
    _S.HANDSHAKE_FAIL: _Expect("tls-handshake-error", "tls", "yes", False),
    _S.SLOW_BANNER: _Expect("success", "done", "yes", True),
    _S.TARPIT: _Expect("io-timeout", "ehlo", "unknown", False, timeout=True),
    _S.SYN_DROP: _Expect("connection-timeout", "connect", "unknown", False, timeout=True),
    # The first greeting is 451; the one retry the policy allows succeeds (``_transient``).
    _S.GREYLIST: _Expect("success", "done", "yes", True, transient=True),
}
#: Certificate kind -> PkixReason (with the world's intermediates known to the scanner).
_PKIX: dict[CertKind, str] = {
    CertKind.VALID: "ok",
    CertKind.EXPIRED: "expired",
    CertKind.NOT_YET_VALID: "not-yet-valid",
    CertKind.WRONG_NAME: "hostname-mismatch",
    CertKind.SELF_SIGNED: "self-signed",
    CertKind.UNTRUSTED_CA: "unknown-issuer",
    CertKind.MISSING_INTERMEDIATE: "incomplete-chain",
}
#: A scan follows at most this many MX hosts, the lowest (preference, name) first
#: (probes/dns/probe.py MAX_MX_HOSTS: one domain with hundreds of MX must not dominate a scan).
MX_HOSTS_FOLLOWED = 16
_DNSSEC = {ZoneStatus.SIGNED: "secure", ZoneStatus.UNSIGNED: "insecure", ZoneStatus.BOGUS: "bogus"}


def truth(
    world: World, tlsa_data: TlsaData = placeholder_tlsa_data, policy: ScanPolicy = DEFAULT_POLICY
) -> Iterator[dict[str, Any]]:
    """One dict per domain, in the world's domain order."""
    hosts = {h.name: h for h in world.hosts}
    zones = {z.apex: z.status for z in world.zones}
    reverse = ReverseDns(world)
    for d in world.domains:
        yield reverse.annotate(domain_truth(d, hosts, zones, tlsa_data, policy))


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
    policy: ScanPolicy = DEFAULT_POLICY,
) -> dict[str, Any]:
    out: dict[str, Any] = {"domain": d.name, "scenario": d.scenario}
    d = _as_fetched(d, policy)
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
    validated = "servfail" if dnssec == "bogus" else outcome
    usable = outcome == "ok" and d.mx is not None
    null_mx = usable and d.mx is not None and any(m.host == "." for m in d.mx)
    mx = sorted(d.mx or (), key=lambda m: (m.preference, m.host)) if usable and not null_mx else []
    budget = [policy.max_addresses_per_domain]  # addresses the domain may still probe
    mx_hosts = [
        _mx_host(m.preference, m.host, hosts.get(m.host), tlsa_data, dnssec, policy,
                 budget if i < MX_HOSTS_FOLLOWED else None)
        for i, m in enumerate(mx)
    ]  # fmt: skip
    out.update(
        mx_outcome=outcome,
        mx_dnssec=dnssec,
        mx_validated_outcome=validated,
        mx_cname_chain=chain,
        has_mx=bool(mx),
        null_mx=null_mx,
        mx_hosts=mx_hosts,
        mx_followed=min(len(mx_hosts), MX_HOSTS_FOLLOWED),
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
    txt_fails = _txt_lookups_fail(d, zones)
    out["tlsrpt_valid"] = None if txt_fails else _tlsrpt_valid(out["tlsrpt_txt"])
    out["mta_sts_txt_valid"] = None if txt_fails else len([t for t in sts if t.startswith("v=STSv1")]) == 1
    measured = mx_hosts[:MX_HOSTS_FOLLOWED] if validated == "ok" else []
    dane_published = dnssec == "secure" and any(h["tlsa"] for h in measured)
    out["mta_sts"] = _mta_sts(d, sts, measured, policy)
    out["mta_sts_findings"] = _findings(
        d, present and not txt_fails, sts, measured, bool(out["tlsrpt_valid"]), dane_published
    )
    out["posture"] = {
        "starttls": _roll([_host_starttls(h["smtp"]) for h in measured]),
        "pkix_valid": _roll([h["smtp"]["pkix_valid"] for h in measured]),
        "dane_valid": _roll([_host_dane(h["smtp"]["dane"]) for h in measured]),
        "dane_published": dane_published,
        "dnssec_mx": dnssec,
        "mta_sts_mode": (out["mta_sts"] or {}).get("mode"),
        "tlsrpt": out["tlsrpt_valid"],
    }
    return out


def _txt_lookups_fail(d: Domain, zones: dict[str, ZoneStatus]) -> bool:
    """The domain's ``_mta-sts`` and ``_smtp._tls`` TXT lookups fail at a validating resolver:
    a resolver fault on the domain, or the zone holding those names is bogus (RFC 4035 §5.5)."""
    if d.fault is not None:
        return True
    # A domain that does not exist, or whose apex is an alias, is no zone of its own: its
    # names sit in the parent's.
    own_zone = d.exists and d.cname is None
    zone = d.dnssec if own_zone else _zone_status(d.name.partition(".")[2], zones)
    return zone is ZoneStatus.BOGUS


def _mx_host(
    pref: int,
    name: str,
    host: Host | None,
    tlsa_data: TlsaData,
    mx_dnssec: str,
    policy: ScanPolicy = DEFAULT_POLICY,
    budget: list[int] | None = None,
) -> dict[str, Any]:
    """One MX host; ``budget``: addresses the domain may still probe (None: not followed)."""
    every = host.smtp_addresses() if host else ()
    ipv4 = [a.address for a in every if ":" not in a.address]
    ipv6 = [a.address for a in every if ":" in a.address]
    status = host.dnssec if host else ZoneStatus.UNSIGNED
    tlsa: list[str] | None = None
    skipped: str | None
    if not (ipv4 or ipv6):
        skipped = "address-unresolved"
    elif status is not ZoneStatus.SIGNED:
        skipped = "address-insecure"
    else:
        skipped = None
        assert host is not None
        tlsa = [f"{t.usage} {t.selector} {t.mtype} {tlsa_data(host, t)}" for t in host.tlsa]
    addresses = _addresses(host, every, policy, budget) if host else []
    probed = [a["smtp"] for a in addresses if a["probed"]]
    smtp = smtp_expectation(host, tlsa, probed) if host and every else smtp_expectation(None)
    smtp["dane"] = _dane(host, tlsa, mx_dnssec, smtp)
    not_probed: dict[str, int] = {}
    for a in addresses:
        if a["not_probed"]:
            not_probed[a["not_probed"]] = not_probed.get(a["not_probed"], 0) + 1
    return {
        "preference": pref,
        "host": name,
        "ipv4": ipv4,
        "ipv6": ipv6,
        "address_dnssec": _DNSSEC[status] if (ipv4 or ipv6) else "insecure",
        "tlsa": tlsa,
        "tlsa_skipped": skipped,
        "smtp": smtp,
        "addresses": addresses,
        "not_probed": not_probed,
        # What ``testbed stats`` may count for this host: the retry policy's bound.
        "max_connections": sum(a["smtp"]["max_attempts"] for a in addresses if a["probed"]),
    }


def _addresses(
    host: Host, every: tuple[HostAddress, ...], policy: ScanPolicy, budget: list[int] | None
) -> list[dict[str, Any]]:
    """Each address in the order a sender tries them, with its expectation and whether a
    correct scan probes it (the per-family cap first, then the domain's budget)."""
    out = []
    position = {"ipv4": 0, "ipv6": 0}
    for a in every:
        family = "ipv6" if ":" in a.address else "ipv4"
        position[family] += 1
        reason: str | None = None
        if budget is None:
            reason = "mx-not-followed"
        elif position[family] > policy.max_addresses_per_family:
            reason = "host-cap"
        elif budget[0] <= 0:
            reason = "domain-cap"
        else:
            budget[0] -= 1
        out.append({
            "address": a.address,
            "family": family,
            "behaviour": a.smtp.value if a.smtp else None,
            "probed": reason is None,
            "not_probed": reason,
            "smtp": address_expectation(host, a.smtp, policy),
        })  # fmt: skip
    return out


def address_expectation(
    host: Host, behaviour: SmtpBehaviour | None, policy: ScanPolicy = DEFAULT_POLICY
) -> dict[str, Any]:
    """What one probe of one address finds under ``policy`` (with the retries it allows)."""
    behaviour = behaviour or SmtpBehaviour.REFUSED
    e = _timed(host, behaviour, policy) if behaviour not in _SMTP else _SMTP[behaviour]
    attempts = 1
    if e.timeout and not e.tls:  # after a completed handshake the facts are in: no retry
        attempts += policy.timeout_retries
    if e.transient:
        attempts += policy.transient_retries
        if behaviour is SmtpBehaviour.GREYLIST and not policy.transient_retries:
            e = _Expect("application-error", "banner", "unknown", False, transient=True)
    cert = host.cert if e.tls else None
    # probes/transport.py host_pkix_valid: "no STARTTLS" settles it (False); no chain otherwise is unknown.
    pkix_valid = cert is CertKind.VALID if cert else (False if e.starttls == "no" else None)
    return {
        "status": e.status,
        "phase": e.phase,
        "starttls": e.starttls,
        "pkix": _PKIX[cert] if cert else None,
        "pkix_valid": pkix_valid,
        "cert": cert.value if cert else None,
        "timeout": e.timeout,
        "greylisted": behaviour is SmtpBehaviour.GREYLIST and e.status == "success",
        "max_attempts": attempts,
    }


#: The replies a STARTTLS probe waits for after the greeting (QUIT's is not waited on).
_REPLY_PHASES = ("ehlo", "starttls", "ehlo-tls")


def _timed(host: Host, behaviour: SmtpBehaviour, policy: ScanPolicy) -> _Expect:
    """Behaviours whose verdict depends on the scanner's deadlines."""
    if behaviour is SmtpBehaviour.CLIENT_LIMIT:
        # The scanner never holds more than per_address_connections to one address at once.
        if policy.per_address_connections <= host.client_limit:
            return _SMTP[SmtpBehaviour.GOOD]
        return _Expect(None, None, "unknown", False)  # it may or may not meet the 421
    if behaviour is not SmtpBehaviour.TARPIT_GREETING:
        raise ValueError(f"no expectation for SMTP behaviour {behaviour}")
    elapsed = host.greeting_delay
    if elapsed >= min(policy.phase_timeout, policy.host_timeout):
        return _Expect("io-timeout", "banner", "unknown", False, timeout=True)
    for phase in _REPLY_PHASES:
        elapsed += host.reply_delay
        if host.reply_delay >= policy.phase_timeout or elapsed >= policy.host_timeout:
            starttls = "unknown" if phase == "ehlo" else "yes"
            # Past STARTTLS the handshake is done: the chain was presented.
            return _Expect("io-timeout", phase, starttls, phase == "ehlo-tls", timeout=True)
    return _SMTP[SmtpBehaviour.GOOD]


def smtp_expectation(
    host: Host | None, tlsa: list[str] | None = None, probed: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """What the SMTP probes of a host's probed addresses show together (``probed``: their
    expectations; default: every address behaves as ``host.smtp``).  A field where they all
    agree keeps its value (null where they differ); STARTTLS and PKIX validity are rolled
    up as probes/transport.py does; the certificate is that of the addresses with TLS."""
    if host is None or not host.addresses():
        return {"status": None, "phase": None, "starttls": "unknown", "pkix": None, "pkix_valid": None,
                "cert": None}  # fmt: skip
    if probed is None:
        probed = [address_expectation(host, host.smtp)]
    if not probed:
        return smtp_expectation(None)

    def agreed(key: str, among: list[dict[str, Any]]) -> Any:
        values = {e[key] for e in among}
        return values.pop() if len(values) == 1 else None

    starttls = {e["starttls"] for e in probed}
    pkix = [e["pkix_valid"] for e in probed]
    with_tls = [e for e in probed if e["cert"]] or probed
    return {
        "status": agreed("status", probed),
        "phase": agreed("phase", probed),
        "starttls": "yes" if "yes" in starttls else "no" if starttls == {"no"} else "unknown",
        "pkix": agreed("pkix", with_tls),
        "pkix_valid": True if True in pkix else False if all(v is False for v in pkix) else None,
        "cert": agreed("cert", with_tls),
    }


def _dane(host: Host | None, tlsa: list[str] | None, mx_dnssec: str, smtp: dict[str, Any]) -> str:
    """The DANE status of one MX host in a domain (see the module docstring)."""
    if mx_dnssec == "bogus":
        return "bogus"
    if host is None or tlsa is None or not host.tlsa:
        return "none"
    if mx_dnssec != "secure":
        return "insecure"
    if smtp["cert"] is None:
        return "no-tls"
    # A Full(0) record of nothing (a placeholder digest) is no certificate or key: unusable.
    usable = [
        t for t in host.tlsa if t.usage in (2, 3) and not (t.mtype == 0 and t.binds is TlsaBinds.MISMATCH)
    ]
    if not usable:
        return "unusable"
    return "valid" if any(_authenticates(t, CertKind(smtp["cert"])) for t in usable) else "mismatch"


def _authenticates(t: Tlsa, cert: CertKind) -> bool:
    """Whether a usable record authenticates the chain a host of ``cert`` presents (RFC 7672 §3.1)."""
    if t.binds is TlsaBinds.MISMATCH:
        return False
    if t.usage == 3:  # DANE-EE: the leaf alone; name and dates ignored (§3.1.1)
        return t.binds is TlsaBinds.EE
    # DANE-TA: an anchor above the leaf; the leaf's name and every date below the anchor checked.
    if t.binds is TlsaBinds.EE or cert in (CertKind.SELF_SIGNED, CertKind.EXPIRED, CertKind.NOT_YET_VALID):
        return False
    if cert is CertKind.WRONG_NAME:
        return False
    if cert is CertKind.MISSING_INTERMEDIATE:
        # Only the leaf is sent: only the issuing CA given in full can anchor it.
        return t.binds is TlsaBinds.TA and t.mtype == 0
    # The issuing CA is sent (any matching type); the root is not (only in full, RFC 7671 §5.2.2).
    return t.binds is TlsaBinds.TA or t.mtype == 0


def _host_starttls(smtp: dict[str, Any]) -> bool | None:
    return {"yes": True, "no": False}.get(smtp["starttls"])


def _host_dane(dane: str) -> bool | None:
    return None if dane == "undetermined" else dane == "valid"


def _roll(values: list[bool | None]) -> str:
    """probes/transport.py Coverage3 over per-host tri-states."""
    if not values:
        return "not-applicable"
    yes = sum(v is True for v in values)
    if None not in values:
        return "all" if yes == len(values) else "some" if yes else "none"
    return "some" if yes else "unknown"


def _policy_mx(body: bytes) -> list[str]:
    lines = body.decode("utf-8", "replace").splitlines()
    return [line.split(":", 1)[1].strip().lower() for line in lines if line.startswith("mx:")]


def _covers(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1: exact, or "*." standing for exactly one leftmost label."""
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


#: Failure reasons about the TXT record, not the policy: the policy itself is still usable.
_TXT_REASONS = frozenset({"multiple-txt"})


def _policy_usable(p: MtaStsPolicy) -> bool:
    """Fetched over a valid certificate, 200 text/plain, valid by RFC 8461 §3.2-3.3."""
    return p.valid or (bool(p.reasons) and set(p.reasons) <= _TXT_REASONS)


def _policy_mode(p: MtaStsPolicy) -> str | None:
    for line in p.body.decode("utf-8", "replace").splitlines():
        if line.startswith("mode:"):
            return line.split(":", 1)[1].strip()
    return None


def _as_fetched(d: Domain, policy: ScanPolicy) -> Domain:
    """The domain with its policy as a fetch under ``policy`` obtains it: a body that
    trickles past the fetch's deadlines is no policy (a timeout in the body phase)."""
    p = d.policy
    if p is None or p.http is not PolicyHttp.SLOW_BODY or _fetch(p, policy)["status"] == "success":
        return d
    return replace(d, policy=replace(p, mode=None, valid=False, reasons=("timeout-body",)))


def _fetch(p: MtaStsPolicy, policy: ScanPolicy) -> dict[str, Any]:
    """The policy fetch where the world's timing decides it (silent and slow hosts)."""
    retried = {"timeout": True, "max_attempts": 1 + policy.fetch_retries}
    if p.http is PolicyHttp.SILENT:  # TCP up, no TLS handshake: probes/mtasts/fetch.py's tls timeout
        return {"status": "tls-handshake-error", "phase": "tls", **retried}
    if p.http is PolicyHttp.SLOW_BODY:
        if p.body_seconds >= min(policy.fetch_body, policy.fetch_total):
            return {"status": "io-timeout", "phase": "body", **retried}
        return {"status": "success", "phase": "body", "timeout": False, "max_attempts": 1}
    return {}


def _mta_sts(
    d: Domain, txt: list[str], mx_hosts: list[dict[str, Any]], policy: ScanPolicy = DEFAULT_POLICY
) -> dict[str, Any] | None:
    if not txt:
        return None
    records = [t for t in txt if t.startswith("v=STSv1")]
    p = d.policy
    txt_valid = len(records) == 1
    if p is None:
        return {"txt_valid": txt_valid, "http": None, "mode": None, "valid": False, "reasons": ["no-policy"]}
    mode = p.mode if txt_valid and _policy_usable(p) else None
    return {
        "txt_valid": txt_valid,
        "http": p.http.value,
        "mode": mode,
        "valid": p.valid,
        "reasons": list(p.reasons),
        "mx_covered": p.mx_covered,
        # RFC 8461 §5: in enforce mode, mail goes only to MX hosts with valid PKIX certificates.
        "would_bounce": mode == "enforce" and not any(h["smtp"]["pkix_valid"] for h in mx_hosts),
        "fetch": _fetch(p, policy) or None,
    }


def _findings(
    d: Domain,
    present: bool,
    txt: list[str],
    mx_hosts: list[dict[str, Any]],
    tlsrpt_valid: bool,
    dane_published: bool,
) -> list[str]:
    """probes/mtasts/records.py Finding values, by the rules of probes/mtasts/assess.py (RFC 8461)."""
    if not present:
        return []  # TXT lookups fail (resolver faults): nothing is definite
    record_valid = len([t for t in txt if t.startswith("v=STSv1")]) == 1
    p = d.policy
    usable = p is not None and _policy_usable(p)
    found: set[str] = set()
    mode = _policy_mode(p) if p is not None and usable else None
    if mode in ("enforce", "testing") and p is not None and mx_hosts:
        patterns = _policy_mx(p.body)
        covered = {h["host"]: any(_covers(pat, h["host"]) for pat in patterns) for h in mx_hosts}
        if not all(covered.values()):
            found.add("mx-not-covered")
        if any(not any(_covers(pat, h) for h in covered) for pat in patterns):
            found.add("stale-mx-pattern")
        if record_valid:
            pkix = [h["smtp"]["pkix_valid"] for h in mx_hosts if covered[h["host"]]]
            if not any(v is True for v in pkix) and None not in pkix:
                found.add("enforce-would-fail" if mode == "enforce" else "testing-would-fail")
            for h in mx_hosts:
                accepts = covered[h["host"]] and h["smtp"]["pkix_valid"] is True
                refuses = not covered[h["host"]] or h["smtp"]["pkix_valid"] is False
                dane = h["smtp"]["dane"]
                if (dane == "valid" and refuses) or (dane in ("mismatch", "bogus") and accepts):
                    found.add("dane-mta-sts-disagree")
    if record_valid and not usable:
        found.add("txt-without-policy")
    if usable and not record_valid:
        found.add("policy-without-txt")
    if tlsrpt_valid and not record_valid and not dane_published:
        found.add("tlsrpt-without-mta-sts-or-dane")
    return sorted(found)


def _tlsrpt_valid(txt: list[str]) -> bool:
    """RFC 8460 §3: exactly one record starting v=TLSRPTv1 whose rua URIs are mailto: or https:."""
    records = [t for t in txt if t.startswith("v=TLSRPTv1")]
    if len(records) != 1:
        return False
    fields = dict(f.strip().partition("=")[::2] for f in records[0].split(";") if "=" in f)
    rua = [u.strip() for u in fields.get("rua", "").split(",") if u.strip()]
    return bool(rua) and all(u.startswith(("mailto:", "https:")) for u in rua)


def _reverse_name(address: str) -> str:
    """in-addr.arpa (RFC 1035 §3.5) / ip6.arpa (RFC 3596 §2.5) owner name, no trailing dot."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return ".".join(reversed(str(ip).split("."))) + ".in-addr.arpa"
    return ".".join(reversed(ip.exploded.replace(":", ""))) + ".ip6.arpa"


class ReverseDns:
    """The world's PTR records and the forward data their names lead to, as a validating
    resolver answers them (the expectation of ``probes/dns/reverse.py``'s FCrDNS)."""

    def __init__(self, world: World) -> None:
        self.ptr: dict[str, list[str]] = {}
        self.forward: dict[str, list[str]] = {}
        records = [r for z in world.zones for r in z.records] + [r for d in world.domains for r in d.extra]
        for name, rtype, rdata in records:
            if rtype == "PTR":
                self.ptr.setdefault(name.lower(), []).append(rdata.lower().removesuffix("."))
            elif rtype in ("A", "AAAA"):
                self.forward.setdefault(name.lower(), []).append(str(ipaddress.ip_address(rdata)))
        self.hosts = {h.name: h for h in world.hosts if h.ipv4 or h.ipv6}
        self.zones = {z.apex: z.status for z in world.zones}
        self.faulty = tuple(d.name for d in world.domains if d.fault is not None)

    def _forward_fails(self, name: str) -> bool:
        """The A/AAAA lookup of ``name`` fails: a resolver fault covers it, or its zone is
        bogus (SERVFAIL, RFC 4035 §5.5)."""
        if any(name == f or name.endswith(f".{f}") for f in self.faulty):
            return True
        host = self.hosts.get(name)
        status = host.dnssec if host is not None else _zone_status(name, self.zones)
        return status is ZoneStatus.BOGUS

    def expectation(self, address: str) -> dict[str, Any]:
        """``fcrdns`` and ``names`` for one address."""
        names = list(dict.fromkeys(self.ptr.get(_reverse_name(address), ())))
        if not names:
            return {"fcrdns": "no-ptr", "names": []}
        ip = ipaddress.ip_address(address)
        failed = False
        for name in names[:4]:  # probes/dns/reverse.py MAX_FORWARD
            if self._forward_fails(name):
                failed = True
                continue
            host = self.hosts.get(name)
            found = [*(host.addresses() if host else ()), *self.forward.get(name, ())]
            if any(ipaddress.ip_address(a) == ip for a in found):
                return {"fcrdns": "confirmed", "names": names}
        return {"fcrdns": "unknown" if failed else "mismatch", "names": names}

    def annotate(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` (``domain_truth``) with ``ptr`` on every address of every MX host."""
        for host in row["mx_hosts"]:
            for address in host["addresses"]:
                address["ptr"] = self.expectation(address["address"])
        return row
