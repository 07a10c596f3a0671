"""The MTA-STS policy body core (RFC 8461 §3.2): case tables and properties."""

from __future__ import annotations

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.records import decode, encode, json_schema
from probes.mtasts.policy import (
    MAX_AGE_LIMIT,
    MAX_POLICY_BYTES,
    LineEndings,
    Mode,
    StsPolicy,
    is_valid_mx_pattern,
    parse_policy,
)
from probes.mtasts.record import reason_code

RFC_EXAMPLE = (
    b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
    b"mx: backupmx.example.com\r\nmax_age: 604800\r\n"
)
# Modelled on the policies Gmail and Outlook publish (LF and CRLF respectively).
GMAIL_LIKE = (
    b"version: STSv1\nmode: enforce\nmx: gmail-smtp-in.l.google.com\n"
    b"mx: *.gmail-smtp-in.l.google.com\nmax_age: 86400\n"
)
OUTLOOK_LIKE = b"version: STSv1\r\nmode: enforce\r\nmx: *.olc.protection.outlook.com\r\nmax_age: 604800\r\n"

VALID = [
    pytest.param(
        RFC_EXAMPLE,
        Mode.ENFORCE,
        ("mail.example.com", "*.example.net", "backupmx.example.com"),
        604800,
        LineEndings.CRLF,
        id="rfc8461-3.2-example",
    ),
    pytest.param(
        GMAIL_LIKE,
        Mode.ENFORCE,
        ("gmail-smtp-in.l.google.com", "*.gmail-smtp-in.l.google.com"),
        86400,
        LineEndings.LF,
        id="gmail-like-lf",
    ),
    pytest.param(
        OUTLOOK_LIKE,
        Mode.ENFORCE,
        ("*.olc.protection.outlook.com",),
        604800,
        LineEndings.CRLF,
        id="outlook-like-crlf",
    ),
    pytest.param(
        b"max_age: 0\nmx: a.example\nmode: testing\nversion: STSv1",
        Mode.TESTING,
        ("a.example",),
        0,
        LineEndings.LF,
        id="any-order-no-final-newline-max-age-zero",
    ),
    pytest.param(
        b"version: STSv1\nmode: none\nmax_age: 31557600\n",
        Mode.NONE,
        (),
        MAX_AGE_LIMIT,
        LineEndings.LF,
        id="mode-none-needs-no-mx-max-age-at-limit",
    ),
    pytest.param(
        b"version:STSv1\r\nmode:\t enforce \t\nmx: a.example\r\nmax_age: 0086400",
        Mode.ENFORCE,
        ("a.example",),
        86400,
        LineEndings.MIXED,
        id="wsp-after-colon-and-at-end-mixed-endings",
    ),
    pytest.param(
        b"version: STSv1\nmode: enforce\n"
        + b"".join(b"mx: mx%d.example.com\n" % i for i in range(50))
        + b"max_age: 1",
        Mode.ENFORCE,
        tuple(f"mx{i}.example.com" for i in range(50)),
        1,
        LineEndings.LF,
        id="fifty-mx-patterns-all-kept",
    ),
]


@pytest.mark.parametrize(("body", "mode", "mx", "max_age", "endings"), VALID)
def test_valid_policies(
    body: bytes, mode: Mode, mx: tuple[str, ...], max_age: int, endings: LineEndings
) -> None:
    policy = parse_policy(body)
    assert policy == StsPolicy(True, "STSv1", mode, mx, max_age, endings, (), (), ())


BASE = b"version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n"

