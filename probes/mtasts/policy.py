"""The MTA-STS policy body, parsed strictly by RFC 8461 §3.2.

Theory of operation
-------------------
The body served at ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` is a
list of ``key: value`` lines.  The ABNF (RFC 8461 §3.2, RFC 7405 ``%s`` makes
every literal case-sensitive)::

    sts-policy-record      = sts-policy-field *WSP
                             *(sts-policy-term sts-policy-field *WSP)
                             [sts-policy-term]
    sts-policy-field       = sts-policy-version / sts-policy-mode / sts-policy-max-age
                           / sts-policy-mx / sts-policy-extension
    sts-policy-field-delim = ":" *WSP
    sts-policy-version-value = %s"STSv1"
    sts-policy-mode-value  = %s"testing" / %s"enforce" / %s"none"
    sts-policy-mx-value    = ["*."] Domain                  ; Domain from RFC 5321 §4.1.2
    sts-policy-max-age-value = 1*10(DIGIT)
    sts-policy-ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
    sts-policy-term        = LF / CRLF
    sts-policy-ext-value   = sts-policy-vchar [*(%x20 / sts-policy-vchar) sts-policy-vchar]

So: no whitespace before a key or before the colon, whitespace allowed after
the colon and at the end of a line, no blank lines (a term must be followed by
a field, except one final term), and field order is free (unlike the TXT
record, §3.2 does not require ``version`` first).  The prose adds: version,
mode and max_age are "required once", mx "at least once, except when mode is
none", max_age at most 31557600, unknown fields are ignored, and "if any
non-'mx' field is duplicated, all entries except for the first SHALL be
ignored" (a warning here, not an error).

``parse_policy`` never raises.  ``valid`` is true exactly when ``reasons`` is
empty; each reason is ``code`` or ``code:detail`` (see ``StsPolicy``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from probes.mtasts.record import bound_reasons, reason_detail

__all__ = [
    "MAX_AGE_LIMIT",
    "MAX_POLICY_BYTES",
    "LineEndings",
    "Mode",
    "StsPolicy",
    "is_valid_mx_pattern",
    "parse_policy",
]

#: RFC 8461 §3.3 suggests senders cap the policy body at 64 KiB; bigger bodies are refused unread.
MAX_POLICY_BYTES = 64 * 1024
#: RFC 8461 §3.2: max_age is at most 31557600 seconds (one Julian year).
MAX_AGE_LIMIT = 31_557_600


class Mode(StrEnum):
    #: Senders MUST NOT deliver to an MX that fails validation (RFC 8461 §5).
    ENFORCE = "enforce"
    #: Senders report failures (TLS-RPT) but deliver anyway.
    TESTING = "testing"
    #: Senders treat the domain as having no active policy.
    NONE = "none"


class LineEndings(StrEnum):
    #: Every line ends with a bare LF (allowed by the ABNF's sts-policy-term).
    LF = "lf"
    #: Every line ends with CRLF, as §3.2's prose describes.
    CRLF = "crlf"
    #: Both kinds occur (allowed by the ABNF, fragile with strict parsers).
    MIXED = "mixed"
    #: No line terminator at all (a single line, or an empty body).
    NONE = "none"


@dataclass(frozen=True, slots=True)
class StsPolicy:
    """An MTA-STS policy body as RFC 8461 §3.2 reads it.

    Fields:
      valid: the body fits the §3.2 grammar and has every required field with a valid value; true
        exactly when reasons is empty.
      version: the value of the first "version" field as written; "" when absent.
      mode: enforce / testing / none from the first "mode" field; null when absent or not one of those.
      mx: every "mx" value in order as written, including malformed ones (each also in reasons).
      max_age: the first "max_age" in seconds, also when above the limit; null when absent or not
        1-10 digits.
      line_endings: lf / crlf / mixed / none: how the lines are terminated (a fact; both are valid).
      reasons: why the policy is not valid, each "code" or "code:detail": too-large:<bytes>, not-utf8,
        utf8-bom, bare-cr (a CR without LF, e.g. old Mac line ends), bad-line:<n>, blank-line:<n>,
        invalid-version:<v>, invalid-mode:<v>, invalid-mx-pattern:<v>, invalid-max-age:<v>,
        max-age-out-of-range:<v>, missing-version, missing-mode, missing-mx (mode not none),
        missing-max-age; repeats are dropped and past 32 the rest are counted as more-problems:<n>.
      warnings: departures §3.2 tolerates, policy still valid: duplicate-key:<k> (the first counts),
        wrong-case-key:<k> (e.g. "Mode", an unknown extension to a sender).
      extensions: unknown fields as "key: value", in order; senders ignore them.
    """

    valid: bool
    version: str
    mode: Mode | None
    mx: tuple[str, ...]
    max_age: int | None
    line_endings: LineEndings
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    extensions: tuple[str, ...]


_KNOWN = ("version", "mode", "mx", "max_age")
_MODES = {mode.value: mode for mode in Mode}
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
# sts-policy-vchar = VCHAR / UTF8-2 / UTF8-3 / UTF8-4: printable ASCII or any non-ASCII character.
_VCHAR = r"[\x21-\x7e\u0080-\U0010ffff]"
_EXT_VALUE = re.compile(rf"{_VCHAR}(?:[ \x21-\x7e\u0080-\U0010ffff]*{_VCHAR})?")
_MAX_AGE = re.compile(r"[0-9]{1,10}")
# RFC 5321 §4.1.2: sub-domain = Let-dig [Ldh-str]; ASCII only, so a U-label is
# invalid (§3.2: IDN mx values MUST be A-labels).  63 per label (RFC 1035 §2.3.4).
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?")


def is_valid_mx_pattern(pattern: str) -> bool:
    """``["*."] Domain`` (RFC 8461 §3.2): a host name, or ``*.`` and a host name."""
    name = pattern[2:] if pattern.startswith("*.") else pattern
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def _line_endings(text: str) -> LineEndings:
    crlf = text.count("\r\n")
    lf = text.count("\n") - crlf
    if crlf and lf:
        return LineEndings.MIXED
    if crlf:
        return LineEndings.CRLF
    return LineEndings.LF if lf else LineEndings.NONE


class _Fields:
    """Accumulates the fields of one body while its lines are read."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.warnings: list[str] = []
        self.extensions: list[str] = []
        self.mx: list[str] = []
        self.seen: set[str] = set()
        self.version = ""
        self.mode: Mode | None = None
        self.max_age: int | None = None

    def add(self, key: str, value: str) -> None:
        if key == "mx":
            self.mx.append(value)
            if not is_valid_mx_pattern(value):
                self.reasons.append(f"invalid-mx-pattern:{reason_detail(value)}")
            return
        if key in self.seen:
            # §3.2: "If any non-'mx' field is duplicated, all entries except for
            # the first SHALL be ignored."
            self.warnings.append(f"duplicate-key:{key}")
            return
        self.seen.add(key)
        if key == "version":
            self.version = value
            if value != "STSv1":
                self.reasons.append(f"invalid-version:{reason_detail(value)}")
        elif key == "mode":
            if value in _MODES:
                self.mode = _MODES[value]
            else:
                self.reasons.append(f"invalid-mode:{reason_detail(value)}")
        else:
            self._add_max_age(value)

    def _add_max_age(self, value: str) -> None:
        if not _MAX_AGE.fullmatch(value):
            self.reasons.append(f"invalid-max-age:{reason_detail(value)}")
            return
        self.max_age = int(value)
        if self.max_age > MAX_AGE_LIMIT:
            self.reasons.append(f"max-age-out-of-range:{value}")


