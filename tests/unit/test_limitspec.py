"""Per-provider limit specs and the limits TOML."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.limits import Limit
from engine.limitspec import (
    BIG_PROVIDER_LIMIT,
    DEFAULT_PROVIDER_KEY,
    DEFAULT_PROVIDER_LIMIT,
    PER_IP_KEY,
    PER_IP_LIMIT,
    limit_table,
    load_limits_toml,
    parse_limit_spec,
    provider_limit,
)

GOOD = [
    ("google.com=8/2s", "google.com", Limit(8, rate=4.0, burst=8.0), "conc-per-window"),
    ("example.net=4", "example.net", Limit(4), "concurrency-only"),
    ("example.net=10/500ms", "example.net", Limit(10, rate=20.0, burst=10.0), "millisecond-window"),
    ("example.net=3/s", "example.net", Limit(3, rate=3.0, burst=3.0), "bare-second"),
    ("example.net=1/1.5s", "example.net", Limit(1, rate=1 / 1.5, burst=1.0), "fractional-window"),
    (" Google.COM. = 8 / 2s ", "google.com", Limit(8, rate=4.0, burst=8.0), "case-dot-spaces"),
    ("default:provider=2/1s", DEFAULT_PROVIDER_KEY, Limit(2, rate=2.0, burst=2.0), "reserved-key"),
]


@pytest.mark.parametrize(("spec", "key", "limit"), [c[:3] for c in GOOD], ids=[c[3] for c in GOOD])
def test_parse_limit_spec(spec: str, key: str, limit: Limit) -> None:
    assert parse_limit_spec(spec) == (key, limit)


BAD = [
    ("google.com", "expected NAME=LIMIT", "no-equals"),
    ("=8/2s", "not a provider name", "no-name"),
    ("goo gle.com=8", "not a provider name", "space-in-name"),
    ("google.com=", "expected CONCURRENCY", "no-value"),
    ("google.com=0", "between 1 and", "zero-concurrency"),
    ("google.com=99999", "between 1 and", "huge-concurrency"),
    ("google.com=8/0s", "longer than zero", "zero-window"),
    ("google.com=8/2", "expected CONCURRENCY", "window-without-unit"),
    ("google.com=8/2m", "expected CONCURRENCY", "minutes-unit"),
    ("google.com=-1", "expected CONCURRENCY", "negative"),
    ("google.com=٣", "expected CONCURRENCY", "non-ascii-digit"),
]


@pytest.mark.parametrize(("spec", "message"), [c[:2] for c in BAD], ids=[c[2] for c in BAD])
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_limit_spec(spec)


def test_defaults_and_lookup() -> None:
    table = limit_table(["google.com", "outlook.com"])
    assert set(table) == {"google.com", "outlook.com", DEFAULT_PROVIDER_KEY, PER_IP_KEY}
    assert table["google.com"] == table["outlook.com"] == BIG_PROVIDER_LIMIT
    assert parse_limit_spec("x=32/125ms")[1] == BIG_PROVIDER_LIMIT
    assert provider_limit(table, "GOOGLE.com.") == BIG_PROVIDER_LIMIT
    assert provider_limit(table, "tail.example") == DEFAULT_PROVIDER_LIMIT
    assert provider_limit(table, None) == DEFAULT_PROVIDER_LIMIT
    assert provider_limit({}, "x.example") == DEFAULT_PROVIDER_LIMIT
    assert table[PER_IP_KEY] == PER_IP_LIMIT == Limit(1)


def test_load_limits_toml_and_layering(tmp_path: Path) -> None:
    path = tmp_path / "limits.toml"
    path.write_text(
        '[limits]\n"google.com" = "2/1s"\n"Example.NET" = 3\n\n[default]\nprovider = "6/3s"\nip = "2"\n',
        encoding="utf-8",
    )
    loaded = load_limits_toml(path)
    assert loaded == {
        "google.com": Limit(2, rate=2.0, burst=2.0),
        "example.net": Limit(3),
        DEFAULT_PROVIDER_KEY: Limit(6, rate=2.0, burst=6.0),
        PER_IP_KEY: Limit(2),
    }
    table = {
        **limit_table(["google.com", "outlook.com"]),
        **loaded,
        **dict([parse_limit_spec("google.com=1")]),
    }
    assert provider_limit(table, "google.com") == Limit(1)
    assert provider_limit(table, "outlook.com") == BIG_PROVIDER_LIMIT
    assert provider_limit(table, "tail.example") == Limit(6, rate=2.0, burst=6.0)


BAD_TOML = [
    ('[limits]\n"google.com" = "8/2"\n', "expected CONCURRENCY", "bad-value"),
    ('[limits]\n"google.com" = true\n', "must be a string", "bool-value"),
    ('[limit]\n"google.com" = "8"\n', "unknown table", "typo-table"),
    ('[default]\nprovder = "8"\n', "unknown key", "typo-default"),
    ("limits = 3\n", "must be a table", "not-a-table"),
    ("[limits\n", "limits.toml", "toml-syntax"),
]


@pytest.mark.parametrize(("text", "message"), [c[:2] for c in BAD_TOML], ids=[c[2] for c in BAD_TOML])
def test_bad_toml_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "limits.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_limits_toml(path)


@given(st.text(max_size=40) | st.from_regex(r"[a-z.]{1,12}=[0-9]{1,3}(/[0-9]{1,3}(s|ms))?", fullmatch=True))
def test_any_spec_parses_or_raises_value_error(spec: str) -> None:
    try:
        key, limit = parse_limit_spec(spec)
    except ValueError:
        return
    assert key and limit.concurrency >= 1
    assert limit.rate is None or (limit.rate > 0 and limit.burst == limit.concurrency)
