"""Domain lists in, one validated name at a time.

Theory of operation
-------------------
A list is read as a stream so a 10-million-line file costs no more memory than
the set of names already seen (needed for de-duplication: about 80-100 bytes
per name in CPython, so ~10 MB per 100k names).  Three formats are accepted and
told apart by the first line that is neither blank nor a ``#`` comment:

* plain text: one name per line; a trailing ``# comment`` is allowed;
* CSV with a header naming a ``domain`` column (Cloudflare Radar top-N export:
  ``domain,rank`` or ``rank,domain,categories``);
* headerless ``rank,domain`` rows (the Tranco list: ``1,google.com``).

CSV rows are split by the ``csv`` module one physical line at a time rather
than over the whole stream: a domain name never spans lines, and parsing per
line keeps a stray quote character from swallowing the rest of the list into
one field.  Every physical line is read with a length cap, so a file without
newlines cannot make the reader buffer it whole.

Whole-source problems (missing file, binary content, CSV header without a
domain column, no names at all) raise :class:`InputError`.  A bad line never
raises: it becomes an :class:`InputItem` with ``domain=None`` and a short,
stable ``reason`` so the scan can record it as ``invalid-input``.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from engine.names import escape_text, normalise_domain

__all__ = [
    "DomainReader",
    "InputError",
    "InputItem",
    "InputStats",
    "count_names",
]

#: Bytes inspected for NUL bytes and invalid UTF-8 before trusting a source as text.
BINARY_SNIFF_BYTES = 64 * 1024
#: Longest physical line read whole; a longer line is consumed and reported invalid.
MAX_LINE_CHARS = 8192


class InputError(Exception):
    """The source as a whole cannot be used (missing, binary, no names, bad CSV header)."""


@dataclass(frozen=True, slots=True)
class InputItem:
    """One candidate name from the list.

    ``raw`` is the name field with surrounding whitespace removed, control and
    format characters escaped, bounded to ``MAX_RAW_CHARS``; ``domain`` is the
    normalised A-label name or ``None``, in which case ``reason`` says why.
    """

    line: int
    raw: str
    domain: str | None
    reason: str | None


@dataclass(slots=True)
class InputStats:
    """Counters updated while a :class:`DomainReader` is iterated.

    ``skipped`` counts blank lines, comment lines and a CSV header.
    """

    lines: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    skipped: int = 0
    format: str = ""


class _PrefixedRaw(io.RawIOBase):
    """A raw stream that replays an already-read prefix, then reads the rest.

    Reason: the binary sniff must also work on stdin, which cannot seek back.
    """

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._prefix = memoryview(prefix)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _sniff_text(prefix: bytes, complete: bool, label: str) -> None:
    """Raise InputError when the first bytes of a source are not UTF-8 text."""
    if b"\x00" in prefix:
        raise InputError(f"{label}: binary file (NUL bytes), expected a text list of domain names")
    try:
        # final=False: the 64 KiB cut may fall inside a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(prefix, final=complete)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{label}: not UTF-8 text (invalid byte at offset {exc.start}), expected a list of domain names"
        ) from None


def _bounded_lines(text: io.TextIOBase) -> Iterator[tuple[str, bool]]:
    """Physical lines without terminator, and whether the line fitted MAX_LINE_CHARS."""
    while True:
        line = text.readline(MAX_LINE_CHARS)
        if not line:
            return
        if line.endswith("\n"):
            yield line[:-1], True
            continue
        if len(line) < MAX_LINE_CHARS:
            yield line, True  # last line without a newline
            return
        # Over-long: drain the rest of the physical line chunk by chunk.
        while True:
            more = text.readline(MAX_LINE_CHARS)
            if not more or more.endswith("\n"):
                break
        yield line, False


def _csv_fields(line: str) -> list[str]:
    return next(csv.reader([line]), [])


def _detect_format(line: str, label: str) -> tuple[str, int]:
    """(format, domain column) from the first name line; a header row is detected here."""
    fields = [f.strip().lower() for f in _csv_fields(line)]
    if "domain" in fields:
        return "csv", fields.index("domain")
    if "," not in line.split("#", 1)[0]:
        return "text", 0
    if fields and fields[0].isdigit():
        return "rank-csv", 1
    raise InputError(
        f"{label}: CSV header has no 'domain' column (found: {escape_text(','.join(fields), 120)})"
    )


class DomainReader:
    """Iterate the names of one list (a path, or ``"-"`` for stdin), once.

    Duplicates (by normalised name) are skipped and counted in ``stats``; the
    set of names seen is the reader's only memory that grows with the list.
    """

    def __init__(self, source: str | os.PathLike[str], *, stdin: BinaryIO | None = None) -> None:
        self.source = source
        self._stdin = stdin
        self.stats = InputStats()
        self._seen: set[str] = set()
        self._started = False

    @property
    def label(self) -> str:
        return "<stdin>" if os.fspath(self.source) == "-" else os.fspath(self.source)

    def __iter__(self) -> Iterator[InputItem]:
        if self._started:
            raise RuntimeError("a DomainReader can be iterated only once")
        self._started = True
        return self._iterate()

    def _open_binary(self) -> tuple[BinaryIO, bool]:
        if os.fspath(self.source) == "-":
            return (self._stdin if self._stdin is not None else sys.stdin.buffer), False
        try:
            # Closed by _iterate's finally.
            return open(self.source, "rb"), True
        except OSError as exc:
            raise InputError(f"{self.label}: cannot read ({exc.strerror or exc})") from None

    def _iterate(self) -> Iterator[InputItem]:
        binary, owned = self._open_binary()
        try:
            try:
                prefix = binary.read(BINARY_SNIFF_BYTES)
            except OSError as exc:
                raise InputError(f"{self.label}: cannot read ({exc.strerror or exc})") from None
            _sniff_text(prefix, len(prefix) < BINARY_SNIFF_BYTES, self.label)
            raw = io.BufferedReader(_PrefixedRaw(prefix, binary))
            # utf-8-sig drops a BOM; "replace" keeps a bad byte past the sniff to its own line.
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline=None)
            yield from self._items(text)
        finally:
            if owned:
                binary.close()
        if self.stats.valid + self.stats.invalid + self.stats.duplicates == 0:
            raise InputError(f"{self.label}: no domain names (empty, or only comments and blank lines)")

    def _items(self, text: io.TextIOBase) -> Iterator[InputItem]:
        stats = self.stats
        column = -1
        for lineno, (line, fitted) in enumerate(_bounded_lines(text), start=1):
            stats.lines = lineno
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                stats.skipped += 1
                continue
            if not fitted:
                stats.invalid += 1
                yield InputItem(lineno, escape_text(stripped), None, "line too long")
                continue
            if column < 0:
                stats.format, column = _detect_format(stripped, self.label)
                if stats.format == "csv":
                    stats.skipped += 1
                    continue
            item = self._item(lineno, stripped, column)
            if item is not None:
                yield item

    def _item(self, lineno: int, line: str, column: int) -> InputItem | None:
        stats = self.stats
        if self.stats.format == "text":
            field = line.split("#", 1)[0].strip()
        else:
            fields = _csv_fields(line)
            if column >= len(fields):
                stats.invalid += 1
                return InputItem(lineno, escape_text(line), None, "missing domain column")
            field = fields[column].strip()
        raw = escape_text(field)
        if "\ufffd" in field:
            stats.invalid += 1
            return InputItem(lineno, raw, None, "invalid utf-8")
        domain, reason = normalise_domain(field)
        if domain is None:
            stats.invalid += 1
            return InputItem(lineno, raw, None, reason)
        if domain in self._seen:
            stats.duplicates += 1
            return None
        self._seen.add(domain)
        stats.valid += 1
        return InputItem(lineno, raw, domain, None)


def count_names(source: str | os.PathLike[str]) -> int | None:
    """Non-blank, non-comment lines of a file, less a CSV header; ``None`` for stdin.

    An upper bound for a progress total: invalid lines count, duplicates are
    not subtracted.  Reads in 1 MiB chunks and keeps at most the first
    ``MAX_LINE_CHARS`` bytes of any line, so memory stays flat.
    """
    if os.fspath(source) == "-":
        return None
    count = 0
    first: bytes | None = None
    carry = b""
    try:
        with open(source, "rb") as stream:
            chunk = stream.read(1 << 20)
            if chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8) :]
            while chunk:
                pieces = (carry + chunk).split(b"\n")
                carry = pieces.pop()[:MAX_LINE_CHARS]
                for piece in pieces:
                    stripped = piece.strip()
                    if stripped and not stripped.startswith(b"#"):
                        count += 1
                        first = first if first is not None else stripped
                chunk = stream.read(1 << 20)
    except OSError as exc:
        raise InputError(f"{os.fspath(source)}: cannot read ({exc.strerror or exc})") from None
    stripped = carry.strip()
    if stripped and not stripped.startswith(b"#"):
        count += 1
        first = first if first is not None else stripped
    if first is not None:
        try:
            kind, _ = _detect_format(first.decode("utf-8-sig", "replace").strip(), os.fspath(source))
        except InputError:
            return count
        if kind == "csv":
            count -= 1
    return count
