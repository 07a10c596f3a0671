"""Text a peer chose, made safe to record: one helper for every probe.

Banners, reply texts, EHLO parameters, certificate names, HTTP headers and
Extended DNS Error texts come from servers we do not control.  Before they go
into a record they are decoded (UTF-8, invalid bytes replaced), their control
characters (C0, DEL, C1) are written as ``\\xNN`` so a terminal or a log shows
them without obeying them, and they are cut to a documented length per field.
A cut string ends in ``TRUNCATION_MARK`` (its length, mark included, is the
limit), which the schema documents; line and paragraph separators (U+2028,
U+2029) are kept as sent: the line encoder (``engine.linecap``) escapes them, with
U+0085, in the encoded line, since any string of a record (not only peer text) can
hold them and a line reader must never split a line there.

Each caller names its limit (``probes.smtp.session.TEXT_LIMIT`` for banners and
replies, ...); the line encoder's ``MAX_LINE_BYTES`` bounds the record as a whole.
Two variants for one-line texts: ``bound_line`` folds whitespace runs (a library's
multi-line error message, an EHLO parameter list) into single spaces first, and
``exception_text`` describes an exception (its type, then its message), which can
quote a peer too.

Two helpers elsewhere treat text differently, on purpose: ``engine.names.escape_text``
(a line of the user's own domain list, printed in error messages as is, so format
characters such as bidi overrides are escaped too) and ``report.render_text.printable``
(a table cell: one printable line whatever the record holds, from any version).
TXT record strings (``probes.dns.classify.format_rdata``) are data, not text to show:
they are parsed, so they are kept whole, invalid UTF-8 as ``\\xNN``.
"""

from __future__ import annotations

import re

__all__ = ["EXCEPTION_TEXT_LIMIT", "TRUNCATION_MARK", "bound_line", "bound_text", "exception_text"]

#: Ends a string cut to its limit.
TRUNCATION_MARK = "…"
#: Characters of an exception's description (type and message) kept in a record.
EXCEPTION_TEXT_LIMIT = 300

# C0 controls, DEL and C1 controls (the Unicode category Cc).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def bound_text(text: str | bytes, limit: int) -> str:
    """``text`` as UTF-8 (invalid bytes replaced), control characters escaped as ``\\xNN``,
    at most ``limit`` (>= 1) characters; a cut one ends in ``TRUNCATION_MARK``."""
    if isinstance(text, bytes):
        # A UTF-8 character is at most 4 bytes: this prefix holds the first limit + 1.
        text = text[: (limit + 1) * 4].decode("utf-8", "replace")
    # Escaping only lengthens text, so limit + 1 characters decide both the kept part and
    # whether anything is cut; the rest of a huge input is never scanned.
    text = text[: limit + 1]
    if not text.isprintable():  # every character _CONTROL matches is unprintable (Cc)
        text = _CONTROL.sub(_escape, text)
    if len(text) > limit:
        return text[: max(limit - 1, 0)] + TRUNCATION_MARK
    return text


def bound_line(text: str, limit: int) -> str:
    """``bound_text`` of ``text`` with each run of whitespace (line breaks included) one space."""
    return bound_text(" ".join(text.split()), limit)


def exception_text(exc: BaseException, limit: int = EXCEPTION_TEXT_LIMIT) -> str:
    """``exc`` as record text: its type and message (``bound_text``).  An ExceptionGroup (a
    TaskGroup's) is described by its first underlying error: the group's own text ("unhandled
    errors in a TaskGroup") says nothing about what failed."""
    more = 0
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        more += len(exc.exceptions) - 1
        exc = exc.exceptions[0]
    return bound_text(f"{type(exc).__name__}: {exc}" + (f" (and {more} more)" if more else ""), limit)