INVALID = [
    pytest.param(b"", ("missing-version", "missing-mode", "missing-mx", "missing-max-age"), id="empty-body"),
    pytest.param(b"mode: enforce\nmx: a.b\nmax_age: 1\n", ("missing-version",), id="no-version"),
    pytest.param(b"version: STSv1\nmx: a.b\nmax_age: 1\n", ("missing-mode",), id="no-mode"),
    pytest.param(b"version: STSv1\nmode: enforce\nmax_age: 1\n", ("missing-mx",), id="enforce-without-mx"),
    pytest.param(b"version: STSv1\nmode: testing\nmax_age: 1\n", ("missing-mx",), id="testing-without-mx"),
    pytest.param(b"version: STSv1\nmode: enforce\nmx: a.b\n", ("missing-max-age",), id="no-max-age"),
    pytest.param(BASE.replace(b"STSv1", b"STSv2"), ("invalid-version",), id="version-2"),
    pytest.param(BASE.replace(b"STSv1", b"stsv1"), ("invalid-version",), id="version-value-case"),
    pytest.param(BASE.replace(b"enforce", b"Enforce"), ("invalid-mode",), id="mode-value-case"),
    pytest.param(BASE.replace(b"enforce", b"report"), ("invalid-mode",), id="draft-report-mode"),
    pytest.param(BASE.replace(b"86400", b"-1"), ("invalid-max-age",), id="negative-max-age"),
    pytest.param(BASE.replace(b"86400", b"1d"), ("invalid-max-age",), id="max-age-with-unit"),
    pytest.param(BASE.replace(b"86400", b"12345678901"), ("invalid-max-age",), id="max-age-11-digits"),
    pytest.param(BASE.replace(b"86400", b""), ("invalid-max-age",), id="max-age-empty"),
    pytest.param(BASE.replace(b"86400", b"\xd9\xa3"), ("invalid-max-age",), id="max-age-arabic-digit"),
    pytest.param(BASE.replace(b"86400", b"31557601"), ("max-age-out-of-range",), id="max-age-over-a-year"),
    pytest.param(BASE.replace(b"mail.example.com", b"*"), ("invalid-mx-pattern",), id="mx-bare-star"),
    pytest.param(
        BASE.replace(b"mail.example.com", b"mx*.example.com"), ("invalid-mx-pattern",), id="mx-mid-star"
    ),
    pytest.param(
        BASE.replace(b"mail.example.com", b"*.*.example.com"), ("invalid-mx-pattern",), id="mx-two-stars"
    ),
    pytest.param(
        BASE.replace(b"mail.example.com", b".example.com"), ("invalid-mx-pattern",), id="mx-draft-dot-suffix"
    ),
    pytest.param(
        BASE.replace(b"mail.example.com", b"mail.example.com."), ("invalid-mx-pattern",), id="mx-root-dot"
    ),
    pytest.param(
        BASE.replace(b"mail.example.com", b"-mx.example.com"), ("invalid-mx-pattern",), id="mx-leading-hyphen"
    ),
    pytest.param(
        BASE.replace(b"mail.example.com", b"mx_1.example.com"), ("invalid-mx-pattern",), id="mx-underscore"
    ),
    pytest.param(
        BASE.replace(b"mail.example.com", "b\u00fccher.example".encode()),
        ("invalid-mx-pattern",),
        id="mx-u-label-must-be-a-label",
    ),
    pytest.param(
        BASE.replace(b"mail.example.com", b"a b.example"), ("invalid-mx-pattern",), id="mx-with-space"
    ),
    pytest.param(BASE.replace(b"mail.example.com", b""), ("invalid-mx-pattern",), id="mx-empty"),
    pytest.param(BASE + b"\n", ("blank-line",), id="extra-final-newline"),
    pytest.param(BASE.replace(b"mode", b"\nmode"), ("blank-line",), id="blank-line-inside"),
    pytest.param(BASE.replace(b"mode:", b" mode:"), ("bad-line", "missing-mode"), id="leading-space"),
    pytest.param(BASE.replace(b"mode:", b"mode :"), ("bad-line", "missing-mode"), id="space-before-colon"),
    pytest.param(BASE.replace(b"mode: ", b"mode="), ("bad-line", "missing-mode"), id="equals-not-colon"),
    pytest.param(BASE + b"# comment\n", ("bad-line",), id="comment-line"),
    pytest.param(BASE + b"ext:\n", ("bad-line",), id="extension-without-value"),
    pytest.param(BASE + b"ext: a\x01b\n", ("bad-line",), id="extension-with-control-char"),
    pytest.param(
        BASE.replace(b"\n", b"\r"),
        ("bare-cr", "invalid-version", "missing-mode", "missing-mx", "missing-max-age"),
        id="cr-only-line-endings",
    ),
    pytest.param(b"\xef\xbb\xbf" + BASE, ("utf8-bom",), id="utf8-bom"),
    pytest.param(BASE + b"ext: \xff\n", ("not-utf8",), id="not-utf8-in-extension"),
    pytest.param(
        BASE.replace(b"STSv1", b"STSv1\xc3"), ("not-utf8", "invalid-version"), id="not-utf8-in-version"
    ),
    pytest.param(
        b"<html><body>Not found</body></html>",
        ("bad-line", "missing-version", "missing-mode", "missing-mx", "missing-max-age"),
        id="html-error-page",
    ),
]


