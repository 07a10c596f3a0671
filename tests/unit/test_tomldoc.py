"""engine.tomldoc.parse_toml: the first step every TOML file mxscan reads goes through."""

from __future__ import annotations

from pathlib import Path

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


def test_a_byte_order_mark_before_the_first_table_is_read_as_the_encoding_mark_it_is(tmp_path: Path) -> None:
    """Windows editors write UTF-8 with a BOM; tomllib refused it ("Invalid statement", line 1)."""
    from engine.limitspec import load_limits_toml
    from engine.tomldoc import read_toml_text

    plain, marked = tmp_path / "plain.toml", tmp_path / "marked.toml"
    plain.write_bytes(b'[limits]\n"example.net" = "8/2s"\n')
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert read_toml_text(marked) == read_toml_text(plain)
    assert load_limits_toml(marked) == load_limits_toml(plain)
