"""Text a peer chose, made safe to record: one helper for every probe.

Banners, reply texts, EHLO parameters, certificate names, HTTP headers and
Extended DNS Error texts come from servers we do not control.  Before they go
into a record they are decoded (UTF-8, invalid bytes replaced), their control
characters (C0, DEL, C1) are written as ``\\xNN`` so a terminal or a log shows
them without obeying them, and they are cut to a documented length per field.
A cut string ends in ``TRUNCATION_MARK`` (its length, mark included, is the
limit), which the schema documents; line and paragraph separators (U+2028,
U+2029) are kept as sent, since the line encoder (``engine.records``) escapes
them, so the record says exactly what the peer said.

Each caller names its limit (``probes.smtp.session.TEXT_LIMIT`` for banners and
replies, ...); the line encoder's ``MAX_LINE_BYTES`` bounds the record as a whole.
"""

from __future__ import annotations

import re

__all__ = ["TRUNCATION_MARK", "bound_text"]

#: Ends a string cut to its limit.
TRUNCATION_MARK = "…"

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
