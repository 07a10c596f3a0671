"""Domain lists in, one validated name at a time.

Theory of operation
-------------------
A list is read as a stream, exactly once, so a 10-million-line file costs no
more memory than the set of names already seen (needed for de-duplication:
about 80-100 bytes per name in CPython, so ~10 MB per 100k names), and a pipe,
a FIFO or a process substitution (``mxscan scan <(zcat list.gz)``) works like a
file.  Only a regular file is read a second time, by :func:`count_names`, for
the progress total; anything else cannot be re-read or may never end.

Text encoding comes from the byte-order mark: none or UTF-8's means UTF-8,
UTF-16 LE/BE (what spreadsheet programs export as "Unicode text") is decoded,
UTF-32 is refused.  CR, CRLF and LF line endings are all read, mixed too.  The
first ``BINARY_SNIFF_BYTES`` are decoded strictly as they arrive, so binary
content fails on its first bytes: a gzip file or ``/dev/zero`` is an error
before anything is counted or scanned, and a slow pipe is not waited on.

Three formats are accepted and told apart by the first line that is neither
blank nor a ``#`` comment:

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
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from engine.checkpoint import DigestSet
from engine.names import escape_text, normalise_domain

__all__ = [
    "DomainReader",
    "InputError",
    "InputItem",
    "InputStats",
    "count_names",
]

#: Bytes (after a byte-order mark) decoded strictly before a source is trusted as text.
BINARY_SNIFF_BYTES = 64 * 1024
#: Longest physical line read whole; a longer line is consumed and reported invalid.
MAX_LINE_CHARS = 8192
#: Bytes asked of the source per read (a pipe gives what it holds, never waits for more).
_READ_BYTES = 64 * 1024
#: Characters per read while counting a regular file's names.
_COUNT_CHUNK_CHARS = 1 << 20
#: Enough leading bytes to tell every byte-order mark apart.
_BOM_BYTES = 4
#: Byte-order marks, longest first: UTF-32 LE's begins with UTF-16 LE's.  ``None``: refused.
_BOMS: tuple[tuple[bytes, str | None], ...] = (
    (codecs.BOM_UTF32_LE, None),
    (codecs.BOM_UTF32_BE, None),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


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


def _encoding(head: bytes, label: str) -> tuple[str, int]:
    """(codec, length of the byte-order mark) from a source's first bytes."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            if codec is None:
                raise InputError(f"{label}: UTF-32 text is not supported; save the list as UTF-8")
            return codec, len(bom)
    return "utf-8", 0


class _TextSource(io.RawIOBase):
    """A list's bytes after the byte-order mark, decoded strictly while they pass
    through for the first ``BINARY_SNIFF_BYTES``.

    Reason: the check must work on stdin and pipes, which cannot seek back, and
    on endless sources (``/dev/zero``), so it looks at bytes as the reader
    consumes them, never ahead: each underlying read takes what is there (one
    ``read1``), so a slow pipe is not waited on to fill the window.
    """

    def __init__(self, read: Callable[[int], bytes], label: str) -> None:
        super().__init__()
        self._read = read
        self._label = label
        # Once seen, the end is final: a terminal would wait for a second Ctrl-D.
        self._eof = False
        head = b""
        while len(head) < _BOM_BYTES and not self._eof:
            head += self._pull(BINARY_SNIFF_BYTES)
        self.encoding, bom = _encoding(head, label)
        self._decoder = codecs.getincrementaldecoder(self.encoding)()
        self._unchecked = BINARY_SNIFF_BYTES
        self._pending = memoryview(self._check(head[bom:]))

    def _pull(self, size: int) -> bytes:
        if self._eof:
            return b""
        try:
            data = self._read(size)
        except OSError as exc:
            raise InputError(f"{self._label}: cannot read ({exc.strerror or exc})") from None
        self._eof = not data
        return data

    def _check(self, data: bytes) -> bytes:
        """``data``, once the part of it inside the window decodes as text without NUL."""
        if self._unchecked <= 0:
            return data
        window = data[: self._unchecked]
        offset = BINARY_SNIFF_BYTES - self._unchecked
        self._unchecked -= len(window)
        try:
            # final only at the end: the window's cut may fall inside a character.
            text = self._decoder.decode(window, final=self._eof)
        except UnicodeDecodeError as exc:
            if self.encoding == "utf-8" and b"\x00" in window:
                raise self._binary() from None
            name = self.encoding.upper().removesuffix("-LE").removesuffix("-BE")
            # The decoder decodes the bytes it carried over (a character cut by the previous
            # read) followed by the window: the bad sequence may start before the window.
            at = offset - (len(exc.object) - len(window)) + max(exc.start, 0)
            raise InputError(
                f"{self._label}: not {name} text (invalid byte at offset {at}), "
                "expected a list of domain names"
            ) from None
        if "\x00" in text:
            raise self._binary()
        return data

    def _binary(self) -> InputError:
        return InputError(f"{self._label}: binary file (NUL bytes), expected a text list of domain names")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        if not self._pending:
            data = self._pull(len(buffer))
            self._pending = memoryview(self._check(data))
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _open_text(source: BinaryIO, label: str) -> io.TextIOWrapper:
    """``source`` as text: encoding from its byte-order mark, CR/CRLF/LF read as one newline."""
    read1 = getattr(source, "read1", None)
    raw = _TextSource(read1 if callable(read1) else source.read, label)
    # "replace" keeps a bad byte past the checked window to its own line (reported invalid).
    buffered = io.BufferedReader(raw, _READ_BYTES)
    return io.TextIOWrapper(buffered, encoding=raw.encoding, errors="replace", newline=None)


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