@pytest.mark.parametrize(("body", "codes"), INVALID)
def test_invalid_policies(body: bytes, codes: tuple[str, ...]) -> None:
    policy = parse_policy(body)
    assert policy.valid is False
    assert tuple(reason_code(r) for r in policy.reasons) == codes


def test_reasons_carry_line_numbers_and_values() -> None:
    policy = parse_policy(b"version: STSv1\n\nmode: strict\nmx: bad_mx\nmax_age: 1\noops\n")
    assert policy.reasons == (
        "blank-line:2",
        "invalid-mode:strict",
        "invalid-mx-pattern:bad_mx",
        "bad-line:6",
    )
    assert policy.mx == ("bad_mx",)


def test_duplicate_fields_first_counts_with_warning() -> None:
    # §3.2: "If any non-'mx' field is duplicated, all entries except for the first SHALL be ignored."
    body = BASE + b"mode: none\nmax_age: 5\nversion: STSv9\n"
    policy = parse_policy(body)
    assert (policy.valid, policy.mode, policy.max_age, policy.version) == (True, Mode.ENFORCE, 86400, "STSv1")
    assert policy.warnings == ("duplicate-key:mode", "duplicate-key:max_age", "duplicate-key:version")


def test_invalid_first_duplicate_still_counts() -> None:
    policy = parse_policy(BASE.replace(b"mode: enforce", b"mode: bogus\nmode: enforce"))
    assert policy.mode is None and "invalid-mode:bogus" in policy.reasons


def test_unknown_and_wrong_case_keys_are_extensions() -> None:
    policy = parse_policy(BASE + b"Mode: none\nrua: mailto:x@example.com; a=b \xc3\xa9\n")
    assert policy.valid and policy.mode is Mode.ENFORCE
    assert policy.extensions == ("Mode: none", "rua: mailto:x@example.com; a=b \u00e9")
    assert policy.warnings == ("wrong-case-key:Mode",)


def test_out_of_range_max_age_is_still_reported() -> None:
    assert parse_policy(BASE.replace(b"86400", b"9999999999")).max_age == 9_999_999_999


def test_body_over_64_kib_is_refused_unparsed() -> None:
    body = BASE + b"x: " + b"y" * MAX_POLICY_BYTES + b"\n"
    policy = parse_policy(body)
    assert policy.reasons == (f"too-large:{len(body)}",) and policy.mode is None
    exactly = BASE + b"x: " + b"y" * (MAX_POLICY_BYTES - len(BASE) - 4) + b"\n"
    assert len(exactly) == MAX_POLICY_BYTES and parse_policy(exactly).valid


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        ("mail.example.com", True),
        ("*.example.com", True),
        ("localhost", True),
        ("xn--bcher-kva.example", True),
        ("1.2.3.4", True),
        ("a" * 63 + ".example", True),
        ("a" * 64 + ".example", False),
        ("*.", False),
        ("", False),
        ("a..b", False),
        ("ex-.com", False),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_mx_pattern_syntax(pattern: str, ok: bool) -> None:
    assert is_valid_mx_pattern(pattern) is ok


def test_reasons_are_bounded() -> None:
    policy = parse_policy(b"\n" * 60_000 + b"x")
    assert len(policy.reasons) == 32 + 4  # 31 kept, more-problems, then the four missing-* reasons
    assert policy.reasons[31] == "more-problems:59970"
    assert policy.reasons[-1] == "missing-max-age"


