"""Is the resolver there, and does it validate DNSSEC?

Without this check AD means nothing: a non-validating resolver never sets it,
and an unreachable one makes every domain look broken.  The test is the one
RFC 6840 §5.7 implies: a signed name must come back with AD set, and a
deliberately broken (bogus) name must come back SERVFAIL.

Three verdicts (``ResolverCheck``), each needing evidence:

* ``validating``: AD on the signed name and SERVFAIL on the bogus name.
* ``not-validating``: no AD on the signed name (RFC 4035 §3.2.3: only a
  validating resolver sets it), or the bogus name answered NOERROR: the
  resolver handed out data whose signatures do not validate.
* ``inconclusive``: AD on the signed name, but the bogus name got no verdict:
  NXDOMAIN (the name does not exist in this resolver's view, e.g. behind a
  private root, so there is nothing bogus to reject), another RCODE, or no
  answer.  AD on the signed name is evidence of validation, so the scan reads
  AD as a validating resolver's; that bogus data is rejected was not shown.

The decision is ``judge`` (pure); ``preflight`` only asks the two questions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from probes.dns.client import DnsClient, DnsError, DnsTimeout
from probes.dns.message import RCODE, Message, WireError, rcode_name, rrtype_code
from probes.dns.records import ResolverCheck
from probes.dns.wire import encode_name

__all__ = ["PreflightResult", "judge", "preflight", "verdict_text"]

#: Pre-flight: a name that is signed (AD=1 from a validating resolver) and one
#: that is deliberately bogus (SERVFAIL from a validating resolver).  The root
#: SOA is signed everywhere; dnssec-failed.org is kept broken by Comcast for
#: exactly this kind of check.
PREFLIGHT_SIGNED_NAME = "."
PREFLIGHT_BOGUS_NAME = "dnssec-failed.org"

#: Deadline for the whole pre-flight, after which the resolver is "unreachable".
PREFLIGHT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class PreflightResult:
    """What the resolver check found before the scan started.

    Fields:
      reachable: the resolver answered the signed-name query at all.
      validating: the check proved validation (check is validating).
      detail: a short explanation (why not reachable, not validating or inconclusive),
        "validating" otherwise.
      signed_ad: the reply for the signed name had the AD flag.
      bogus_servfail: the reply for the deliberately bogus name was SERVFAIL.
      check: validating / inconclusive / not-validating (not-validating when unreachable).
    """

    reachable: bool
    validating: bool
    detail: str
    signed_ad: bool
    bogus_servfail: bool
    check: ResolverCheck

    @property
    def reads_ad(self) -> bool:
        """Whether the scan may read AD: validation proven, or shown by AD and not refuted."""
        return self.reachable and self.check is not ResolverCheck.NOT_VALIDATING


def _unreachable(detail: str) -> PreflightResult:
    return PreflightResult(False, False, detail, False, False, ResolverCheck.NOT_VALIDATING)


def judge(
    signed: Message | str, bogus: Message | str, *, signed_what: str, bogus_name: str
) -> PreflightResult:
    """The verdict from the two replies (a ``str`` is why there was no reply)."""
    if isinstance(signed, str):
        return _unreachable(signed)
    signed_ad = signed.ad and signed.rcode == RCODE.NOERROR
    bogus_rcode = bogus.rcode if isinstance(bogus, Message) else None
    bogus_servfail = bogus_rcode == RCODE.SERVFAIL
    if not signed_ad:
        check = ResolverCheck.NOT_VALIDATING
        detail = f"no AD on {signed_what} (rcode {rcode_name(signed.rcode)})"
    elif bogus_servfail:
        check, detail = ResolverCheck.VALIDATING, "validating"
    elif bogus_rcode == RCODE.NOERROR:
        check = ResolverCheck.NOT_VALIDATING
        detail = f"bogus name {bogus_name} not rejected (rcode NOERROR)"
    else:
        check = ResolverCheck.INCONCLUSIVE
        if bogus_rcode == RCODE.NXDOMAIN:
            why = "does not exist for this resolver (NXDOMAIN)"
        elif bogus_rcode is not None:
            why = f"got rcode {rcode_name(bogus_rcode)}"
        else:
            why = f"got no answer ({bogus})"
        detail = (
            f"AD on {signed_what}, but the bogus name {bogus_name} {why}: rejection of bogus data not shown"
        )
    return PreflightResult(True, check is ResolverCheck.VALIDATING, detail, signed_ad, bogus_servfail, check)


async def preflight(
    client: DnsClient,
    *,
    signed_name: str = ".",
    signed_type: str = "SOA",
    bogus_name: str = "dnssec-failed.org",
    timeout: float = 5.0,  # noqa: ASYNC109 - one budget per question, applied inside
) -> PreflightResult:
    """Ask the signed and the bogus name (together), each within ``timeout`` seconds."""
    try:
        code = rrtype_code(signed_type)
        encode_name(signed_name)
        encode_name(bogus_name)
    except WireError as exc:
        return _unreachable(f"invalid check name: {exc}")
    signed, bogus = await asyncio.gather(
        _ask(client, signed_name, code, timeout), _ask(client, bogus_name, rrtype_code("A"), timeout)
    )
    return judge(signed, bogus, signed_what=f"{signed_name} {signed_type}", bogus_name=bogus_name)


async def _ask(client: DnsClient, name: str, rrtype: int, timeout: float) -> Message | str:  # noqa: ASYNC109
    """The reply, or a failure detail ("timeout", "connection-refused", ...)."""
    try:
        async with asyncio.timeout(timeout):
            return await client.query(name, rrtype)
    except (DnsTimeout, TimeoutError):
        return "timeout"
    except DnsError as exc:
        return exc.detail


def verdict_text(
    check: PreflightResult, resolver: str, *, require_validation: bool
) -> tuple[bool, tuple[str, ...]]:
    """(whether the scan may start, what to say about the resolver: nothing when it validates).

    A resolver that does not answer stops the scan; one that does not validate, or whose
    validation is unproven, is said loudly; ``require_validation`` asks for proof, so an
    inconclusive check stops the scan like a failed one."""
    if not check.reachable:
        return False, (f"resolver {resolver} is not answering: {check.detail}",)
    if check.check is ResolverCheck.VALIDATING:
        return True, ()
    if check.check is ResolverCheck.INCONCLUSIVE:
        text = (
            f"WARNING: DNSSEC validation of resolver {resolver} is INCONCLUSIVE ({check.detail}); dnssec "
            "fields are recorded from its AD bit, but that it rejects bogus data is unproven. Give "
            "--preflight-bogus a name that is bogus for this resolver to settle it."
        )
    else:
        text = (
            f"WARNING: resolver {resolver} does not validate DNSSEC ({check.detail}); every dnssec "
            "field will be recorded as 'unknown', never as 'not signed'."
        )
    if require_validation:
        return False, (text, "--require-validation: not scanning without proof that the resolver validates")
    return True, (text,)