def _csv_fields(line: str) -> list[str] | None:
    """The fields of one CSV row; ``None`` when the csv module refuses it."""
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        # Lines come newline-translated, so a bare CR (the module's one refusal
        # of a single line) cannot reach here; kept total all the same.
        return None


def _detect_format(line: str, label: str) -> tuple[str, int]:
    """(format, domain column) from the first name line; a header row is detected here."""
    fields = [f.strip().lower() for f in _csv_fields(line) or [line]]
    if "domain" in fields:
        return "csv", fields.index("domain")
    if "," not in line.split("#", 1)[0]:
        return "text", 0
    if fields and fields[0].isdigit():
        return "rank-csv", 1
    raise InputError(
        f"{label}: CSV header has no 'domain' column (found: {escape_text(','.join(fields), 120)})"
    )


def _label(source: str | os.PathLike[str]) -> str:
    return "<stdin>" if os.fspath(source) == "-" else os.fspath(source)


class DomainReader:
    """Iterate the names of one list (a path, or ``"-"`` for stdin), once.

    Duplicates (by normalised name) are skipped and counted in ``stats``; the
    set of names seen is the reader's only memory that grows with the list, kept as
    8-byte digests (``DigestSet``: ~18 bytes per name instead of ~110 for the names).
    """

    def __init__(self, source: str | os.PathLike[str], *, stdin: BinaryIO | None = None) -> None:
        self.source = source
        self._stdin = stdin
        self.stats = InputStats()
        self._seen = DigestSet()
        self._started = False

    @property
    def label(self) -> str:
        return _label(self.source)

    def __iter__(self) -> Iterator[InputItem]:
        if self._started:
            raise RuntimeError("a DomainReader can be iterated only once")
        self._started = True
        return self._iterate()

    def _iterate(self) -> Iterator[InputItem]:
        if os.fspath(self.source) == "-":
            stdin = self._stdin if self._stdin is not None else sys.stdin.buffer
            yield from self._items(_open_text(stdin, self.label))
        else:
            with _open_file(self.source) as binary:
                yield from self._items(_open_text(binary, self.label))
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
            if fields is None:
                stats.invalid += 1
                return InputItem(lineno, escape_text(line), None, "unreadable csv row")
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


def _open_file(source: str | os.PathLike[str]) -> BinaryIO:
    try:
        # Unbuffered: _TextSource takes what one read returns, and the text layer buffers.
        return open(source, "rb", buffering=0)
    except OSError as exc:
        raise InputError(f"{_label(source)}: cannot read ({exc.strerror or exc})") from None


def count_names(source: str | os.PathLike[str]) -> int | None:
    """Non-blank, non-comment lines of a regular file, less a CSV header; else ``None``.

    ``None`` for stdin and for anything that is not a regular file (a FIFO, a
    process substitution, a device): those can be read only once, or never end,
    so the scan streams them without a total.  An upper bound for a progress
    total: invalid lines count, duplicates are not subtracted.  The file is
    decoded as :class:`DomainReader` decodes it, in chunks, keeping at most
    ``MAX_LINE_CHARS`` of any line, so memory stays flat.
    """
    if os.fspath(source) == "-":
        return None
    label = _label(source)
    try:
        if not stat.S_ISREG(os.stat(source).st_mode):
            return None
    except OSError as exc:
        raise InputError(f"{label}: cannot read ({exc.strerror or exc})") from None
    count = 0
    first: str | None = None
    carry = ""
    with _open_file(source) as binary:
        text = _open_text(binary, label)
        while chunk := text.read(_COUNT_CHUNK_CHARS):
            pieces = (carry + chunk).split("\n")
            carry = pieces.pop()[:MAX_LINE_CHARS]
            names = [line for line in map(str.strip, pieces) if line and line[0] != "#"]
            count += len(names)
            first = names[0] if first is None and names else first
    last = carry.strip()
    if last and last[0] != "#":
        count += 1
        first = last if first is None else first
    if first is not None:
        try:
            kind, _ = _detect_format(first[:MAX_LINE_CHARS], label)
        except InputError:
            return count
        if kind == "csv":
            count -= 1
    return count
