"""The ``_mta-sts.<domain>`` TXT record, assessed strictly by RFC 8461 §3.1.

Theory of operation
-------------------
The resolver hands us every TXT record at the name, each already the
concatenation of its character-strings.  RFC 8461 §3.1 says records that do
not begin with the version field are discarded; exactly one must remain, and
it must match the ABNF::

    sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
    sts-field       = sts-id / sts-extension      ; sts-id is required
    sts-field-delim = *WSP ";" *WSP
    sts-version     = %s"v=STSv1"
    sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
    sts-extension   = sts-ext-name "=" sts-ext-value
    sts-ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
    sts-ext-value   = 1*(%x21-3A / %x3C / %x3E-7E)

``assess_sts_txt`` never raises: every problem becomes a reason code
(``code`` or ``code:detail``), and ``valid`` is true exactly when there are
no reasons.  Things the RFC itself tolerates (a repeated ``id``, where §3.2's
"all entries except for the first SHALL be ignored" is applied) are
``warnings`` and leave the record valid.

``assess_sts_answer`` judges the DNS answer: a lookup that failed (SERVFAIL,
REFUSED, timeout, error) says nothing about the records, so the record is
unknown (``present`` and ``valid`` null, reason ``lookup-failed:<outcome>``),
never "no record".

Sample: ``v=STSv1; id=20190429T010101;``
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.peertext import bound_text
from probes.dns.records import DEFINITE_OUTCOMES, Answer, Outcome

__all__ = [
    "StsRecord",
    "assess_sts_answer",
    "assess_sts_txt",
    "bound_reasons",
    "is_candidate",
    "is_extension",
    "lookup_failure",
    "near_misses",
    "reason_code",
    "reason_detail",
]

#: RFC 8461 §3.1: the version field, case-sensitive (%s, RFC 7405).
VERSION = "v=STSv1"
#: Longest detail kept in a reason, so hostile records cannot bloat results.
MAX_DETAIL = 64
#: Most distinct reasons (or warnings) kept from one record or body; the rest are counted.
MAX_REASONS = 32

# sts-field-delim = *WSP ";" *WSP, WSP being SP / HTAB (RFC 5234 B.1).
_DELIM = re.compile(r"[ \t]*;[ \t]*")
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")


@dataclass(frozen=True, slots=True)
class StsRecord:
    """What the ``_mta-sts`` TXT records say, judged by RFC 8461 §3.1.

    Fields:
      present: at least one TXT record begins with the version field "v=STSv1" (not followed by a letter
        or digit): the domain tried to publish MTA-STS.  Null when the TXT lookup failed (unknown).
      valid: exactly one such record and it fits the §3.1 ABNF with an id; a sender would go on to fetch
        the policy.  True exactly when reasons is empty; null when the TXT lookup failed (unknown).
      id: the policy id (1-32 letters and digits; the first if repeated), also when other parts of the
        record are wrong; "" when absent, malformed, or when several records make it ambiguous.
      reasons: why the record is not valid, each "code" or "code:detail": lookup-failed:<outcome> (the
        TXT lookup failed: servfail, refused, timeout or error; the record is unknown), no-sts-record,
        multiple-sts-records, missing-id, invalid-id, bad-syntax, trailing-whitespace, version-not-first,
        version-wrong-case; repeats dropped, past 32 the rest counted as more-problems:<n>.
      warnings: departures the RFC tolerates, record still valid: duplicate-id (the first id counts).
      extensions: unknown fields of the record as written, "name=value", in order (ignored by senders).
    """

    present: bool | None
    valid: bool | None
    id: str
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    extensions: tuple[str, ...]


def reason_code(reason: str) -> str:
    """The stable code of a reason or warning, without its ``:detail``."""
    return reason.partition(":")[0]


def reason_detail(text: str) -> str:
    """``text`` made safe to embed in a reason (``engine.peertext.bound_text``): control
    characters as ``\\xNN``, at most ``MAX_DETAIL`` characters, a cut marked "…"."""
    return bound_text(text, MAX_DETAIL)


def bound_reasons(items: Sequence[str]) -> tuple[str, ...]:
    """``items`` without repeats, at most MAX_REASONS, the rest summed up as "more-problems:<n>"."""
    unique = tuple(dict.fromkeys(items))
    if len(unique) <= MAX_REASONS:
        return unique
    kept = MAX_REASONS - 1
    return (*unique[:kept], f"more-problems:{len(unique) - kept}")


def is_candidate(txt: str, version: str) -> bool:
    """Whether the discard rule of RFC 8461 §3.1 (MTA-STS, ``version`` "v=STSv1") or
    RFC 8460 §3 (TLS-RPT, "v=TLSRPTv1") keeps ``txt``.

    The prose says records not beginning with "v=STSv1;" are discarded, but
    the ABNF allows whitespace before the ";" (erratum 6285 reports the clash),
    and "v=STSv1" alone or "v=STSv1,id=1" are still attempts at a record, to
    be reported as malformed rather than as absent.  So a record is kept when
    the version token is complete: not followed by a letter or digit
    ("v=STSv10" would be another version).
    """
    return txt.startswith(version) and not txt[len(version) : len(version) + 1].isalnum()


def record_fields(txt: str, version: str) -> tuple[list[str], list[str]]:
    """The fields after the ``version`` field that ``txt`` begins with, split at
    ``*WSP ";" *WSP``, and the syntax reasons found on the way (trailing-whitespace,
    bad-syntax:<record>).  RFC 8461 §3.1 and RFC 8460 §3 write the same grammar:
    ``version 1*(field-delim field) [field-delim]``."""
    reasons: list[str] = []
    rest = txt[len(version) :]
    stripped = rest.rstrip(" \t")
    if stripped != rest and not stripped.endswith(";"):
        # The ABNF allows WSP only around ";": "v=STSv1; id=1 " is malformed.
        reasons.append("trailing-whitespace")
        rest = stripped
    parts = _DELIM.split(rest)
    # A well-formed rest starts with a delimiter, so the first part is empty;
    # at most one final delimiter may follow the last field.
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if parts[0] != "":
        reasons.append(f"bad-syntax:{reason_detail(txt)}")
    return parts[1:], reasons


def is_extension(field: str) -> bool:
    """Whether ``field`` is a well-formed extension, ``name=value`` (sts-extension of
    RFC 8461 §3.1, tlsrpt-extension of RFC 8460 §3: the same rule)."""
    name, eq, value = field.partition("=")
    return bool(eq and _EXT_NAME.fullmatch(name) and _EXT_VALUE.fullmatch(value))


def lookup_failure(answer: Answer) -> str | None:
    """``lookup-failed:<outcome>`` when the TXT lookup failed, None when it settled
    what the name holds (records, NXDOMAIN or NODATA).  Shared with TLS-RPT."""
    if answer.outcome in DEFINITE_OUTCOMES:
        return None
    return f"lookup-failed:{answer.outcome.value}"


def assess_sts_answer(answer: Answer) -> StsRecord:
    """Judge the ``_mta-sts.<domain>`` TXT lookup: its records, no record (NXDOMAIN, NODATA),
    or unknown when the lookup failed."""
    failure = lookup_failure(answer)
    if failure is not None:
        return StsRecord(None, None, "", (failure,), (), ())
    return assess_sts_txt(answer.data if answer.outcome is Outcome.OK else ())


def assess_sts_txt(txt_records: Sequence[str]) -> StsRecord:
    """Judge the TXT records found at ``_mta-sts.<domain>`` (RFC 8461 §3.1)."""
    candidates = [txt for txt in txt_records if is_candidate(txt, VERSION)]
    if not candidates:
        return StsRecord(False, False, "", ("no-sts-record", *near_misses(txt_records, VERSION)), (), ())
    if len(candidates) > 1:
        # §3.1: "If the number of resulting records is not one ... senders MUST
        # assume the recipient domain does not have an available MTA-STS Policy".
        return StsRecord(True, False, "", (f"multiple-sts-records:{len(candidates)}",), (), ())
    return _assess_one(candidates[0])


def near_misses(txt_records: Sequence[str], version: str) -> tuple[str, ...]:
    """Why records that look like ``version`` records were discarded (said only when none
    is kept): the version field is there but not first, or in the wrong case.  Shared by
    the MTA-STS (RFC 8461 §3.1) and TLS-RPT (RFC 8460 §3) record judges."""
    found: list[str] = []
    for txt in txt_records:
        fields = [f.strip(" \t") for f in txt.split(";")]
        if version in fields:
            found.append("version-not-first")
        elif any(f.lower() == version.lower() for f in fields):
            found.append("version-wrong-case")
    return tuple(dict.fromkeys(found))


def _assess_one(txt: str) -> StsRecord:
    warnings: list[str] = []
    extensions: list[str] = []
    ids: list[str] = []
    fields, reasons = record_fields(txt, VERSION)
    for field in fields:
        if field.startswith("id="):
            value = field[3:]
            if _ID.fullmatch(value):
                ids.append(value)
            else:
                reasons.append(f"invalid-id:{reason_detail(value)}")
            continue
        if not field:
            reasons.append("bad-syntax:empty-field")
            continue
        if is_extension(field):
            extensions.append(field)  # §3.1: unknown fields are ignored by senders
        else:
            reasons.append(f"bad-syntax:{reason_detail(field)}")
    reasons = list(bound_reasons(reasons))
    if not ids and not any(reason_code(r) == "invalid-id" for r in reasons):
        reasons.append("missing-id")
    if len(ids) > 1:
        # §3.1's ABNF allows the field twice; §3.2 settles repeats: the first counts.
        warnings.append("duplicate-id")
    record_id = ids[0] if ids else ""
    return StsRecord(True, not reasons, record_id, tuple(reasons), tuple(warnings), tuple(extensions))
