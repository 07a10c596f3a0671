"""The ``_smtp._tls`` TXT record core (RFC 8460 §3): case tables and properties."""

from __future__ import annotations

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.records import decode, encode, json_schema
from probes.dns.records import Answer, Dnssec, Outcome
from probes.mtasts.record import reason_code
from probes.tlsrpt.record import TlsRptRecord, assess_tlsrpt_answer, assess_tlsrpt_txt, rua_problem

NAME = "_smtp._tls.example.test"

VALID = [
    pytest.param(
        ["v=TLSRPTv1;rua=mailto:reports@example.com"],
        ("mailto:reports@example.com",),
        (),
        id="rfc8460-mailto",
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt"],
        ("https://reporting.example.com/v1/tlsrpt",),
        (),
        id="rfc8460-https",
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:sts-reports@google.com"],
        ("mailto:sts-reports@google.com",),
        (),
        id="gmail-like",
    ),
    pytest.param(
        ["v=TLSRPTv1;rua=https://tlsrpt.azurewebsites.net/report"],
        ("https://tlsrpt.azurewebsites.net/report",),
        (),
        id="outlook-like",
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:a@example.com , https://r.example.net:8443/x?y=1;"],
        ("mailto:a@example.com", "https://r.example.net:8443/x?y=1"),
        (),
        id="two-uris-wsp-around-comma-final-delim",
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:a@example.com%2Cb@example.com"],
        ("mailto:a@example.com%2Cb@example.com",),
        (),
        id="two-addrs-encoded-comma",
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:a%21b@example.com"], ("mailto:a%21b@example.com",), (), id="encoded-bang"
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=MAILTO:tls@example.com?subject=tls"],
        ("MAILTO:tls@example.com?subject=tls",),
        (),
        id="scheme-case-and-hfields",
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=https://[2001:db8::1]/r"], ("https://[2001:db8::1]/r",), (), id="https-ipv6-literal"
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=https://u@r.example"], ("https://u@r.example",), (), id="https-userinfo-no-path"
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:%22a%20b%22@[192.0.2.1]"],
        ("mailto:%22a%20b%22@[192.0.2.1]",),
        (),
        id="encoded-quoted-local-part-domain-literal",
    ),
    pytest.param(
        ["v=spf1 -all", "v=TLSRPTv1; rua=mailto:r@example.com; ext=1"],
        ("mailto:r@example.com",),
        ("ext=1",),
        id="other-txt-ignored-extension-kept",
    ),
]


@pytest.mark.parametrize(("txts", "rua", "extensions"), VALID)
def test_valid_records(txts: list[str], rua: tuple[str, ...], extensions: tuple[str, ...]) -> None:
    record = assess_tlsrpt_txt(txts)
    assert record == TlsRptRecord(True, True, rua, (), (), extensions)


