"""The ``_mta-sts`` TXT record core (RFC 8461 §3.1): case tables and properties."""

from __future__ import annotations

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.records import decode, encode, json_schema
from probes.dns.records import Answer, Dnssec, Outcome
from probes.mtasts.record import StsRecord, assess_sts_answer, assess_sts_txt, lookup_failure, reason_code

NAME = "_mta-sts.example.test"

VALID = [
    pytest.param(["v=STSv1; id=20160831085700Z;"], "20160831085700Z", (), id="rfc8461-3.1-example"),
    pytest.param(["v=STSv1; id=20190429T010101;"], "20190429T010101", (), id="gmail-style-timestamp-id"),
    pytest.param(["v=STSv1;id=1"], "1", (), id="no-whitespace-no-final-delim"),
    pytest.param(["v=STSv1 ;\tid=abc ; "], "abc", (), id="wsp-around-delims-allowed-by-abnf"),
    pytest.param(["v=STSv1; id=" + "a" * 32], "a" * 32, (), id="id-32-chars-is-the-max"),
    pytest.param(["v=STSv1; id=1; ext=v_1"], "1", ("ext=v_1",), id="unknown-field-kept-as-extension"),
    pytest.param(["v=STSv1; foo.bar-1=x:y; id=7"], "7", ("foo.bar-1=x:y",), id="id-need-not-come-second"),
    pytest.param(["v=spf1 -all", "v=STSv1; id=9"], "9", (), id="other-txt-records-ignored"),
    pytest.param(["hello", "v=STSv1; id=9", "id=2; v=STSv1"], "9", (), id="misplaced-copy-is-discarded"),
]


@pytest.mark.parametrize(("txts", "record_id", "extensions"), VALID)
def test_valid_records(txts: list[str], record_id: str, extensions: tuple[str, ...]) -> None:
    record = assess_sts_txt(txts)
    assert record == StsRecord(True, True, record_id, (), (), extensions)


INVALID = [
    pytest.param([], False, ("no-sts-record",), id="no-txt-at-all"),
    pytest.param(["v=spf1 -all"], False, ("no-sts-record",), id="only-unrelated-txt"),
    pytest.param(["id=1; v=STSv1"], False, ("no-sts-record", "version-not-first"), id="version-not-first"),
    pytest.param([" v=STSv1; id=1"], False, ("no-sts-record", "version-not-first"), id="leading-space"),
    pytest.param(["V=stsv1; id=1"], False, ("no-sts-record", "version-wrong-case"), id="version-wrong-case"),
    pytest.param(["v=STSv10; id=1"], False, ("no-sts-record",), id="other-version-is-not-ours"),
    pytest.param(["v=STSv1; id=1", "v=STSv1; id=2"], True, ("multiple-sts-records",), id="two-records"),
    pytest.param(["v=STSv1; id=1", "v=STSv1; id=1"], True, ("multiple-sts-records",), id="two-equal-records"),
    pytest.param(["v=STSv1"], True, ("missing-id",), id="version-only"),
    pytest.param(["v=STSv1;"], True, ("missing-id",), id="version-and-delim-only"),
    pytest.param(["v=STSv1; ext=1"], True, ("missing-id",), id="extension-but-no-id"),
    pytest.param(["v=STSv1; ID=1"], True, ("missing-id",), id="id-name-is-case-sensitive"),
    pytest.param(["v=STSv1; id="], True, ("invalid-id",), id="empty-id"),
    pytest.param(["v=STSv1; id=" + "a" * 33], True, ("invalid-id",), id="id-33-chars"),
    pytest.param(["v=STSv1; id=2019-04-29"], True, ("invalid-id",), id="id-with-dashes"),
    pytest.param(["v=STSv1; id=abc\u00e9"], True, ("invalid-id",), id="id-non-ascii-letter"),
    pytest.param(["v=STSv1; id=1 "], True, ("trailing-whitespace",), id="trailing-space-without-delim"),
    pytest.param(["v=STSv1 id=1"], True, ("bad-syntax", "missing-id"), id="missing-delimiter"),
    pytest.param(["v=STSv1;; id=1"], True, ("bad-syntax",), id="empty-field"),
    pytest.param(["v=STSv1; id=1;;"], True, ("bad-syntax",), id="two-final-delims"),
    pytest.param(["v=STSv1; id=1; junk"], True, ("bad-syntax",), id="field-without-equals"),
    pytest.param(["v=STSv1; id=1; x=a b"], True, ("bad-syntax",), id="space-in-ext-value"),
    pytest.param(["v=STSv1; id=1; x=a=b"], True, ("bad-syntax",), id="equals-in-ext-value"),
    pytest.param(["v=STSv1; id=1; _x=1"], True, ("bad-syntax",), id="ext-name-starts-with-underscore"),
    pytest.param(["v=STSv1; id=1; " + "x" * 33 + "=1"], True, ("bad-syntax",), id="ext-name-33-chars"),
    pytest.param(["v=STSv1,id=1"], True, ("bad-syntax", "missing-id"), id="comma-not-semicolon"),
]


