"""Is the resolver there, and does it validate DNSSEC?

Without this check AD means nothing: a non-validating resolver never sets it,
and an unreachable one makes every domain look broken.  The test is the one
RFC 6840 §5.7 implies: a signed name must come back with AD set, and a
deliberately broken (bogus) name must come back SERVFAIL.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from probes.dns.client import DnsClient, DnsError, DnsTimeout
from probes.dns.message import RCODE, Message, WireError, rcode_name, rrtype_code

__all__ = ["PreflightResult", "preflight"]


@dataclass(frozen=True, slots=True)
class PreflightResult:
    """What the resolver check found before the scan started.

    Fields:
      reachable: the resolver answered the signed-name query at all.
      validating: AD on the signed name and SERVFAIL on the bogus name: AD can be trusted.
      detail: a short explanation (why not reachable or not validating), "validating" otherwise.
      signed_ad: the reply for the signed name had the AD flag.
      bogus_servfail: the reply for the deliberately bogus name was SERVFAIL.
    """

    reachable: bool
    validating: bool
    detail: str
    signed_ad: bool
    bogus_servfail: bool


async def preflight(
    client: DnsClient,
    *,
    signed_name: str = ".",
    signed_type: str = "SOA",
    bogus_name: str = "dnssec-failed.org",
    timeout: float = 5.0,  # noqa: ASYNC109 - one budget for the whole check, applied inside
) -> PreflightResult:
    """Ask the signed and the bogus name (together) within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            signed, bogus = await asyncio.gather(
                _ask(client, signed_name, rrtype_code(signed_type)),
                _ask(client, bogus_name, rrtype_code("A")),
            )
    except TimeoutError:
        return PreflightResult(False, False, "timeout", False, False)
    except WireError as exc:
        return PreflightResult(False, False, f"invalid check name: {exc}", False, False)
    if isinstance(signed, str):
        return PreflightResult(False, False, signed, False, False)
    signed_ad = signed.ad and signed.rcode == RCODE.NOERROR
    bogus_servfail = isinstance(bogus, Message) and bogus.rcode == RCODE.SERVFAIL
    if signed_ad and bogus_servfail:
        detail = "validating"
    elif not signed_ad:
        detail = f"no AD on {signed_name} {signed_type} (rcode {rcode_name(signed.rcode)})"
    elif isinstance(bogus, str):
        detail = f"bogus name {bogus_name}: {bogus}"
    else:
        detail = f"bogus name {bogus_name} not rejected (rcode {rcode_name(bogus.rcode)})"
    return PreflightResult(True, signed_ad and bogus_servfail, detail, signed_ad, bogus_servfail)


async def _ask(client: DnsClient, name: str, rrtype: int) -> Message | str:
    """The reply, or a failure detail ("timeout", "connection-refused", ...)."""
    try:
        return await client.query(name, rrtype)
    except DnsTimeout:
        return "timeout"
    except DnsError as exc:
        return exc.detail
