"""From a resolver's reply to a typed ``Answer``: pure, no I/O.

The rules, in order:

* No reply: ``failure == "timeout"`` is a timeout, any other failure an error.
* RCODE decides the outcome: NOERROR → ok or nodata, NXDOMAIN → nxdomain,
  SERVFAIL → servfail, REFUSED → refused, anything else → error.
* The answer section is read as a record chain: from the asked name, follow
  CNAMEs (RFC 1034 §3.6.2) to the final name -- at most 16 links, a loop is
  an error -- and take the records of the asked type owned by that final
  name only.  Records for other owners are ignored (RFC 2181 §5.4.1: data
  the question did not lead to is not trusted).
* DNSSEC (RFC 4035 §3.2.3, RFC 6840 §5.7): a resolver that failed pre-flight
  says nothing, so ``unknown``.  A definite answer (ok, nodata, nxdomain) is
  ``secure`` with AD and ``insecure`` without.  A SERVFAIL whose CD=1 retry
  got NOERROR or NXDOMAIN failed validation: ``bogus`` (the outcome stays
  servfail and the EDE of the first reply are kept, RFC 8914 §3.7).
  Everything else is ``indeterminate``.
"""

from __future__ import annotations

from typing import cast

from engine.peertext import bound_text
from probes.dns.message import (
    RCODE,
    Message,
    MxData,
    RData,
    Record,
    RRType,
    SoaData,
    TlsaData,
    WireError,
    rcode_name,
    rrtype_code,
)
from probes.dns.records import Answer, Dnssec, Ede, Outcome

__all__ = ["MAX_CNAME_CHAIN", "classify", "format_rdata"]

#: Longest CNAME chain followed inside one reply (unbound stops at 11,
#: BIND at 16): longer is treated as an error, like a loop.
MAX_CNAME_CHAIN = 16
#: Cap on the failure text carried in ``Answer.detail``.
_DETAIL_LIMIT = 200

_OUTCOME_BY_RCODE = {
    RCODE.NXDOMAIN: Outcome.NXDOMAIN,
    RCODE.SERVFAIL: Outcome.SERVFAIL,
    RCODE.REFUSED: Outcome.REFUSED,
}
_DEFINITE = frozenset({Outcome.OK, Outcome.NODATA, Outcome.NXDOMAIN})


def classify(
    name: str,
    rrtype: str,
    reply: Message | None,
    *,
    failure: str = "",
    validating: bool,
    cd_reply: Message | None = None,
) -> Answer:
    """The ``Answer`` for (name, rrtype) given the reply (or why there is none)."""
    asked = "." if name in (".", "") else name.lower().removesuffix(".")
    rrtype = rrtype.upper()
    if reply is None:
        outcome = Outcome.TIMEOUT if failure == "timeout" else Outcome.ERROR
        dnssec = Dnssec.INDETERMINATE if validating else Dnssec.UNKNOWN
        detail = bound_text(failure or "no reply", _DETAIL_LIMIT)
        return Answer(asked, rrtype, outcome, dnssec, False, None, (), (), "", (), detail)

    chain: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    ttl: int | None = None
    detail = ""
    if reply.rcode == RCODE.NOERROR:
        chain, final, detail = _follow_cnames(asked, rrtype, reply.answers)
        if detail:
            outcome = Outcome.ERROR
        else:
            code = _type_code(rrtype)
            rrset = [r for r in reply.answers if r.rrtype == code and r.name == final]
            if rrset:
                outcome = Outcome.OK
                data = tuple(format_rdata(r.data) for r in rrset)
                ttl = min(r.ttl for r in rrset)
            else:
                outcome = Outcome.NODATA
    else:
        outcome = _OUTCOME_BY_RCODE.get(reply.rcode, Outcome.ERROR)  # type: ignore[call-overload]
        if outcome is Outcome.NXDOMAIN:
            # RFC 6604 §2.1: the RCODE describes the last name of the chain.
            chain, _, _ = _follow_cnames(asked, rrtype, reply.answers)
        elif outcome is Outcome.ERROR:
            detail = f"rcode {rcode_name(reply.rcode)}"

    ede = tuple(Ede(code, text) for code, text in reply.ede)
    return Answer(
        asked,
        rrtype,
        outcome,
        _dnssec(outcome, reply, cd_reply, validating=validating),
        reply.ad,
        ttl,
        chain,
        data,
        rcode_name(reply.rcode),
        ede,
        detail,
    )


def _dnssec(outcome: Outcome, reply: Message, cd_reply: Message | None, *, validating: bool) -> Dnssec:
    if not validating:
        return Dnssec.UNKNOWN
    if outcome in _DEFINITE:
        return Dnssec.SECURE if reply.ad else Dnssec.INSECURE
    if (
        outcome is Outcome.SERVFAIL
        and cd_reply is not None
        and cd_reply.rcode in (RCODE.NOERROR, RCODE.NXDOMAIN)
    ):
        return Dnssec.BOGUS
    return Dnssec.INDETERMINATE


def _type_code(rrtype: str) -> int:
    try:
        return rrtype_code(rrtype)
    except WireError:
        return -1  # an unknown mnemonic matches no record


def _follow_cnames(asked: str, rrtype: str, answers: tuple[Record, ...]) -> tuple[tuple[str, ...], str, str]:
    """(chain of targets, final name, error detail or "")."""
    if rrtype == "CNAME":
        return (), asked, ""
    cnames: dict[str, str] = {}
    for record in answers:
        if record.rrtype == RRType.CNAME and isinstance(record.data, str):
            cnames.setdefault(record.name, record.data)
    chain: list[str] = []
    seen = {asked}
    current = asked
    while current in cnames:
        current = cnames[current]
        if current in seen:
            return tuple(chain), current, "cname-loop"
        if len(chain) == MAX_CNAME_CHAIN:
            return tuple(chain), current, "cname-chain-too-long"
        seen.add(current)
        chain.append(current)
    return tuple(chain), current, ""


def format_rdata(data: RData) -> str:
    """The plain text ``Answer.data`` holds for one record."""
    if isinstance(data, str):
        return data
    if isinstance(data, MxData):
        return f"{data.preference} {data.exchange}"
    if isinstance(data, TlsaData):
        return f"{data.usage} {data.selector} {data.mtype} {data.association.hex()}"
    if isinstance(data, SoaData):
        return " ".join(str(v) for v in data)
    if isinstance(data, tuple):
        # RFC 7208 §3.3 / RFC 8461 §3.1: a TXT record's strings are joined without spaces.
        return b"".join(cast(tuple[bytes, ...], data)).decode("utf-8", errors="backslashreplace")
    return data.hex()
