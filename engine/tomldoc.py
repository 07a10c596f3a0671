"""A TOML document whose top level may hold only the tables its format names: the common
first step of the files mxscan reads as TOML (the limit table, the provider table)."""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from typing import Any

__all__ = ["parse_toml"]


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