@pytest.mark.parametrize(("txts", "present", "codes"), INVALID)
def test_invalid_records(txts: list[str], present: bool, codes: tuple[str, ...]) -> None:
    record = assess_sts_txt(txts)
    assert record.present is present
    assert record.valid is False
    assert tuple(reason_code(r) for r in record.reasons) == codes


def test_repeated_id_first_counts_with_warning() -> None:
    # §3.2 "all entries except for the first SHALL be ignored", applied to the record too.
    record = assess_sts_txt(["v=STSv1; id=first; id=second"])
    assert (record.valid, record.id, record.warnings) == (True, "first", ("duplicate-id",))


def test_id_reported_even_when_record_is_invalid() -> None:
    record = assess_sts_txt(["v=STSv1; id=abc; bad field"])
    assert (record.valid, record.id) == (False, "abc")


def test_multiple_records_leave_no_id() -> None:
    assert assess_sts_txt(["v=STSv1; id=1", "v=STSv1; id=2"]).id == ""


def test_reason_details_are_bounded_and_printable() -> None:
    record = assess_sts_txt(["v=STSv1; id=" + "\x00" * 500])
    assert all(len(r) < 100 and r.isprintable() for r in record.reasons)


def test_reasons_are_bounded_and_deduplicated() -> None:
    record = assess_sts_txt(["v=STSv1" + "".join(f"; bad{i}" for i in range(100)) + ";;;;;"])
    assert len(record.reasons) == 33 and record.reasons[31] == "more-problems:70"
    assert record.reasons[-1] == "missing-id"


def txt_answer(outcome: Outcome, *data: str) -> Answer:
    """The TXT lookup as the DNS probe records it (data only when ok)."""
    return Answer(NAME, "TXT", outcome, Dnssec.INSECURE, False, 300 if data else None, (), data, "", (), "")


_FAILED = [Outcome.SERVFAIL, Outcome.REFUSED, Outcome.TIMEOUT, Outcome.ERROR]


@pytest.mark.parametrize("outcome", _FAILED)
def test_failed_txt_lookup_is_unknown_never_no_record(outcome: Outcome) -> None:
    """Issue #13 item 9: SERVFAIL, REFUSED, timeout or error at _mta-sts is unknown, with the
    DNS outcome as the reason; never "no-sts-record"."""
    expected = StsRecord(None, None, "", (f"lookup-failed:{outcome.value}",), (), ())
    assert assess_sts_answer(txt_answer(outcome)) == expected
    assert lookup_failure(txt_answer(outcome)) == f"lookup-failed:{outcome.value}"


@pytest.mark.parametrize("outcome", [Outcome.NXDOMAIN, Outcome.NODATA, Outcome.OK])
def test_definite_answers_are_judged(outcome: Outcome) -> None:
    data = ("v=STSv1; id=7",) if outcome is Outcome.OK else ()
    assert assess_sts_answer(txt_answer(outcome, *data)) == assess_sts_txt(data)
    assert lookup_failure(txt_answer(outcome, *data)) is None


@pytest.mark.parametrize(
    "record",
    [assess_sts_txt(["v=STSv1; id=1; x=y; id=2"]), assess_sts_answer(txt_answer(Outcome.SERVFAIL))],
    ids=["judged", "unknown"],
)
def test_record_round_trips_and_matches_schema(record: StsRecord) -> None:
    data = orjson.loads(encode(record))
    jsonschema.validate(data, json_schema(StsRecord))
    assert decode(StsRecord, data) == record


_PIECES = st.sampled_from(["v=STSv1", "v=STSv1;", "id=", ";", " ", "\t", "=", "abc", "1", "x", "é", "\x00"])
_TXT = st.one_of(st.text(max_size=60), st.lists(_PIECES, max_size=12).map("".join))


@given(st.lists(_TXT, max_size=4))
def test_any_input_gives_a_record(txts: list[str]) -> None:
    record = assess_sts_txt(txts)
    assert isinstance(record, StsRecord)
    assert record.valid == (not record.reasons)
    assert record.present or not record.valid
    if record.valid:
        assert 1 <= len(record.id) <= 32 and record.id.isascii() and record.id.isalnum()


_ID = st.text(alphabet="abcXYZ0189", min_size=1, max_size=32)
_EXT = st.tuples(
    st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,10}", fullmatch=True).filter(lambda n: n != "id"),
    st.from_regex(r"[\x21-\x3a\x3c\x3e-\x7e]{1,10}", fullmatch=True),
).map("=".join)


@given(_ID, st.lists(_EXT, max_size=3), st.sampled_from([";", " ; ", ";\t"]), st.booleans())
def test_record_built_from_valid_parts_parses_back(
    record_id: str, extensions: list[str], delim: str, final_delim: bool
) -> None:
    txt = delim.join(["v=STSv1", f"id={record_id}", *extensions]) + (delim if final_delim else "")
    assert assess_sts_txt([txt]) == StsRecord(True, True, record_id, (), (), tuple(extensions))