INVALID = [
    pytest.param([], False, ("no-tlsrpt-record",), id="nothing"),
    pytest.param(
        ["rua=mailto:a@b.example; v=TLSRPTv1"],
        False,
        ("no-tlsrpt-record", "version-not-first"),
        id="version-not-first",
    ),
    pytest.param(
        ["v=tlsrptv1; rua=mailto:a@b.example"],
        False,
        ("no-tlsrpt-record", "version-wrong-case"),
        id="version-wrong-case",
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:a@b.example"] * 2, True, ("multiple-tlsrpt-records",), id="two-records"
    ),
    pytest.param(["v=TLSRPTv1"], True, ("missing-rua",), id="version-only"),
    pytest.param(["v=TLSRPTv1; ruf=mailto:a@b.example"], True, ("missing-rua",), id="ruf-is-not-rua"),
    pytest.param(
        ["v=TLSRPTv1; RUA=mailto:a@b.example"], True, ("missing-rua",), id="rua-name-case-sensitive"
    ),
    pytest.param(["v=TLSRPTv1; rua="], True, ("empty-rua-uri",), id="rua-empty"),
    pytest.param(["v=TLSRPTv1; rua=mailto:a@b.example,"], True, ("empty-rua-uri",), id="trailing-comma"),
    pytest.param(["v=TLSRPTv1; rua=mailto:"], True, ("invalid-rua-uri",), id="mailto-without-address"),
    pytest.param(["v=TLSRPTv1; rua=mailto:reports"], True, ("invalid-rua-uri",), id="mailto-without-at"),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:@example.com"], True, ("invalid-rua-uri",), id="mailto-empty-local"
    ),
    pytest.param(["v=TLSRPTv1; rua=mailto:a@"], True, ("invalid-rua-uri",), id="mailto-empty-domain"),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:a..b@example.com"], True, ("invalid-rua-uri",), id="mailto-double-dot"
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:a!b@example.com"], True, ("invalid-rua-uri",), id="mailto-raw-bang"
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:a@example.com!10m"], True, ("invalid-rua-uri",), id="dmarc-size-suffix"
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:a%ZZ@example.com"], True, ("invalid-rua-uri",), id="bad-pct-encoding"
    ),
    pytest.param(["v=TLSRPTv1; rua=mailto:a%FF@example.com"], True, ("invalid-rua-uri",), id="pct-not-utf8"),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:a@example.com#x"], True, ("invalid-rua-uri",), id="mailto-fragment"
    ),
    pytest.param(["v=TLSRPTv1; rua=a@example.com"], True, ("invalid-rua-uri",), id="bare-address-no-scheme"),
    pytest.param(["v=TLSRPTv1; rua=https://"], True, ("invalid-rua-uri",), id="https-no-host"),
    pytest.param(["v=TLSRPTv1; rua=https:/r.example/x"], True, ("invalid-rua-uri",), id="https-one-slash"),
    pytest.param(
        ["v=TLSRPTv1; rua=https://r.example:99999/"], True, ("invalid-rua-uri",), id="https-port-too-big"
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=https://r_x.example/"], True, ("invalid-rua-uri",), id="https-underscore-host"
    ),
    pytest.param(["v=TLSRPTv1; rua=https://[zz::1]/"], True, ("invalid-rua-uri",), id="https-bad-ipv6"),
    pytest.param(
        ["v=TLSRPTv1; rua=https://r.example/a b"], True, ("invalid-rua-uri",), id="raw-space-in-uri"
    ),
    pytest.param(
        ['v=TLSRPTv1; rua=mailto:"a b"@example.com'], True, ("invalid-rua-uri",), id="raw-quote-space"
    ),
    pytest.param(["v=TLSRPTv1; rua=http://r.example/"], True, ("unsupported-rua-scheme",), id="http-only"),
    pytest.param(["v=TLSRPTv1; rua=mailto:a@b.example; x"], True, ("bad-syntax",), id="bad-extension"),
    pytest.param(
        ["v=TLSRPTv1 rua=mailto:a@b.example"], True, ("bad-syntax", "missing-rua"), id="missing-delim"
    ),
    pytest.param(
        ["v=TLSRPTv1; rua=mailto:a@b.example "], True, ("trailing-whitespace",), id="trailing-space"
    ),
]


@pytest.mark.parametrize(("txts", "present", "codes"), INVALID)
def test_invalid_records(txts: list[str], present: bool, codes: tuple[str, ...]) -> None:
    record = assess_tlsrpt_txt(txts)
    assert record.present is present
    assert record.valid is False
    assert tuple(reason_code(r) for r in record.reasons) == codes


def test_unsupported_scheme_beside_usable_uri_is_a_warning() -> None:
    record = assess_tlsrpt_txt(["v=TLSRPTv1; rua=ftp://r.example/x,mailto:r@example.com"])
    assert record.valid and record.warnings == ("unsupported-rua-scheme:ftp",)
    assert record.rua == ("ftp://r.example/x", "mailto:r@example.com")


def test_invalid_uri_beside_usable_uri_is_still_invalid() -> None:
    record = assess_tlsrpt_txt(["v=TLSRPTv1; rua=mailto:r@example.com,mailto:broken"])
    assert not record.valid and record.reasons == ("invalid-rua-uri:mailto:broken",)


