"""MX pattern matching and coverage (RFC 8461 §4.1): case tables and properties."""

from __future__ import annotations

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.records import decode, encode, json_schema
from probes.mtasts.match import Coverage, HostCoverage, coverage, mx_matches, normalize_name

CASES = [
    # RFC 8461 §4.1: "*.example.com" matches "mail.example.com"
    # but not "example.com" or "foo.bar.example.com".
    ("*.example.com", "mail.example.com", True, "rfc-wildcard-one-label"),
    ("*.example.com", "example.com", False, "rfc-wildcard-not-bare-suffix"),
    ("*.example.com", "foo.bar.example.com", False, "rfc-wildcard-not-two-labels"),
    ("mail.example.com", "mail.example.com", True, "exact"),
    ("mail.example.com", "mail2.example.com", False, "exact-differs"),
    ("mail.example.com", "foo.mail.example.com", False, "exact-is-not-suffix"),
    ("MAIL.Example.COM", "mail.example.com", True, "case-insensitive-pattern"),
    ("*.example.com", "MX1.EXAMPLE.COM", True, "case-insensitive-host"),
    ("mail.example.com.", "mail.example.com", True, "pattern-root-dot-ignored"),
    ("mail.example.com", "mail.example.com.", True, "host-root-dot-ignored"),
    ("*.example.com", "mx.example.com.", True, "wildcard-host-root-dot"),
    ("*.example.com", ".example.com", False, "wildcard-needs-non-empty-label"),
    ("*.example.com", "mailexample.com", False, "wildcard-needs-label-boundary"),
    ("*example.com", "mailexample.com", False, "partial-wildcard-matches-nothing"),
    ("mx*.example.com", "mx1.example.com", False, "mid-label-star-matches-nothing"),
    ("*.*.example.com", "a.b.example.com", False, "two-wildcards-match-nothing"),
    ("*", "com", False, "bare-star"),
    ("*.", "com", False, "star-dot"),
    ("", "", False, "empty-pattern-and-host"),
    ("mail.example.com", "", False, "empty-host"),
    (".", ".", False, "null-mx-root"),
    ("b\u00fccher.example", "xn--bcher-kva.example", True, "u-label-pattern-vs-a-label-host"),
    ("*.xn--bcher-kva.example", "mx.b\u00fccher.example", True, "a-label-pattern-vs-u-label-host"),
    ("XN--BCHER-KVA.example", "xn--bcher-kva.example", True, "a-label-case"),
    ("gmail-smtp-in.l.google.com", "gmail-smtp-in.l.google.com", True, "gmail-primary"),
    ("*.gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com", True, "gmail-alt"),
    ("*.olc.protection.outlook.com", "outlook-com.olc.protection.outlook.com", True, "outlook"),
]


@pytest.mark.parametrize(("pattern", "host", "expected"), [c[:3] for c in CASES], ids=[c[3] for c in CASES])
def test_mx_matches(pattern: str, host: str, expected: bool) -> None:
    assert mx_matches(pattern, host) is expected


def test_normalize_name() -> None:
    assert normalize_name("Mail.B\u00fccher.Example.") == "mail.xn--bcher-kva.example"
    assert normalize_name("a" + "\u00e9" * 70 + ".example") is None  # no A-label fits in 63 octets
    assert normalize_name("a..example") is None
    assert normalize_name(".") is None  # the null MX (RFC 7505) is no host


def test_coverage_gmail_like() -> None:
    hosts = ["gmail-smtp-in.l.google.com"] + [f"alt{i}.gmail-smtp-in.l.google.com" for i in range(1, 5)]
    cov = coverage(["gmail-smtp-in.l.google.com", "*.gmail-smtp-in.l.google.com"], hosts)
    assert cov.all_covered and cov.uncovered == () and cov.stale_patterns == ()
    assert cov.hosts[0] == HostCoverage("gmail-smtp-in.l.google.com", "gmail-smtp-in.l.google.com")
    assert {h.pattern for h in cov.hosts[1:]} == {"*.gmail-smtp-in.l.google.com"}


def test_coverage_uncovered_and_stale() -> None:
    cov = coverage(
        ["old-mx.example.com", "*.example.com", "mx1.example.com"],
        ["mx1.example.com", "backup.example.net", "MX1.example.com."],
    )
    assert cov == Coverage(
        hosts=(
            HostCoverage("mx1.example.com", "*.example.com"),  # the first matching pattern in policy order
            HostCoverage("backup.example.net", None),
        ),
        uncovered=("backup.example.net",),
        stale_patterns=("old-mx.example.com",),
        all_covered=False,
    )


