"""One lookup, one ``Answer``: the stub resolver shell around the client.

It never raises for DNS-level problems: a timeout, a refused socket or an
invalid name all become an ``Answer`` with outcome timeout or error and a
detail that says why.
"""

from __future__ import annotations

from probes.dns.classify import classify
from probes.dns.client import DnsClient, DnsError, DnsTimeout
from probes.dns.message import RCODE, Message, WireError, rrtype_code
from probes.dns.records import Answer

__all__ = ["StubResolver"]


class StubResolver:
    """Looks names up through a (validating) recursive resolver.

    ``validating`` says whether the resolver's AD bit means anything; set it
    from ``preflight`` once that has run.
    """

    def __init__(self, client: DnsClient, *, validating: bool) -> None:
        self.client = client
        self.validating = validating

    async def lookup(self, name: str, rrtype: str) -> Answer:
        """Ask (name, rrtype); on SERVFAIL, and only then, ask again with CD=1.

        The CD=1 retry tells "signatures do not validate" (bogus) from "the
        zone is broken".  Never CD first: a validating resolver caches what a
        CD=1 query fetched unvalidated (RFC 4035 §4.7), which would taint the
        answers other lookups get.
        """
        try:
            code = rrtype_code(rrtype)
        except WireError:
            return classify(name, rrtype, None, failure="unknown-type", validating=self.validating)
        try:
            reply = await self.client.query(name, code)
        except WireError as exc:
            return classify(name, rrtype, None, failure=f"invalid-name: {exc}", validating=self.validating)
        except DnsTimeout:
            return classify(name, rrtype, None, failure="timeout", validating=self.validating)
        except DnsError as exc:
            return classify(name, rrtype, None, failure=exc.detail, validating=self.validating)
        cd_reply: Message | None = None
        if reply.rcode == RCODE.SERVFAIL and self.validating:
            try:
                cd_reply = await self.client.query(name, code, cd=True)
            except DnsError:
                cd_reply = None  # the CD retry is a diagnosis; its failure leaves "indeterminate"
        return classify(name, rrtype, reply, validating=self.validating, cd_reply=cd_reply)