def test_second_rua_field_is_ignored_with_warning() -> None:
    record = assess_tlsrpt_txt(["v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com"])
    assert record.valid and record.rua == ("mailto:a@example.com",) and record.warnings == ("duplicate-rua",)


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("mailto:r@example.com", None),
        ("https://r.example", None),
        ("https://r.example.:443", None),
        ("mailto:r@example.com,x", "invalid-rua-uri"),
        ("mailto:r@example.com;x", "invalid-rua-uri"),
        ("tel:+1", "unsupported-rua-scheme"),
        ("1http://x", "invalid-rua-uri"),
        ("", "empty-rua-uri"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_rua_problem(uri: str, code: str | None) -> None:
    problem = rua_problem(uri)
    assert (problem and reason_code(problem)) == code


def txt_answer(outcome: Outcome, *data: str) -> Answer:
    """The TXT lookup as the DNS probe records it (data only when ok)."""
    return Answer(NAME, "TXT", outcome, Dnssec.INSECURE, False, 300 if data else None, (), data, "", (), "")


_FAILED = [Outcome.SERVFAIL, Outcome.REFUSED, Outcome.TIMEOUT, Outcome.ERROR]


@pytest.mark.parametrize("outcome", _FAILED)
def test_failed_txt_lookup_is_unknown_never_no_record(outcome: Outcome) -> None:
    """Issue #13 item 9: SERVFAIL, REFUSED, timeout or error at _smtp._tls is unknown, with the
    DNS outcome as the reason; never "no-tlsrpt-record"."""
    assert assess_tlsrpt_answer(txt_answer(outcome)) == TlsRptRecord(
        None, None, (), (f"lookup-failed:{outcome.value}",), (), ()
    )


@pytest.mark.parametrize("outcome", [Outcome.NXDOMAIN, Outcome.NODATA])
def test_definite_absence_is_no_record(outcome: Outcome) -> None:
    assert assess_tlsrpt_answer(txt_answer(outcome)) == TlsRptRecord(
        False, False, (), ("no-tlsrpt-record",), (), ()
    )


def test_answer_with_records_is_judged() -> None:
    txt = "v=TLSRPTv1; rua=mailto:r@example.test"
    assert assess_tlsrpt_answer(txt_answer(Outcome.OK, txt)) == assess_tlsrpt_txt([txt])
    assert assess_tlsrpt_answer(txt_answer(Outcome.OK, txt)).valid is True


@pytest.mark.parametrize(
    "record",
    [
        assess_tlsrpt_txt(["v=TLSRPTv1; rua=ftp://x.example,mailto:a@b.example; z=1"]),
        assess_tlsrpt_answer(txt_answer(Outcome.TIMEOUT)),
    ],
    ids=["judged", "unknown"],
)
def test_record_round_trips_and_matches_schema(record: TlsRptRecord) -> None:
    data = orjson.loads(encode(record))
    jsonschema.validate(data, json_schema(TlsRptRecord))
    assert decode(TlsRptRecord, data) == record


_PIECES = st.sampled_from(
    [
        "v=TLSRPTv1",
        "v=TLSRPTv1;",
        "rua=",
        "mailto:",
        "https://",
        "a@b.example",
        ",",
        ";",
        " ",
        "%2C",
        "%",
        "!",
        "x",
        "[",
        "]",
        ":",
        "@",
        "é",
        "\x00",
    ]
)
_TXT = st.one_of(st.text(max_size=60), st.lists(_PIECES, max_size=12).map("".join))


@given(st.lists(_TXT, max_size=4))
def test_any_input_gives_a_record(txts: list[str]) -> None:
    record = assess_tlsrpt_txt(txts)
    assert isinstance(record, TlsRptRecord)
    assert record.valid == (not record.reasons)
    assert record.present or not record.valid
    if record.valid:
        assert any(rua_problem(uri) is None for uri in record.rua)


_LOCAL = st.from_regex(r"[a-z0-9]+([._+\-][a-z0-9]+){0,2}", fullmatch=True)
_HOST = st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){1,3}", fullmatch=True)
_URI = st.one_of(
    st.tuples(_LOCAL, _HOST).map(lambda t: f"mailto:{t[0]}@{t[1]}"),
    st.tuples(_HOST, st.from_regex(r"(/[a-z0-9]{0,6}){0,3}", fullmatch=True)).map(
        lambda t: f"https://{t[0]}{t[1]}"
    ),
)


@given(st.lists(_URI, min_size=1, max_size=4), st.sampled_from([",", " , ", ",\t"]), st.booleans())
def test_record_built_from_valid_uris_parses_back(uris: list[str], sep: str, final: bool) -> None:
    txt = "v=TLSRPTv1; rua=" + sep.join(uris) + (";" if final else "")
    assert assess_tlsrpt_txt([txt]) == TlsRptRecord(True, True, tuple(uris), (), (), ())
