"""Egress pre-flight: can this machine open outbound connections to port 25, per address family?

Many clouds block outbound port 25 (and some have no IPv6 route); a scan from such a host
records every MX as ``connection-timeout`` and publishes nonsense.  Before SMTP starts the
scan connects to a few well-known MX hosts (or the targets given) over IPv4 and IPv6 at once.

Connect only, then close: no byte is sent or read.  The question is whether a TCP handshake
to port 25 completes from here; a banner adds nothing to that answer, would add the
receiver's greeting delay (postscreen-style greet pauses last seconds) to the pre-flight's
deadline, and an SMTP conversation with the providers' servers is not ours to have.

Pure core: ``classify_error`` (one ordered table from OS errors to an ``Attempt``),
``assess`` (the verdict per family) and ``decide`` (stop, continue IPv4-only, continue).
Thin shell: ``connect_once`` / ``check_egress``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from engine.peertext import bound_text, exception_text
from probes.dns.probe import Lookup
from probes.dns.records import Outcome

__all__ = [
    "Attempt",
    "EgressAttempt",
    "EgressCheck",
    "EgressDecision",
    "EgressTarget",
    "EgressVerdict",
    "Reach",
    "assess",
    "check_egress",
    "classify_error",
    "connect_once",
    "decide",
    "parse_target",
    "resolve_targets",
    "run_egress_check",
    "skipped",
]

#: Egress pre-flight targets: the inbound MX hosts of the largest mailbox providers (Gmail,
#: Outlook.com, iCloud, Yahoo), which accept connections on port 25 from anywhere, each
#: resolved through the scan's resolver (first A and first AAAA).  One of them answering is
#: enough to show that outbound port 25 works for that family.
EGRESS_CHECK_HOSTS = (
    "gmail-smtp-in.l.google.com",
    "outlook-com.olc.protection.outlook.com",
    "mx01.mail.icloud.com",
    "mta5.am0.yahoodns.net",
)

#: Seconds each pre-flight connection may take (all run at once).  A working path completes
#: a TCP handshake in well under a second from anywhere; a blocked port never answers.
EGRESS_TIMEOUT = 4.0


class Attempt(StrEnum):
    """How far one outbound connection got."""

    #: The TCP handshake completed: outbound connections to this port work.
    CONNECTED = "connected"
    #: RST: nothing listens there, or a firewall on the way rejects.
    REFUSED = "refused"
    #: No answer within the deadline: the port is filtered (a cloud's port-25 block looks so).
    TIMEOUT = "timeout"
    #: The OS has no route or no source address for the family (no IPv6 connectivity).
    UNREACHABLE = "unreachable"
    #: The target name had no address of the family, or its lookup failed: nothing attempted.
    UNRESOLVED = "unresolved"
    #: Any other OS error (detail names it).
    ERROR = "error"


class Reach(StrEnum):
    """The verdict for one address family."""

    #: At least one connection completed.
    REACHABLE = "reachable"
    #: Connections were attempted and none completed.
    BLOCKED = "blocked"
    #: No target of the family had an address: nothing was attempted.
    UNTESTED = "untested"


@dataclass(frozen=True, slots=True)
class EgressTarget:
    """One address to try: the name it came from (or the literal), the address and port."""

    host: str
    address: str
    port: int


@dataclass(frozen=True, slots=True)
class EgressAttempt:
    """One pre-flight connection.

    Fields:
      host: the target as given (a name, or the address itself).
      address: the address connected to ("" when the name did not resolve).
      port: the port.
      family: "ipv4" or "ipv6".
      outcome: connected / refused / timeout / unreachable / unresolved / error.
      local_address: this machine's address on the connection (getsockname), "" unless connected.
      detail: the OS error or lookup failure, bounded; "" when connected.
    """

    host: str
    address: str
    port: int
    family: str
    outcome: Attempt
    local_address: str
    detail: str


@dataclass(frozen=True, slots=True)
class EgressVerdict:
    """The egress pre-flight's verdicts: what a domain line needs to stand alone.

    Repeated on every domain line (``scan.egress``), so it holds no attempt: the attempts are
    written once per run (the run line and --summary-json; see ``EgressCheck``).

    Fields:
      skipped: --skip-egress-check: nothing was tried (every verdict "untested").
      ipv4: outbound port 25 over IPv4: reachable / blocked / untested.
      ipv6: outbound port 25 over IPv6: reachable / blocked / untested.
      ipv4_only: IPv6 was blocked while IPv4 worked: the scan probed IPv4 addresses only
        (--no-ipv6 implied).
    """

    skipped: bool
    ipv4: Reach
    ipv6: Reach
    ipv4_only: bool


@dataclass(frozen=True, slots=True)
class EgressCheck:
    """What the egress pre-flight showed, every attempt included.

    Fields:
      skipped: --skip-egress-check: nothing was tried (every verdict "untested").
      ipv4: reachable / blocked / untested.
      ipv6: reachable / blocked / untested.
      ipv4_only: IPv6 was blocked while IPv4 worked: the scan probed IPv4 addresses only
        (--no-ipv6 implied).
      attempts: every connection tried (and every target that did not resolve), in order.
    """

    skipped: bool
    ipv4: Reach
    ipv6: Reach
    ipv4_only: bool
    attempts: tuple[EgressAttempt, ...]

    def verdict(self) -> EgressVerdict:
        """The verdicts without the attempts (what every domain line carries)."""
        return EgressVerdict(self.skipped, self.ipv4, self.ipv6, self.ipv4_only)


@dataclass(frozen=True, slots=True)
class EgressDecision:
    """What the scan does after the pre-flight: ``proceed`` or stop (exit 2), with IPv6 or
    not, and what to say (empty when nothing needs saying)."""

    proceed: bool
    ipv6: bool
    message: str


def family_of(address: str) -> str:
    return "ipv6" if ":" in address else "ipv4"


def parse_target(text: str, default_port: int = 25) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``ADDRESS``, ``[IPV6]`` or ``[IPV6]:PORT`` -> (host, port);
    ValueError in the option's words for anything else."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"--egress-check: {text!r} is not HOST[:PORT] or [IPV6][:PORT]")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif text.count(":") > 1:
        host = text  # a bare IPv6 address: the port is the default
    if text.startswith("[") or text.count(":") > 1:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"--egress-check: {host!r} is not an IPv6 address") from None
    if not host:
        raise ValueError(f"--egress-check: {text!r} has no host")
    if port_text == "":
        return host.lower().rstrip("."), default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"--egress-check: the port of {text!r} must be 1-65535")
    return host.lower().rstrip("."), int(port_text)


#: errno -> outcome, in order of the questions they answer (RFC 1122 §4.2.3.10 aside, a
#: filtered port never answers; a refusing one answers RST; no route is the OS's own verdict).
_UNREACHABLE = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.ENETDOWN}
)
#: Characters of an attempt's detail (an OS error text).
_DETAIL_LIMIT = 200


def classify_error(exc: BaseException) -> tuple[Attempt, str]:
    """One failed connect as (outcome, detail)."""
    if isinstance(exc, TimeoutError):
        return Attempt.TIMEOUT, "no answer within the deadline"
    if isinstance(exc, ConnectionRefusedError):
        return Attempt.REFUSED, "connection refused"
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return Attempt.UNREACHABLE, f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else type(exc).__name__
        return Attempt.ERROR, bound_text(f"{name}: {exc.strerror or exc}", _DETAIL_LIMIT)
    return Attempt.ERROR, exception_text(exc, _DETAIL_LIMIT)


def _reach(attempts: Iterable[EgressAttempt], family: str) -> Reach:
    tried = [a for a in attempts if a.family == family and a.outcome is not Attempt.UNRESOLVED]
    if not tried:
        return Reach.UNTESTED
    return Reach.REACHABLE if any(a.outcome is Attempt.CONNECTED for a in tried) else Reach.BLOCKED


def assess(attempts: Sequence[EgressAttempt], *, ipv6_wanted: bool = True) -> EgressCheck:
    """The verdict per family; ``ipv4_only`` when IPv6 was wanted, blocked, and IPv4 works."""
    ipv4, ipv6 = _reach(attempts, "ipv4"), _reach(attempts, "ipv6")
    ipv4_only = ipv6_wanted and ipv4 is Reach.REACHABLE and ipv6 is Reach.BLOCKED
    return EgressCheck(False, ipv4, ipv6, ipv4_only, tuple(attempts))


def skipped() -> EgressCheck:
    return EgressCheck(True, Reach.UNTESTED, Reach.UNTESTED, False, ())


def _cause(attempts: Sequence[EgressAttempt], family: str) -> str:
    outcomes = {a.outcome for a in attempts if a.family == family and a.outcome is not Attempt.UNRESOLVED}
    if outcomes == {Attempt.TIMEOUT}:
        return (
            "every connection timed out: outbound port 25 is most likely blocked by the hosting "
            "provider or cloud (many block it by default; ask them to lift it) or by a firewall"
        )
    if outcomes == {Attempt.UNREACHABLE}:
        return "the OS has no route for it (no connectivity of this family on this host)"
    if Attempt.REFUSED in outcomes:
        return "connections were refused: a firewall rejecting outbound port 25, or no server at the targets"
    return "no connection completed: outbound port 25 is likely blocked (provider, cloud or firewall)"


def _listing(attempts: Sequence[EgressAttempt], family: str) -> str:
    return ", ".join(
        f"{a.host}" + (f" ({a.address}:{a.port})" if a.address else "") + f" {a.outcome.value}"
        for a in attempts
        if a.family == family
    )


def decide(check: EgressCheck, *, ipv6_wanted: bool) -> EgressDecision:
    """Stop (exit 2) when IPv4 is blocked, or IPv6 is and IPv4 was not tested: every probe
    would time out and the results would say the MX hosts are unreachable.  IPv6 blocked
    while IPv4 works: continue IPv4-only and say so."""
    if check.skipped:
        return EgressDecision(True, ipv6_wanted, "")
    at = check.attempts
    if check.ipv4 is Reach.BLOCKED or (check.ipv4 is Reach.UNTESTED and check.ipv6 is Reach.BLOCKED):
        family = "ipv4" if check.ipv4 is Reach.BLOCKED else "ipv6"
        return EgressDecision(
            False,
            ipv6_wanted,
            f"egress pre-flight: no outbound connection to port 25 over {family.replace('ip', 'IP')} "
            f"completed ({_listing(at, family)}); {_cause(at, family)}. Not scanning: every MX would be "
            "recorded as unreachable. Use --egress-check HOST[:PORT] to test other targets, or "
            "--skip-egress-check if you know outbound port 25 works.",
        )
    if check.ipv4_only:
        return EgressDecision(
            True,
            False,
            f"WARNING: egress pre-flight: IPv6 connections to port 25 fail ({_listing(at, 'ipv6')}; "
            f"{_cause(at, 'ipv6')}); scanning IPv4 only (--no-ipv6 implied, recorded in every "
            "record's scan.egress)",
        )
    if check.ipv4 is Reach.UNTESTED and check.ipv6 is Reach.UNTESTED:
        return EgressDecision(
            True,
            ipv6_wanted,
            "WARNING: egress pre-flight: no check target resolved to an address, so outbound port 25 "
            "is untested; give --egress-check HOST[:PORT]",
        )
    return EgressDecision(True, ipv6_wanted, "")


async def connect_once(target: EgressTarget, deadline: float) -> EgressAttempt:
    """One TCP connect with a deadline, closed at once; never raises for network errors."""
    family = family_of(target.address)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(deadline):
            transport, _ = await loop.create_connection(asyncio.Protocol, target.address, target.port)
    except (OSError, TimeoutError) as exc:
        outcome, detail = classify_error(exc)
        return EgressAttempt(target.host, target.address, target.port, family, outcome, "", detail)
    local = transport.get_extra_info("sockname")
    transport.close()
    local_address = str(local[0]) if local else ""
    return EgressAttempt(
        target.host, target.address, target.port, family, Attempt.CONNECTED, local_address, ""
    )


async def check_egress(targets: Sequence[EgressTarget], deadline: float) -> tuple[EgressAttempt, ...]:
    """Every target at once, each within ``deadline`` seconds; results in target order."""
    return tuple(await asyncio.gather(*(connect_once(t, deadline) for t in targets)))


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


async def resolve_targets(
    specs: Sequence[tuple[str, int]], lookup: Lookup
) -> tuple[list[EgressTarget], list[EgressAttempt]]:
    """The addresses to try: a literal as given; a name's first A and first AAAA address
    (through the scan's own resolver, as the MX hosts will be).  A family a name has no
    address for is an ``unresolved`` attempt (it tests nothing)."""
    targets: list[EgressTarget] = []
    unresolved: list[EgressAttempt] = []
    names = [(host, port) for host, port in specs if _literal(host) is None]
    answers = await asyncio.gather(*(lookup(host, rrtype) for host, _ in names for rrtype in ("A", "AAAA")))
    by_name = {
        (host, rrtype): answers[2 * i + j]
        for i, (host, _) in enumerate(names)
        for j, rrtype in enumerate(("A", "AAAA"))
    }
    for host, port in specs:
        literal = _literal(host)
        if literal is not None:
            targets.append(EgressTarget(host, literal, port))
            continue
        for rrtype, family in (("A", "ipv4"), ("AAAA", "ipv6")):
            answer = by_name[(host, rrtype)]
            if answer.outcome is Outcome.OK and answer.data:
                targets.append(EgressTarget(host, answer.data[0], port))
            else:
                detail = f"{rrtype} lookup {answer.outcome.value}"
                unresolved.append(EgressAttempt(host, "", port, family, Attempt.UNRESOLVED, "", detail))
    return targets, unresolved


async def run_egress_check(
    specs: Sequence[tuple[str, int]], lookup: Lookup, deadline: float, *, ipv6_wanted: bool
) -> EgressCheck:
    """Resolve the targets, connect to every address at once, and assess.  Without IPv6
    wanted (--no-ipv6) the IPv6 addresses are not tried (``ipv6`` is then "untested")."""
    targets, unresolved = await resolve_targets(specs, lookup)
    if not ipv6_wanted:
        targets = [t for t in targets if family_of(t.address) == "ipv4"]
        unresolved = [u for u in unresolved if u.family == "ipv4"]
    attempts = await check_egress(targets, deadline)
    return assess([*attempts, *unresolved], ipv6_wanted=ipv6_wanted)
