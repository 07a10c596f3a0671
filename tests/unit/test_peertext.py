"""Peer text bounded and escaped where it is read: one helper for every probe."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.peertext import TRUNCATION_MARK, bound_text


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("mx.example.com ESMTP", 512, "mx.example.com ESMTP"),
        ("x" * 10, 10, "x" * 10),
        ("x" * 11, 10, "x" * 9 + "…"),
        ("bad\x1b[31m\r\n", 512, "bad\\x1b[31m\\x0d\\x0a"),
        ("del\x7f c1\x85", 512, "del\\x7f c1\\x85"),
        (b"caf\xe9", 512, "caf\ufffd"),
        (b"\xf0\x9f\x93\xa7" * 20, 5, "📧" * 4 + "…"),
        ("sep\u2028para\u2029", 512, "sep\u2028para\u2029"),
        ("\x00" * 100, 9, "\\x00\\x00…"),
        ("", 5, ""),
    ],
    ids=[
        "plain",
        "exactly-the-limit",
        "one-over-the-limit",
        "c0-controls-escaped",
        "del-and-c1-escaped",
        "invalid-utf8-replaced",
        "bytes-cut-at-characters",
        "separators-kept-for-the-line-encoder",
        "escapes-count-against-the-limit",
        "empty",
    ],
)
def test_peer_text_is_escaped_and_bounded(text: str | bytes, limit: int, expected: str) -> None:
    assert bound_text(text, limit) == expected


@given(st.text() | st.binary(), st.integers(1, 300))
def test_bounded_text_fits_its_limit_and_marks_every_cut(text: str | bytes, limit: int) -> None:
    out = bound_text(text, limit)
    assert len(out) <= limit
    assert not any(0x00 <= ord(ch) <= 0x1F or 0x7F <= ord(ch) <= 0x9F for ch in out)
    whole = text if isinstance(text, str) else text.decode("utf-8", "replace")
    if len(whole) > limit:
        assert out.endswith(TRUNCATION_MARK)
    if whole.isprintable() and len(whole) <= limit:
        assert out == whole


@given(st.text(min_size=1), st.integers(1, 50))
def test_a_cut_keeps_the_start_of_the_escaped_text(text: str, limit: int) -> None:
    whole = bound_text(text, 10 * len(text) + 10)  # escaped, never cut
    out = bound_text(text, limit)
    if out != whole:
        assert out.endswith(TRUNCATION_MARK) and whole.startswith(out[:-1])


def test_a_huge_input_costs_only_its_prefix() -> None:
    huge = "\x1b" * 50_000_000  # 50 M characters: escaping all of them would take seconds and GBs
    assert bound_text(huge, 3) == "\\x…"