def test_policy_round_trips_and_matches_schema() -> None:
    policy = parse_policy(BASE + b"mode: none\nfoo: bar\n\n")
    data = orjson.loads(encode(policy))
    jsonschema.validate(data, json_schema(StsPolicy))
    assert decode(StsPolicy, data) == policy


_LINE_PIECES = st.sampled_from(
    [
        b"version",
        b"mode",
        b"mx",
        b"max_age",
        b":",
        b" ",
        b"\t",
        b"\r",
        b"\n",
        b"\r\n",
        b"STSv1",
        b"enforce",
        b"none",
        b"*.",
        b"a.example",
        b"86400",
        b"\xff",
        b"\xc3\xa9",
        b"\x00",
        b"\xef\xbb\xbf",
    ]
)


@given(st.one_of(st.binary(max_size=300), st.lists(_LINE_PIECES, max_size=40).map(b"".join)))
def test_any_bytes_give_a_policy(body: bytes) -> None:
    policy = parse_policy(body)
    assert isinstance(policy, StsPolicy)
    assert policy.valid == (not policy.reasons)
    if policy.valid:
        assert policy.version == "STSv1" and policy.mode is not None and policy.max_age is not None
        assert 0 <= policy.max_age <= MAX_AGE_LIMIT
        assert policy.mx or policy.mode is Mode.NONE
        assert all(is_valid_mx_pattern(p) for p in policy.mx)


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,8}[a-z0-9])?", fullmatch=True)
_MX = st.tuples(st.booleans(), st.lists(_LABEL, min_size=1, max_size=4)).map(
    lambda t: ("*." if t[0] else "") + ".".join(t[1])
)
_EXT = st.tuples(
    st.from_regex(r"[a-z0-9][a-z0-9_.\-]{0,8}", fullmatch=True).filter(
        lambda k: k not in ("version", "mode", "mx", "max_age")
    ),
    st.from_regex(r"[\x21-\x7e]([\x20-\x7e]{0,10}[\x21-\x7e])?", fullmatch=True),
)


@given(
    mode=st.sampled_from(Mode),
    mx=st.lists(_MX, max_size=5),
    max_age=st.integers(0, MAX_AGE_LIMIT),
    extensions=st.lists(_EXT, max_size=3),
    terminator=st.sampled_from(["\n", "\r\n"]),
    final=st.booleans(),
    pad=st.sampled_from(["", " ", "\t "]),
    order=st.randoms(use_true_random=False),
)
def test_policy_built_from_valid_parts_parses_back(
    mode: Mode,
    mx: list[str],
    max_age: int,
    extensions: list[tuple[str, str]],
    terminator: str,
    final: bool,
    pad: str,
    order: object,
) -> None:
    if mode is not Mode.NONE and not mx:
        mx = ["mx.example"]
    lines = [f"version:{pad}STSv1", f"mode: {mode.value}{pad}", f"max_age: {max_age}"]
    lines += [f"mx:{pad}{p}" for p in mx] + [f"{k}: {v}{pad}" for k, v in extensions]
    # Field order is free (§3.2), but mx order is kept: shuffle, then put mx lines back in order.
    order.shuffle(lines)  # type: ignore[attr-defined]
    mx_iter = iter(f"mx:{pad}{p}" for p in mx)
    lines = [next(mx_iter) if line.startswith("mx:") else line for line in lines]
    body = (terminator.join(lines) + (terminator if final else "")).encode()
    expected_endings = (
        LineEndings.NONE
        if len(lines) == 1 and not final
        else (LineEndings.CRLF if terminator == "\r\n" else LineEndings.LF)
    )
    ext_in_order = tuple(
        line.rstrip(" \t") for line in lines if line.split(":")[0] not in ("version", "mode", "mx", "max_age")
    )
    assert parse_policy(body) == StsPolicy(
        True, "STSv1", mode, tuple(mx), max_age, expected_endings, (), (), ext_in_order
    )
