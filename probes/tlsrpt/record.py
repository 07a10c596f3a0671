"""The ``_smtp._tls.<domain>`` TXT record, assessed strictly by RFC 8460 §3.

Theory of operation
-------------------
RFC 8460 §3 (literals case-sensitive, RFC 7405)::

    tlsrpt-record    = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
    field-delim      = *WSP ";" *WSP
    tlsrpt-field     = tlsrpt-rua / tlsrpt-extension   ; tlsrpt-rua is required
    tlsrpt-version   = %s"v=TLSRPTv1"
    tlsrpt-rua       = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
    tlsrpt-uri       = URI   ; RFC 3986; commas, exclamation points and
                             ; semicolons MUST be encoded
    tlsrpt-extension = tlsrpt-ext-name "=" tlsrpt-ext-value
    tlsrpt-ext-name  = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
    tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)

§3: records not beginning with "v=TLSRPTv1;" are discarded; if the number
left is not one, the domain does not implement TLS-RPT.  §3 defines two rua
schemes, "mailto" (RFC 6068: an addr-spec is needed to send a report) and
"https" (a host is needed to POST one).

``assess_tlsrpt_txt`` never raises; ``valid`` is true exactly when
``reasons`` is empty.  ``assess_tlsrpt_answer`` judges the DNS answer: a
lookup that failed (SERVFAIL, REFUSED, timeout, error) leaves the record
unknown (``present`` and ``valid`` null, reason ``lookup-failed:<outcome>``),
never "no record".

Sample: ``v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/v1``
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from probes.dns.records import Answer, Outcome
from probes.mtasts.record import (
    bound_reasons,
    is_candidate,
    is_extension,
    lookup_failure,
    near_misses,
    reason_code,
    reason_detail,
    record_fields,
)

__all__ = ["SUPPORTED_SCHEMES", "TlsRptRecord", "assess_tlsrpt_answer", "assess_tlsrpt_txt", "rua_problem"]

#: RFC 8460 §3: the version field, case-sensitive.
VERSION = "v=TLSRPTv1"
#: RFC 8460 §3: the two rua schemes a reporter knows how to use.
SUPPORTED_SCHEMES = ("mailto", "https")

_URI_SEP = re.compile(r"[ \t]*,[ \t]*")
# RFC 3986 characters (unreserved, gen-delims, sub-delims, pct-encoded) less
# "," "!" ";" which RFC 8460 §3 requires percent-encoded.
_URI = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@$&'()*+=]|%[0-9A-Fa-f]{2})+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# RFC 5322 §3.2.3 atext, widened to non-ASCII by RFC 6532 §3.2.
_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]+"
_DOT_ATOM = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"')
_DOMAIN_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]*\]")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class TlsRptRecord:
    """What the ``_smtp._tls`` TXT records say, judged by RFC 8460 §3.

    Fields:
      present: at least one TXT record begins with "v=TLSRPTv1" (not followed by a letter or digit).
        Null when the TXT lookup failed (unknown).
      valid: exactly one such record, fitting the §3 ABNF, with at least one usable rua URI; true exactly
        when reasons is empty; null when the TXT lookup failed (unknown).
      rua: every rua URI as written, in order (from the first rua field), valid or not.
      reasons: why the record is not valid, each "code" or "code:detail": lookup-failed:<outcome> (the
        TXT lookup failed: servfail, refused, timeout or error; the record is unknown), no-tlsrpt-record,
        multiple-tlsrpt-records, missing-rua, empty-rua-uri, invalid-rua-uri:<uri>,
        unsupported-rua-scheme:<scheme> (when no URI is usable), bad-syntax, trailing-whitespace,
        version-not-first, version-wrong-case; repeats dropped, past 32 the rest counted as
        more-problems:<n>.
      warnings: departures that leave the record usable: unsupported-rua-scheme:<scheme> beside a
        usable URI (reporters skip it), duplicate-rua (the first rua field counts).
      extensions: unknown fields as written, "name=value", in order (ignored by reporters).
    """

    present: bool | None
    valid: bool | None
    rua: tuple[str, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    extensions: tuple[str, ...]


def assess_tlsrpt_answer(answer: Answer) -> TlsRptRecord:
    """Judge the ``_smtp._tls.<domain>`` TXT lookup: its records, no record (NXDOMAIN,
    NODATA), or unknown when the lookup failed."""
    failure = lookup_failure(answer)
    if failure is not None:
        return TlsRptRecord(None, None, (), (failure,), (), ())
    return assess_tlsrpt_txt(answer.data if answer.outcome is Outcome.OK else ())


def assess_tlsrpt_txt(txt_records: Sequence[str]) -> TlsRptRecord:
    """Judge the TXT records found at ``_smtp._tls.<domain>`` (RFC 8460 §3)."""
    # As for MTA-STS: the prose says "v=TLSRPTv1;", the ABNF allows WSP before the ";",
    # and a complete version token followed by anything else is a malformed attempt.
    candidates = [txt for txt in txt_records if is_candidate(txt, VERSION)]
    if not candidates:
        return TlsRptRecord(
            False, False, (), ("no-tlsrpt-record", *near_misses(txt_records, VERSION)), (), ()
        )
    if len(candidates) > 1:
        return TlsRptRecord(True, False, (), (f"multiple-tlsrpt-records:{len(candidates)}",), (), ())
    return _assess_one(candidates[0])


def _assess_one(txt: str) -> TlsRptRecord:
    warnings: list[str] = []
    extensions: list[str] = []
    rua: list[str] | None = None
    fields, reasons = record_fields(txt, VERSION)
    for field in fields:
        if field.startswith("rua="):
            if rua is None:
                rua = _URI_SEP.split(field[4:])
            else:
                warnings.append("duplicate-rua")
            continue
        if is_extension(field):
            extensions.append(field)  # §3: unknown fields SHALL be ignored
        else:
            reasons.append(f"bad-syntax:{reason_detail(field) or 'empty-field'}")
    if rua is None:
        reasons.append("missing-rua")
    else:
        _judge_rua(rua, reasons, warnings)
    return TlsRptRecord(
        True,
        not reasons,
        tuple(rua or ()),
        bound_reasons(reasons),
        bound_reasons(warnings),
        tuple(extensions),
    )


def _judge_rua(rua: list[str], reasons: list[str], warnings: list[str]) -> None:
    problems = [rua_problem(uri) for uri in rua]
    usable = any(problem is None for problem in problems)
    for problem in problems:
        if problem is None:
            continue
        if usable and reason_code(problem) == "unsupported-rua-scheme":
            # §3 defines mailto and https; a reporter skips other schemes and
            # uses the rest (a superset record stays valid per §3).
            warnings.append(problem)
        else:
            reasons.append(problem)


def rua_problem(uri: str) -> str | None:
    """What is wrong with one rua URI (RFC 8460 §3), or None when a reporter can use it."""
    if not uri:
        return "empty-rua-uri"
    scheme, colon, rest = uri.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme) or not _URI.fullmatch(uri):
        return f"invalid-rua-uri:{reason_detail(uri)}"
    scheme = scheme.lower()  # RFC 3986 §3.1: schemes are case-insensitive
    if scheme not in SUPPORTED_SCHEMES:
        return f"unsupported-rua-scheme:{reason_detail(scheme)}"
    ok = _mailto_ok(rest) if scheme == "mailto" else _https_ok(rest)
    return None if ok else f"invalid-rua-uri:{reason_detail(uri)}"


def _mailto_ok(rest: str) -> bool:
    """RFC 6068: ``mailto:`` to [hfields], to = addr-spec *("%2C" addr-spec); at least one needed."""
    to, _, _hfields = rest.partition("?")
    if not to or "#" in rest:
        return False
    for encoded in re.split(r"%2[Cc]", to):
        try:
            address = unquote(encoded, errors="strict")
        except UnicodeDecodeError:
            return False
        if not _is_addr_spec(address):
            return False
    return True


def _is_addr_spec(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    if not at:
        return False
    local_ok = bool(_DOT_ATOM.fullmatch(local) or _QUOTED.fullmatch(local))
    return local_ok and bool(_DOT_ATOM.fullmatch(domain) or _DOMAIN_LITERAL.fullmatch(domain))


def _https_ok(rest: str) -> bool:
    """RFC 3986 §3.2 authority after "//": [userinfo "@"] host [":" port], host required."""
    if not rest.startswith("//"):
        return False
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        literal, bracket, port = hostport[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return False
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
        labels = host.removesuffix(".").split(".")
        if not host or not all(_LABEL.fullmatch(label) for label in labels):
            return False
    return port == "" or (port.isascii() and port.isdigit() and int(port) <= 65535)
