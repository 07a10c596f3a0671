"""A TOML document whose top level may hold only the tables its format names: the common
first step of the files mxscan reads as TOML (the limit table, the provider table), and
the reading of such a file (bounded, UTF-8 strictly)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection
from typing import Any

from engine.textfile import decode_utf8, read_at_most

__all__ = ["MAX_TOML_BYTES", "parse_toml", "read_toml_text"]

#: A limit or provider table is a few KB; a file larger than this is no such table (and
#: ``--limits /dev/zero`` is refused instead of read until memory runs out).
MAX_TOML_BYTES = 16 << 20


def read_toml_text(path: str | os.PathLike[str], *, error: type[ValueError] = ValueError) -> str:
    """The text of the TOML file at ``path``; ``error`` naming it when it is larger than
    ``MAX_TOML_BYTES`` or not UTF-8 (TOML v1.0: "A TOML file must be a valid UTF-8 encoded
    Unicode document"), OSError as ``open`` raises it (a missing file, a directory)."""
    data = read_at_most(path, MAX_TOML_BYTES)
    if data is None:
        raise error(f"{os.fspath(path)}: larger than {MAX_TOML_BYTES} bytes, expected a TOML file")
    text = decode_utf8(data, os.fspath(path), expected="a TOML file (TOML is UTF-8)", error=error)
    # Editors on Windows start UTF-8 files with a byte-order mark, which tomllib refuses as an
    # "Invalid statement" at line 1: it is an encoding mark, not content.
    return text.removeprefix("\ufeff")


def parse_toml(
    text: str,
    where: str,
    tables: Collection[str],
    *,
    expected: str = "",
    error: type[ValueError] = ValueError,
) -> dict[str, Any]:
    """``text`` as TOML, or ``error`` naming ``where``: for a syntax error (tomllib's message,
    which gives the line and column) and for a top-level key outside ``tables`` (an unknown
    table is a typo or a file for another purpose, never silently ignored); ``expected``, when
    given, tells the reader which tables the format has."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: {exc}") from exc
    unknown = set(data) - set(tables)
    if unknown:
        hint = f"; expected {expected}" if expected else ""
        raise error(f"{where}: unknown table(s) {sorted(unknown)}{hint}")
    return data
