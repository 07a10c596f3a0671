"""engine.tomldoc.parse_toml: the first step every TOML file mxscan reads goes through."""

from __future__ import annotations

import pytest

from engine.tomldoc import parse_toml


class FormatError(ValueError):
    pass


def test_a_document_with_only_known_tables_is_returned_as_parsed() -> None:
    text = "[limits]\n'example.net' = '8/2s'\n[default]\nip = 2\n"
    assert parse_toml(text, "f.toml", ("limits", "default")) == {
        "limits": {"example.net": "8/2s"},
        "default": {"ip": 2},
    }


def test_a_syntax_error_names_the_source_and_tomllibs_line_and_column() -> None:
    with pytest.raises(ValueError, match=r"^f\.toml: .*\(at line 2, column 3\)$"):
        parse_toml("[limits]\na b\n", "f.toml", ("limits",))


def test_unknown_tables_are_refused_sorted_with_the_formats_tables_when_given() -> None:
    with pytest.raises(ValueError) as caught:
        parse_toml(
            "[zeta]\n[alpha]\n[limits]\n", "f.toml", ("limits", "default"), expected="[limits], [default]"
        )
    assert str(caught.value) == "f.toml: unknown table(s) ['alpha', 'zeta']; expected [limits], [default]"
    with pytest.raises(ValueError) as caught:
        parse_toml("x = 1\n", "provider TOML", ("override",))
    assert str(caught.value) == "provider TOML: unknown table(s) ['x']"


def test_refusals_are_raised_as_the_callers_error_class() -> None:
    with pytest.raises(FormatError):
        parse_toml("[a", "t", (), error=FormatError)
    with pytest.raises(FormatError):
        parse_toml("[a]\n", "t", (), error=FormatError)
