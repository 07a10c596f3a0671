"""Edges of the ``_mta-sts`` TXT record core (RFC 8461 §3.1) that mutation testing found unpinned:
the bounds of a reason's detail and of the reason list, the whole record (not only its reason
codes) when there is no record or several, what counts as whitespace around a ";" (RFC 5234
WSP: SP and HTAB only), and that an answer's outcome, not its data, says whether records exist."""

from __future__ import annotations

import pytest

from probes.dns.records import Answer, Dnssec, Outcome
from probes.mtasts.record import (
    MAX_DETAIL,
    MAX_REASONS,
    StsRecord,
    assess_sts_answer,
    assess_sts_txt,
    bound_reasons,
    reason_detail,
)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param("", "", id="empty"),
        pytest.param("a" * MAX_DETAIL, "a" * MAX_DETAIL, id="64-chars-kept-whole"),
        pytest.param("a" * (MAX_DETAIL + 1), "a" * (MAX_DETAIL - 1) + "…", id="65-chars-cut-and-marked"),
        pytest.param("b" * 500, "b" * (MAX_DETAIL - 1) + "…", id="long-cut-and-marked"),
        pytest.param("a\x00b\nc", "a\\x00b\\x0ac", id="controls-escaped"),
    ],
)
def test_reason_detail_keeps_64_characters_marking_a_cut_within_them(text: str, detail: str) -> None:
    assert reason_detail(text) == detail


def test_a_long_invalid_id_is_reported_cut_at_64_characters() -> None:
    record = assess_sts_txt(["v=STSv1; id=" + "x" * 70])
    assert record.reasons == ("invalid-id:" + "x" * (MAX_DETAIL - 1) + "…",)


def test_a_reason_detail_tells_a_control_character_from_a_question_mark() -> None:
    # Before: every unprintable character became "?", so "id=a?b" and "id=a<ESC>b" read the same,
    # and a cut ended in "..." like a peer's own dots; now the one peer-text treatment
    # (engine.peertext): "\xNN" and the truncation mark.
    assert assess_sts_txt(["v=STSv1; id=a?b"]).reasons == ("invalid-id:a?b",)
    assert assess_sts_txt(["v=STSv1; id=a\x1bb"]).reasons == ("invalid-id:a\\x1bb",)
    assert assess_sts_txt(["v=STSv1; id=" + "." * 70]).reasons[0].endswith("." * 63 + "…")


def test_bound_reasons_keeps_exactly_32_and_sums_up_from_33() -> None:
    items = [f"r{i}" for i in range(MAX_REASONS)]
    assert bound_reasons(items) == tuple(items)
    assert bound_reasons([*items, "r0", "r1"]) == tuple(items)  # repeats are not problems
    assert bound_reasons([*items, "extra"]) == (*items[:31], "more-problems:2")


def test_no_record_is_absent_with_nothing_else() -> None:
    assert assess_sts_txt([]) == StsRecord(False, False, "", ("no-sts-record",), (), ())
    misplaced = assess_sts_txt(["id=1; v=STSv1; x=y"])
    assert misplaced == StsRecord(False, False, "", ("no-sts-record", "version-not-first"), (), ())


def test_several_records_are_present_invalid_and_say_nothing_more() -> None:
    # §3.1: more than one record means no available policy; nothing of either is reported.
    record = assess_sts_txt(["v=STSv1; id=1; a=b; id=3", "v=STSv1; id=2; c=d"])
    assert record == StsRecord(True, False, "", ("multiple-sts-records:2",), (), ())


def test_a_record_without_id_has_the_empty_id() -> None:
    record = assess_sts_txt(["v=STSv1; ext=1"])
    assert record == StsRecord(True, False, "", ("missing-id",), (), ("ext=1",))


@pytest.mark.parametrize(
    ("txt", "codes"),
    [
        pytest.param("id=1;\tv=STSv1 ", ("no-sts-record", "version-not-first"), id="sp-htab-are-wsp"),
        pytest.param("id=1;\nv=STSv1", ("no-sts-record",), id="newline-is-not-wsp"),
        pytest.param("id=1;\x0bv=STSv1", ("no-sts-record",), id="vertical-tab-is-not-wsp"),
        pytest.param("id=1; v=STSv1X", ("no-sts-record",), id="longer-token-is-not-the-version"),
        pytest.param("id=1; Xv=STSv1", ("no-sts-record",), id="prefixed-token-is-not-the-version"),
    ],
)
def test_near_misses_strip_only_wsp_around_delimiters(txt: str, codes: tuple[str, ...]) -> None:
    assert assess_sts_txt([txt]).reasons == codes


def test_a_line_break_after_the_id_is_not_trailing_whitespace() -> None:
    # sts-field-delim = *WSP ";" *WSP, WSP = SP / HTAB: CR and LF make the id itself malformed.
    assert assess_sts_txt(["v=STSv1; id=1\r\n"]).reasons == ("invalid-id:1\\x0d\\x0a",)
    assert assess_sts_txt(["v=STSv1; id=1\t "]).reasons == ("trailing-whitespace",)


@pytest.mark.parametrize("outcome", [Outcome.NXDOMAIN, Outcome.NODATA])
def test_a_negative_answer_is_no_record_whatever_data_it_carries(outcome: Outcome) -> None:
    answer = Answer("_mta-sts.example.test", "TXT", outcome, Dnssec.INSECURE, False, None, (),
                    ("v=STSv1; id=1",), "", (), "")  # fmt: skip
    assert assess_sts_answer(answer) == StsRecord(False, False, "", ("no-sts-record",), (), ())