def test_coverage_without_mx_hosts_is_not_all_covered() -> None:
    cov = coverage(["mx.example.com"], [])
    assert (cov.all_covered, cov.stale_patterns) == (False, ("mx.example.com",))


def test_coverage_round_trips_and_matches_schema() -> None:
    cov = coverage(["*.example.com", "x.example.org"], ["a.example.com", "b.example.net"])
    data = orjson.loads(encode(cov))
    jsonschema.validate(data, json_schema(Coverage))
    assert decode(Coverage, data) == cov


def _reference(pattern: str, host: str) -> bool:
    """An independent reading of §4.1 for ASCII names: compare label lists."""
    p = pattern.lower()[:-1] if pattern.endswith(".") else pattern.lower()
    h = host.lower()[:-1] if host.endswith(".") else host.lower()
    plabels, hlabels = p.split("."), h.split(".")
    if "" in plabels or "" in hlabels or any("*" in label for label in plabels[1:]):
        return False
    if plabels[0] == "*":
        return len(plabels) > 1 and len(hlabels) == len(plabels) and hlabels[1:] == plabels[1:]
    return "*" not in plabels[0] and plabels == hlabels


# A tiny alphabet so that random names collide often.
_LABEL = st.text(alphabet="aB-1", min_size=0, max_size=3)
_NAME = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_PATTERN = st.one_of(
    _NAME,
    _NAME.map(lambda n: "*." + n),
    st.text(alphabet="aB*.", max_size=8),
)
_DOT = st.sampled_from(["", "."])


@given(_PATTERN, _NAME, _DOT, _DOT)
def test_matcher_agrees_with_reference(pattern: str, host: str, pdot: str, hdot: str) -> None:
    assert mx_matches(pattern + pdot, host + hdot) == _reference(pattern + pdot, host + hdot)


@given(st.lists(_LABEL.filter(bool), min_size=1, max_size=4), _LABEL.filter(bool))
def test_wildcard_matches_exactly_one_more_label(suffix: list[str], first: str) -> None:
    name = ".".join(suffix)
    assert mx_matches("*." + name, f"{first}.{name}")
    assert not mx_matches("*." + name, name)
    assert not mx_matches("*." + name, f"{first}.{first}.{name}")


@given(st.text(max_size=30), st.text(max_size=30))
def test_any_strings_give_a_bool(pattern: str, host: str) -> None:
    assert mx_matches(pattern, host) in (True, False)


@given(st.lists(_PATTERN, max_size=5), st.lists(_NAME, max_size=5))
def test_coverage_agrees_with_mx_matches(patterns: list[str], hosts: list[str]) -> None:
    cov = coverage(patterns, hosts)
    for item in cov.hosts:
        matching = [p for p in patterns if mx_matches(p, item.host)]
        assert item.pattern == (matching[0] if matching else None)
    assert set(cov.uncovered) == {h.host for h in cov.hosts if h.pattern is None}
    assert set(cov.stale_patterns) == {p for p in patterns if not any(mx_matches(p, h) for h in hosts)}
    assert cov.all_covered == (bool(hosts) and all(any(mx_matches(p, h) for p in patterns) for h in hosts))


@pytest.mark.parametrize("name", ["mail.*.example.com", "a*.example.com", "mail.example.*"])
def test_a_star_outside_the_leftmost_label_matches_nothing_not_even_itself(name: str) -> None:
    """RFC 8461 §4.1: "*" is only a wildcard as the whole left-most label; a pattern with a "*"
    elsewhere matches no host, even one spelled exactly like it."""
    assert not mx_matches(name, name)


def test_coverage_keeps_each_unusable_host_apart() -> None:
    """Hosts that are no usable name (no normalised form) are deduplicated by their text, not
    all merged into one."""
    cov = coverage(["*.example.com"], ["a..example.com", "b..example.com", "a..example.com"])
    assert [h.host for h in cov.hosts] == ["a..example.com", "b..example.com"]
    assert cov.uncovered == ("a..example.com", "b..example.com")


def test_coverage_skips_a_repeated_host_and_goes_on() -> None:
    """A host listed twice (any spelling) counts once, and the hosts after it still count."""
    cov = coverage(
        ["mx1.example.com", "mx2.example.com"], ["mx1.example.com", "MX1.example.com.", "mx2.example.com"]
    )
    assert [h.pattern for h in cov.hosts] == ["mx1.example.com", "mx2.example.com"]
    assert cov.all_covered and cov.stale_patterns == ()
