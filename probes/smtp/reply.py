"""SMTP replies from bytes: an incremental, bounded parser (RFC 5321 §4.2).

Theory of operation
-------------------
A reply is one or more lines ``<code><sep><text>`` where every line but the
last has ``sep`` = "-" and the last has " " or nothing at all (RFC 5321
§4.2.1: ``Reply-code [ SP textstring ] CRLF``)::

    250-mail.example.com Hello
    250-SIZE 35882577
    250 STARTTLS

``ReplyParser.feed`` takes whatever bytes arrived and returns the replies they
completed; a partial line waits in a buffer for the next call.  Lines end at
LF; one CR before it is dropped, so CRLF and bare LF both work.  The result
does not depend on how the byte stream was split into ``feed`` calls (tested
with Hypothesis): the same replies, then the same error, or none.

Everything is bounded: a line over ``max_line`` bytes is refused as soon as
the buffer shows it (not after buffering the whole line), as is a reply with
more than ``max_lines`` lines or ``max_bytes`` bytes.  Any violation raises
``SmtpProtocolError`` with one of the stable ``reason`` values in
``ERROR_REASONS``; its ``replies`` holds the replies completed earlier in the
same ``feed`` call.  After an error the parser is dead: every later ``feed``
raises the same reason.

``feed_one`` stops at the end of the first complete reply and hands back the
bytes after it unparsed: after the 220 to STARTTLS the stream is no longer
SMTP (RFC 3207 §4.2), so whatever shares the read with that reply must not be
parsed, let alone fail the parser.

Text is decoded as UTF-8 with replacement characters, and control characters
are escaped (``\\x1b``), so peer text can be logged and stored safely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.peertext import bound_text

__all__ = ["ERROR_REASONS", "Reply", "ReplyParser", "SmtpProtocolError"]

#: Stable values of ``SmtpProtocolError.reason``.
ERROR_REASONS = (
    "line-too-long",  # a line longer than max_line bytes (terminator excluded)
    "too-many-lines",  # a reply with more than max_lines lines
    "reply-too-large",  # a reply with more than max_bytes bytes (terminators included)
    "not-a-reply",  # a line that does not start with three digits
    "bad-code",  # three digits, but the first is not 2-5 (RFC 5321 §4.2.1)
    "invalid-separator",  # the fourth byte is neither " ", "-" nor the end of the line
    "inconsistent-code",  # a continuation line with another code than the first line
)

# RFC 3463 §2: class.subject.detail; RFC 2034 §4: the class repeats the reply class.
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


class SmtpProtocolError(Exception):
    """The peer's bytes are not a well-formed, bounded SMTP reply stream.

    ``reason`` is one of ``ERROR_REASONS``; ``detail`` is bounded, sanitised
    text; ``replies`` are the complete replies parsed before the error in the
    same ``feed`` call.
    """

    def __init__(self, reason: str, detail: str = "", replies: tuple[Reply, ...] = ()) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.replies = replies


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete SMTP reply.

    Fields:
      code: the three-digit reply code (200-599).
      lines: the text of each line after the code and separator, sanitised.
      enhanced_status: the RFC 3463 enhanced status code ("2.0.0") opening the first line, or null.
    """

    code: int
    lines: tuple[str, ...]
    enhanced_status: str | None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def is_positive(self) -> bool:
        """2yz completion or 3yz intermediate (RFC 5321 §4.2.1)."""
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4yz: try again later."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5yz: do not repeat as is."""
        return 500 <= self.code < 600


class ReplyParser:
    """Feed bytes, get complete replies; see the module docstring."""

    __slots__ = ("_buf", "_code", "_dead", "_lines", "_reply_bytes", "max_bytes", "max_line", "max_lines")

    def __init__(self, max_line: int = 2048, max_lines: int = 256, max_bytes: int = 65536) -> None:
        self.max_line = max_line
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._lines: list[str] = []
        self._code: bytes | None = None
        self._reply_bytes = 0
        self._dead: tuple[str, str] | None = None

    @property
    def pending(self) -> bool:
        """Bytes of an unfinished line or reply are buffered."""
        return bool(self._buf) or bool(self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        return self._feed(data, first_only=False)[0]

    def feed_one(self, data: bytes) -> tuple[Reply | None, bytes]:
        """At most one reply; the bytes after it are returned unparsed.

        For the reply that switches protocols (220 to STARTTLS, RFC 3207 §4.2):
        what follows it is not SMTP and must not be parsed as such.  Before the
        reply is complete this is ``feed``; after it the buffer is empty.
        """
        replies, rest = self._feed(data, first_only=True)
        return (replies[0] if replies else None), rest

    def _feed(self, data: bytes, *, first_only: bool) -> tuple[list[Reply], bytes]:
        if self._dead is not None:
            raise SmtpProtocolError(*self._dead)
        self._buf += data
        out: list[Reply] = []
        start = 0
        buf = self._buf
        try:
            while True:
                end = buf.find(b"\n", start)
                if end < 0:
                    break
                line = bytes(buf[start:end])
                start = end + 1
                reply = self._line(line, len(line) + 1)  # + the LF
                if reply is not None:
                    out.append(reply)
                    if first_only:
                        rest = bytes(buf[start:])
                        buf.clear()
                        return out, rest
            del buf[:start]
            tail = len(buf) - (1 if buf.endswith(b"\r") else 0)
            if tail > self.max_line:
                raise SmtpProtocolError(
                    "line-too-long", f"more than {self.max_line} bytes without a line end"
                )
        except SmtpProtocolError as exc:
            self._dead = (exc.reason, exc.detail)
            self._buf = bytearray()
            raise SmtpProtocolError(exc.reason, exc.detail, tuple(out)) from None
        return out, b""

    def _line(self, raw: bytes, size: int) -> Reply | None:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if len(line) > self.max_line:
            raise SmtpProtocolError("line-too-long", f"line of {len(line)} bytes")
        code = line[:3]
        if len(code) < 3 or not code.isdigit():
            raise SmtpProtocolError("not-a-reply", bound_text(line[:40], 60))
        if code[0] not in b"2345":
            raise SmtpProtocolError("bad-code", code.decode())  # three ASCII digits
        sep = line[3:4]
        if sep not in (b"", b" ", b"-"):
            raise SmtpProtocolError("invalid-separator", bound_text(line[:40], 60))
        if self._code is not None and code != self._code:
            raise SmtpProtocolError("inconsistent-code", f"{code.decode()} after {self._code.decode()}")
        self._code = code
        self._reply_bytes += size
        if self._reply_bytes > self.max_bytes:
            raise SmtpProtocolError("reply-too-large", f"more than {self.max_bytes} bytes")
        if len(self._lines) >= self.max_lines:
            raise SmtpProtocolError("too-many-lines", f"more than {self.max_lines} lines")
        self._lines.append(bound_text(line[4:], self.max_line * 4))
        if sep == b"-":
            return None
        lines = tuple(self._lines)
        self._lines, self._code, self._reply_bytes = [], None, 0
        match = _ENHANCED.match(lines[0])
        enhanced = None
        if match and match.group(1) == chr(code[0]):
            enhanced = ".".join(str(int(g)) for g in match.groups()[:3])
        return Reply(int(code), lines, enhanced)
