"""Edges of the MTA-STS policy body core (RFC 8461 §3.2) that mutation testing found unpinned:
the 253-character bound of an mx name, the line-ending fact of bodies without a terminator, the
whole policy (not only its reasons) when the body is empty or too large, the optional final
sts-policy-term of a one-line body, and what counts as whitespace around a value (RFC 5234 WSP:
SP and HTAB only, so a vertical tab or a no-break space is part of the value)."""

from __future__ import annotations

import pytest

from probes.mtasts.policy import (
    MAX_POLICY_BYTES,
    LineEndings,
    Mode,
    StsPolicy,
    is_valid_mx_pattern,
    parse_policy,
)

MISSING = ("missing-version", "missing-mode", "missing-mx", "missing-max-age")
BASE = b"version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n"


def _name(length: int) -> str:
    """A host name of ``length`` characters: 63-character labels, then the rest."""
    labels, left = [], length
    while left > 64:
        labels.append("a" * 63)
        left -= 64
    return ".".join([*labels, "b" * left])


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        pytest.param(_name(253), True, id="253-chars"),
        pytest.param(_name(254), False, id="254-chars"),
        pytest.param("*." + _name(253), True, id="wildcard-and-253-chars"),
        pytest.param("*." + _name(254), False, id="wildcard-and-254-chars"),
    ],
)
def test_an_mx_name_is_at_most_253_characters(pattern: str, ok: bool) -> None:
    assert len(pattern.removeprefix("*.")) in (253, 254)
    assert is_valid_mx_pattern(pattern) is ok


@pytest.mark.parametrize(
    ("body", "endings"),
    [
        pytest.param(b"", LineEndings.NONE, id="empty"),
        pytest.param(b"version: STSv1", LineEndings.NONE, id="one-line-no-terminator"),
        pytest.param(b"version: STSv1\r", LineEndings.NONE, id="bare-cr-is-no-terminator"),
        pytest.param(b"version: STSv1\n", LineEndings.LF, id="lf"),
        pytest.param(b"version: STSv1\r\n", LineEndings.CRLF, id="crlf"),
        pytest.param(b"version: STSv1\r\nmode: none\n", LineEndings.MIXED, id="mixed"),
    ],
)
def test_line_endings_of_short_bodies(body: bytes, endings: LineEndings) -> None:
    assert parse_policy(body).line_endings is endings


def test_an_empty_body_has_no_field_values() -> None:
    assert parse_policy(b"") == StsPolicy(False, "", None, (), None, LineEndings.NONE, MISSING, (), ())


def test_a_too_large_body_is_refused_with_nothing_read() -> None:
    body = BASE + b"x: " + b"y" * MAX_POLICY_BYTES + b"\n"
    reasons = (f"too-large:{len(body)}",)
    assert parse_policy(body) == StsPolicy(False, "", None, (), None, LineEndings.NONE, reasons, (), ())


def test_one_line_with_its_final_terminator_has_no_blank_line() -> None:
    # sts-policy-record ends with an optional sts-policy-term, also after a single field.
    policy = parse_policy(b"version: STSv1\n")
    assert policy.reasons == MISSING[1:] and policy.version == "STSv1"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param(b"mode: enforce\x0b", "invalid-mode:enforce\\x0b", id="trailing-vertical-tab"),
        pytest.param(
            "mode: enforce\u00a0".encode(), "invalid-mode:enforce\u00a0", id="trailing-no-break-space"
        ),
        pytest.param(b"mode:\x0benforce", "invalid-mode:\\x0benforce", id="leading-vertical-tab"),
        pytest.param(b"mode:\x0cenforce", "invalid-mode:\\x0cenforce", id="leading-form-feed"),
        pytest.param(b"mode: Xenforce", "invalid-mode:Xenforce", id="leading-letter-kept"),
    ],
)
def test_only_sp_and_htab_surround_a_value(line: bytes, reason: str) -> None:
    policy = parse_policy(BASE.replace(b"mode: enforce", line))
    assert (policy.mode, policy.reasons) == (None, (reason,))


def test_sp_and_htab_around_a_value_are_not_part_of_it() -> None:
    policy = parse_policy(BASE.replace(b"mode: enforce", b"mode:\t \tenforce \t "))
    assert (policy.valid, policy.mode) == (True, Mode.ENFORCE)
