"""The incremental SMTP reply parser: case tables and chunking invariance."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import records
from probes.smtp.reply import ERROR_REASONS, Reply, ReplyParser, SmtpProtocolError

# name, bytes, expected replies as (code, lines, enhanced)
OK_CASES = [
    ("banner", b"220 mx.example.org ESMTP Postfix\r\n", [(220, ("mx.example.org ESMTP Postfix",), None)]),
    ("bare-lf", b"220 hi\n", [(220, ("hi",), None)]),
    ("code-only", b"250\r\n", [(250, ("",), None)]),
    ("code-and-space", b"250 \r\n", [(250, ("",), None)]),
    ("multi-line", b"250-a\r\n250-b\r\n250 c\r\n", [(250, ("a", "b", "c"), None)]),
    ("empty-continuation", b"220-\r\n220 ready\r\n", [(220, ("", "ready"), None)]),
    ("two-replies", b"250 ok\r\n354 go on\r\n", [(250, ("ok",), None), (354, ("go on",), None)]),
    ("enhanced", b"250 2.1.0 Sender OK\r\n", [(250, ("2.1.0 Sender OK",), "2.1.0")]),
    (
        "enhanced-multi-digit",
        b"550 5.7.26 unauthenticated\r\n",
        [(550, ("5.7.26 unauthenticated",), "5.7.26")],
    ),
    ("enhanced-only", b"421 4.3.2\r\n", [(421, ("4.3.2",), "4.3.2")]),
    ("enhanced-class-mismatch", b"250 5.0.0 odd\r\n", [(250, ("5.0.0 odd",), None)]),
    ("enhanced-needs-a-space", b"250 2.0.0x\r\n", [(250, ("2.0.0x",), None)]),
    ("enhanced-leading-zeros", b"250 2.01.000 ok\r\n", [(250, ("2.01.000 ok",), "2.1.0")]),
    ("not-enhanced-version", b"220 2.6.1 ready\r\n", [(220, ("2.6.1 ready",), "2.6.1")]),
    ("invalid-utf8", b"220 caf\xe9\r\n", [(220, ("caf\ufffd",), None)]),
    ("utf8", "220 café ☕\r\n".encode(), [(220, ("café ☕",), None)]),
    ("control-chars", b"220 a\x1b[31mb\x00\r\n", [(220, ("a\\x1b[31mb\\x00",), None)]),
    ("stray-cr-inside", b"220 a\rb\r\n", [(220, ("a\\x0db",), None)]),
    ("crcrlf", b"220 a\r\r\n", [(220, ("a\\x0d",), None)]),
    ("tab-kept-escaped", b"220 a\tb\r\n", [(220, ("a\\x09b",), None)]),
    ("incomplete-line-waits", b"220 partial", []),
    ("incomplete-reply-waits", b"250-a\r\n250-b\r\n", []),
]

# name, bytes, reason, replies completed before the error
ERROR_CASES = [
    ("empty-line", b"\r\n", "not-a-reply", 0),
    ("html", b"<html>\r\n", "not-a-reply", 0),
    ("http-response", b"HTTP/1.1 400 Bad Request\r\n", "not-a-reply", 0),
    ("two-digits", b"25\r\n", "not-a-reply", 0),
    ("non-ascii-digits", "٢٢٠ hi\r\n".encode(), "not-a-reply", 0),
    ("code-1xx", b"150 what\r\n", "bad-code", 0),
    ("code-6xx", b"600 what\r\n", "bad-code", 0),
    ("code-0xx", b"099 what\r\n", "bad-code", 0),
    ("tab-separator", b"250\tok\r\n", "invalid-separator", 0),
    ("digit-separator", b"2500 ok\r\n", "invalid-separator", 0),
    ("inconsistent", b"250-a\r\n251 b\r\n", "inconsistent-code", 0),
    ("after-a-good-reply", b"250 ok\r\n???\r\n", "not-a-reply", 1),
    ("line-too-long", b"250 " + b"x" * 3000 + b"\r\n", "line-too-long", 0),
    ("line-too-long-no-eol", b"220 " + b"x" * 3000, "line-too-long", 0),
    ("endless-continuation", b"250-x\r\n" * 300, "too-many-lines", 0),
    ("reply-too-large", (b"250-" + b"y" * 2000 + b"\r\n") * 40, "reply-too-large", 0),
]


def _simple(replies: list[Reply]) -> list[tuple[int, tuple[str, ...], str | None]]:
    return [(r.code, r.lines, r.enhanced_status) for r in replies]


@pytest.mark.parametrize(("name", "data", "expected"), OK_CASES, ids=[c[0] for c in OK_CASES])
def test_replies(name: str, data: bytes, expected: list[tuple[int, tuple[str, ...], str | None]]) -> None:
    assert _simple(ReplyParser().feed(data)) == expected


@pytest.mark.parametrize(("name", "data", "reason", "before"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_protocol_errors(name: str, data: bytes, reason: str, before: int) -> None:
    parser = ReplyParser()
    with pytest.raises(SmtpProtocolError) as info:
        parser.feed(data)
    assert info.value.reason == reason and reason in ERROR_REASONS
    assert len(info.value.replies) == before
    assert len(str(info.value)) < 200
    with pytest.raises(SmtpProtocolError) as again:  # the parser stays dead
        parser.feed(b"250 ok\r\n")
    assert again.value.reason == reason


def test_long_line_is_refused_before_it_is_buffered_whole() -> None:
    parser = ReplyParser(max_line=100)
    parser.feed(b"220 " + b"x" * 96)  # exactly 100 bytes: still fine
    parser.feed(b"\r")  # a CR may still be the line end
    with pytest.raises(SmtpProtocolError, match="line-too-long"):
        parser.feed(b"y")


def test_exact_limits_are_allowed() -> None:
    assert ReplyParser(max_line=10).feed(b"250 123456\r\n")[0].lines == ("123456",)
    assert len(ReplyParser(max_lines=3).feed(b"250-a\n250-b\n250 c\n")[0].lines) == 3
    assert ReplyParser(max_bytes=13).feed(b"250-a\r\n250 \r\n")[0].lines == ("a", "")
    with pytest.raises(SmtpProtocolError, match="reply-too-large"):
        ReplyParser(max_bytes=12).feed(b"250-a\r\n250 \r\n")


def test_pending_and_byte_at_a_time() -> None:
    parser = ReplyParser()
    out: list[Reply] = []
    for byte in b"220-mx ESMTP\r\n220 ready\r\n":
        out += parser.feed(bytes([byte]))
        assert parser.pending is not bool(out)
    assert _simple(out) == [(220, ("mx ESMTP", "ready"), None)]
    assert not parser.pending


@pytest.mark.parametrize(
    ("code", "positive", "transient", "permanent"),
    [
        (220, True, False, False),
        (354, True, False, False),
        (421, False, True, False),
        (554, False, False, True),
    ],
)
def test_reply_classes(code: int, positive: bool, transient: bool, permanent: bool) -> None:
    reply = ReplyParser().feed(f"{code} x\r\n".encode())[0]
    assert (reply.is_positive, reply.is_transient, reply.is_permanent) == (positive, transient, permanent)


def _run(chunks: list[bytes]) -> tuple[list[Reply], str | None]:
    parser = ReplyParser(max_line=64, max_lines=8, max_bytes=300)
    out: list[Reply] = []
    for chunk in chunks:
        try:
            out += parser.feed(chunk)
        except SmtpProtocolError as exc:
            assert exc.reason in ERROR_REASONS
            return out + list(exc.replies), exc.reason
    return out, None


# Streams that are mostly well-formed, so that replies and errors both occur.
_line = st.one_of(
    st.tuples(st.sampled_from(["220", "250", "354", "421", "550", "25", "199", "abc"]),
              st.sampled_from([" ", "-", "", "\t"]),
              st.text(max_size=20)).map(lambda t: (t[0] + t[1] + t[2]).encode()),
    st.binary(max_size=30),
)  # fmt: skip
_stream = st.lists(st.tuples(_line, st.sampled_from([b"\r\n", b"\n", b"\r\r\n", b""])), max_size=12).map(
    lambda lines: b"".join(a + b for a, b in lines)
)


@given(_stream, st.data())
def test_chunking_invariance(stream: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert _run(chunks) == _run([stream])
    assert _run(chunks) == _run([bytes([b]) for b in stream])


@given(st.binary(max_size=500))
def test_any_bytes_give_replies_or_smtp_protocol_error(data: bytes) -> None:
    replies, _ = _run([data])
    for reply in replies:
        assert 200 <= reply.code < 600
        assert all(ch >= " " and not "\x7f" <= ch <= "\x9f" for line in reply.lines for ch in line)


def test_reply_record_round_trips() -> None:
    reply = ReplyParser().feed(b"250-mx\r\n250 2.0.0 ok\r\n")[0]
    assert records.decode(Reply, orjson.loads(records.encode(reply))) == reply
    records.json_schema(Reply)


# name, bytes, expected (code of the one reply or None, the bytes handed back unparsed)
FEED_ONE_CASES = [
    ("starttls-220-and-junk", b"220 ready\r\nJUNK\r\n", (220, b"JUNK\r\n")),
    ("starttls-220-and-tls", b"220 ready\r\n\x16\x03\x03\x00\x02", (220, b"\x16\x03\x03\x00\x02")),
    ("two-replies", b"220 ready\r\n250 injected\r\n", (220, b"250 injected\r\n")),
    ("multi-line-reply", b"220-a\r\n220 b\r\nrest", (220, b"rest")),
    ("exactly-one", b"454 no\r\n", (454, b"")),
    ("incomplete", b"220 rea", (None, b"")),
]


@pytest.mark.parametrize(("name", "data", "expected"), FEED_ONE_CASES, ids=[c[0] for c in FEED_ONE_CASES])
def test_feed_one_stops_after_the_first_reply_and_hands_back_the_rest_unparsed(
    name: str, data: bytes, expected: tuple[int | None, bytes]
) -> None:
    """RFC 3207 §4.2: after the 220 to STARTTLS the stream is not SMTP; bytes sharing its read
    must come back untouched, never fail the parser (the old shell aborted on them)."""
    parser = ReplyParser()
    reply, rest = parser.feed_one(data)
    assert ((reply.code if reply else None), rest) == expected
    if reply is not None:  # the parser kept nothing and still works
        assert not parser.pending and _simple(parser.feed(b"250 ok\r\n")) == [(250, ("ok",), None)]


def test_feed_one_before_the_reply_completes_is_feed() -> None:
    parser = ReplyParser()
    assert parser.feed_one(b"220-a\r\n") == (None, b"") and parser.pending
    reply, rest = parser.feed_one(b"220 b\r\nJUNK")
    assert reply is not None and reply.lines == ("a", "b") and rest == b"JUNK"
    with pytest.raises(SmtpProtocolError, match="not-a-reply"):
        ReplyParser().feed_one(b"JUNK\r\n220 ready\r\n")


@given(_stream, st.binary(max_size=40), st.data())
def test_feed_one_does_not_depend_on_how_the_stream_was_split(
    stream: bytes, after: bytes, data: st.DataObject
) -> None:
    whole = stream + after
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=6)))
    chunks = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]

    def run(pieces: list[bytes]) -> tuple[int | None, bytes] | str:
        parser = ReplyParser(max_line=64, max_lines=8, max_bytes=300)
        for index, piece in enumerate(pieces):
            try:
                reply, rest = parser.feed_one(piece)
            except SmtpProtocolError as exc:
                return exc.reason
            if reply is not None:
                return reply.code, rest + b"".join(pieces[index + 1 :])
        return None, b""

    assert run(chunks) == run([whole])


# --- boundaries and details the results keep (mutation testing, issue #19) ---------------------

_WAITING = "more than 2048 bytes without a line end"
_KIB_LINE = b"250-" + b"a" * 1020 + b"\r\n"  # 1,026 bytes

ERROR_DETAILS = [
    ("line-too-long-whole", b"250 " + b"x" * 2045 + b"\r\n", "line-too-long", "line of 2049 bytes"),
    ("line-too-long-waiting", b"250 " + b"x" * 2045, "line-too-long", _WAITING),
    ("line-too-long-waiting-cr", b"250 " + b"x" * 2045 + b"\r", "line-too-long", _WAITING),
    ("not-a-reply-first-40-bytes", b"X" * 100 + b"\r\n", "not-a-reply", "X" * 40),
    ("empty-line-is-not-a-reply", b"\n", "not-a-reply", ""),
    ("not-a-reply-at-most-60-chars", b"\x01" * 50 + b"\r\n", "not-a-reply", "\\x01" * 14 + "\\x0…"),
    ("bad-code", b"650 no\r\n", "bad-code", "650"),
    ("invalid-separator-first-40", b"250x" + b"y" * 100 + b"\r\n", "invalid-separator", "250x" + "y" * 36),
    ("invalid-separator-at-most-60-chars", b"250x" + b"\x01" * 50 + b"\r\n", "invalid-separator",
     "250x" + "\\x01" * 13 + "\\x0…"),
    ("inconsistent-code", b"250-a\r\n251 b\r\n", "inconsistent-code", "251 after 250"),
    ("too-many-lines", b"250-a\r\n" * 256 + b"250 b\r\n", "too-many-lines", "more than 256 lines"),
    ("reply-too-large", _KIB_LINE * 64 + b"250 b\r\n", "reply-too-large", "more than 65536 bytes"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "reason", "detail"), [c[1:] for c in ERROR_DETAILS], ids=[c[0] for c in ERROR_DETAILS]
)
def test_protocol_errors_say_what_was_wrong_and_stay_dead(data: bytes, reason: str, detail: str) -> None:
    """Default caps (2048-byte lines, 256 lines, 64 KiB per reply); the detail names the limit or
    shows the start of the offending line; a dead parser repeats the same error."""
    parser = ReplyParser()
    with pytest.raises(SmtpProtocolError) as caught:
        parser.feed(data)
    assert (caught.value.reason, caught.value.detail) == (reason, detail)
    assert str(caught.value) == (f"{reason}: {detail}" if detail else reason)
    with pytest.raises(SmtpProtocolError) as again:
        parser.feed(b"250 ok\r\n")
    assert (again.value.reason, again.value.detail) == (reason, detail)


def test_default_caps_are_inclusive() -> None:
    """Exactly 2048 bytes per line, 256 lines and 65,536 bytes per reply are accepted."""
    (reply,) = ReplyParser().feed(b"250 " + b"x" * 2044 + b"\r\n")
    assert reply.lines == ("x" * 2044,)
    assert len(ReplyParser().feed(b"250-a\r\n" * 255 + b"250 b\r\n")[0].lines) == 256
    body = _KIB_LINE * 63 + b"250 " + b"a" * (65536 - 63 * len(_KIB_LINE) - 6) + b"\r\n"
    assert len(body) == 65536 and len(ReplyParser().feed(body)[0].lines) == 64


def test_each_reply_gets_its_own_byte_budget() -> None:
    """The byte count restarts at zero after every complete reply."""
    one = b"250-aaaa\r\n250 bb\r\n"
    parser = ReplyParser(max_bytes=len(one))
    assert len(parser.feed(one + one + one)) == 3


def test_line_text_of_control_bytes_is_escaped_in_full() -> None:
    """Every byte of a line within the cap is kept: an escaped control byte takes 4 characters,
    so a line's text may be up to 4 x the line cap, never cut."""
    (reply,) = ReplyParser().feed(b"250 " + b"\x01" * 2044 + b"\r\n")
    assert reply.lines == ("\\x01" * 2044,)