def parse_policy(body: bytes) -> StsPolicy:
    """Parse an MTA-STS policy body (RFC 8461 §3.2); never raises."""
    if len(body) > MAX_POLICY_BYTES:
        return StsPolicy(False, "", None, (), None, LineEndings.NONE, (f"too-large:{len(body)}",), (), ())
    fields = _Fields()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # Go on with replacement characters so the rest can still be judged.
        fields.reasons.append("not-utf8")
        text = body.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        fields.reasons.append("utf8-bom")  # not a field: the ABNF has no room for it
        text = text[1:]
    if "\r" in text.replace("\r\n", ""):
        # A CR not followed by LF is no sts-policy-term: such lines run together.
        fields.reasons.append("bare-cr")
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # the optional final sts-policy-term
    if text:
        for number, raw in enumerate(lines, start=1):
            _read_line(fields, number, raw.removesuffix("\r"))
    # A 64 KiB body of blank lines would otherwise carry 65,536 reasons.
    fields.reasons = list(bound_reasons(fields.reasons))
    _check_required(fields)
    return StsPolicy(
        valid=not fields.reasons,
        version=fields.version,
        mode=fields.mode,
        mx=tuple(fields.mx),
        max_age=fields.max_age,
        line_endings=_line_endings(text),
        reasons=tuple(fields.reasons),
        warnings=bound_reasons(fields.warnings),
        extensions=tuple(fields.extensions),
    )


def _read_line(fields: _Fields, number: int, line: str) -> None:
    if not line:
        fields.reasons.append(f"blank-line:{number}")
        return
    key, colon, value = line.rstrip(" \t").partition(":")
    # sts-policy-field-delim = ":" *WSP: nothing between key and colon, WSP after.
    value = value.lstrip(" \t")
    if not colon or not _EXT_NAME.fullmatch(key):
        fields.reasons.append(f"bad-line:{number}")
    elif key in _KNOWN:
        fields.add(key, value)
    elif not _EXT_VALUE.fullmatch(value):
        fields.reasons.append(f"bad-line:{number}")
    else:
        if key.lower() in _KNOWN:
            fields.warnings.append(f"wrong-case-key:{key}")
        fields.extensions.append(f"{key}: {value}")


def _check_required(fields: _Fields) -> None:
    # §3.2: "If any field is not specified, the policy SHALL be treated as invalid."
    seen = fields.seen
    if "version" not in seen:
        fields.reasons.append("missing-version")
    if "mode" not in seen:
        fields.reasons.append("missing-mode")
    if not fields.mx and fields.mode is not Mode.NONE:
        fields.reasons.append("missing-mx")
    if "max_age" not in seen:
        fields.reasons.append("missing-max-age")
