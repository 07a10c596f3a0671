"""exception_text: a crash becomes bounded, informative record text (engine.peertext)."""

from __future__ import annotations

import pytest

from engine.peertext import EXCEPTION_TEXT_LIMIT, exception_text


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        pytest.param(KeyError("x"), "KeyError: 'x'", id="plain"),
        pytest.param(ExceptionGroup("g", [OSError("lost")]), "OSError: lost", id="taskgroup-one"),
        pytest.param(
            ExceptionGroup("g", [ExceptionGroup("inner", [ValueError("v")]), OSError("o")]),
            "ValueError: v (and 1 more)",
            id="nested-groups",
        ),
        pytest.param(RuntimeError("x" * 1000), "RuntimeError: " + "x" * 285 + "…", id="bounded"),
    ],
)
def test_exception_text(exc: BaseException, text: str) -> None:
    assert exception_text(exc) == text
    assert len(exception_text(exc)) <= EXCEPTION_TEXT_LIMIT


def test_an_exception_quoting_a_peer_has_its_control_characters_escaped() -> None:
    # A library error that quotes the peer ("unexpected reply '\x1b[2J...'") reached the record
    # raw before exception details went through the one peer-text helper.
    assert (
        exception_text(ValueError("bad reply '\x1b[2J\r\n'")) == "ValueError: bad reply '\\x1b[2J\\x0d\\x0a'"
    )


def test_a_cut_exception_text_ends_in_the_truncation_mark_within_its_limit() -> None:
    # Before: 297 characters and "..." (indistinguishable from a message that ends in dots).
    text = exception_text(OSError("y" * 400), 20)
    assert text == "OSError: " + "y" * 10 + "…"
