"""Domain lists at their edges: a comment glued to the name, the last line of a file without
its newline (a comment, a CSV header), and the exact text of the errors a user reads (the
file named, the operating system's reason) from the reader and from ``count_names`` alike."""

from __future__ import annotations

import io
import itertools
import sys
import warnings
from pathlib import Path

import pytest

from engine.inputs import BINARY_SNIFF_BYTES, DomainReader, InputError, InputItem, count_names


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a.com#top site\n", ["a.com"]),
        (b"a.com # top site\n", ["a.com"]),
        (b"a.com\t#\n", ["a.com"]),
        (b"b.com#\n", ["b.com"]),
        (b"a.com # one # two\n", ["a.com"]),
        (b"a.com#x,y\nb.com\n", ["a.com", "b.com"]),  # a comma in the first line's comment
        (b"a.com # see a, b # c\nb.com\n", ["a.com", "b.com"]),
    ],
    ids=[
        "no-space",
        "spaced",
        "tab-empty",
        "empty-comment",
        "two-hashes",
        "comma-in-comment",
        "comma-between-hashes",
    ],
)
def test_a_trailing_comment_ends_the_name_with_or_without_space(data: bytes, expected: list[str]) -> None:
    reader = DomainReader("-", stdin=io.BytesIO(data))
    assert [item.domain for item in reader] == expected and reader.stats.format == "text"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a.com\n# the end", 1),
        (b"a.com\n#", 1),
        (b"a.com\n  # indented", 1),
        (b"a.com\nb.com", 2),
        (b"domain,rank", 0),  # a header alone, without its newline
        (b"# only\ndomain", 0),
        (b"a.com", 1),
    ],
    ids=[
        "comment",
        "bare-hash",
        "indented-comment",
        "name",
        "header-alone",
        "header-after-comment",
        "one-name",
    ],
)
def test_count_names_reads_a_last_line_without_newline_as_the_reader_does(
    tmp_path: Path, data: bytes, expected: int
) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(data)
    assert count_names(path) == expected
    try:
        valid = sum(1 for item in DomainReader(path) if item.domain)
    except InputError:
        valid = 0  # no names at all
    assert valid == expected


def test_a_missing_or_unreadable_list_names_the_file_and_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    for action in (lambda: list(DomainReader(missing)), lambda: count_names(missing)):
        with pytest.raises(InputError) as caught:
            action()
        assert str(caught.value) == f"{missing}: cannot read (No such file or directory)"
    with pytest.raises(InputError) as caught:
        list(DomainReader(tmp_path))
    assert str(caught.value) == f"{tmp_path}: cannot read (Is a directory)"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a.com\n\x00\x01", "binary file (NUL bytes), expected a text list of domain names"),
        (b"caf\xe9.com\n", "not UTF-8 text (invalid byte at offset 3), expected a list of domain names"),
    ],
    ids=["nul", "latin1"],
)
def test_count_names_and_the_reader_refuse_binary_content_with_the_same_words(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "list.bin"
    path.write_bytes(data)
    for action in (lambda: list(DomainReader(path)), lambda: count_names(path)):
        with pytest.raises(InputError) as caught:
            action()
        assert str(caught.value) == f"{path}: {message}"


def test_reading_a_list_file_emits_no_warning(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(b"a.com\nb.com\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [item.domain for item in DomainReader(path)] == ["a.com", "b.com"]
        assert count_names(path) == 2


def test_rows_without_their_domain_column_are_each_one_invalid_item() -> None:
    reader = DomainReader("-", stdin=io.BytesIO(b"rank,domain\n1\n2\n3,ok.com\n"))
    assert list(reader) == [
        InputItem(2, "1", None, "missing domain column"),
        InputItem(3, "2", None, "missing domain column"),
        InputItem(4, "ok.com", "ok.com", None),
    ]
    assert (reader.stats.invalid, reader.stats.valid, reader.stats.skipped) == (2, 1, 1)


def test_lines_with_bytes_that_are_not_utf8_past_the_sniff_window_are_each_one_invalid_item() -> None:
    data = b"a.com\n" * (BINARY_SNIFF_BYTES // 6 + 10) + b"b\xff.com\nc\xfe.com\nd.com\n"
    reader = DomainReader("-", stdin=io.BytesIO(data))
    items = list(reader)
    first = BINARY_SNIFF_BYTES // 6 + 11
    assert items[-3:] == [
        InputItem(first, "b\ufffd.com", None, "invalid utf-8"),
        InputItem(first + 1, "c\ufffd.com", None, "invalid utf-8"),
        InputItem(first + 2, "d.com", "d.com", None),
    ]
    assert (reader.stats.invalid, reader.stats.valid, reader.stats.duplicates) == (2, 2, first - 2)


def test_a_csv_header_without_a_domain_column_is_quoted_up_to_120_characters() -> None:
    with pytest.raises(InputError) as caught:
        list(DomainReader("-", stdin=io.BytesIO(b"Rank," + b"x" * 300 + b"\n1,a.com\n")))
    found = ("rank," + "x" * 300)[:119] + "\u2026"
    assert str(caught.value) == f"<stdin>: CSV header has no 'domain' column (found: {found})"


def test_a_dash_reads_the_process_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a.com\n\xff\x00")))
    with pytest.raises(InputError) as caught:
        list(DomainReader("-"))
    assert str(caught.value) == "<stdin>: binary file (NUL bytes), expected a text list of domain names"


def test_a_reader_iterated_twice_says_it_reads_once() -> None:
    reader = DomainReader("-", stdin=io.BytesIO(b"a.com\n"))
    assert [item.domain for item in reader] == ["a.com"]
    with pytest.raises(RuntimeError, match=r"^a DomainReader can be iterated only once$"):
        iter(reader)


def test_skipped_and_invalid_lines_are_each_counted_once() -> None:
    data = b"# list\n\nrank,domain\n1," + b"x" * 9000 + b"\n2," + b"y" * 9000 + b"\n3,a.com\n"
    reader = DomainReader("-", stdin=io.BytesIO(data))
    assert [(item.line, item.reason) for item in reader] == [
        (4, "line too long"),
        (5, "line too long"),
        (6, None),
    ]
    stats = reader.stats
    assert (stats.lines, stats.skipped, stats.invalid, stats.valid, stats.format) == (6, 3, 2, 1, "csv")


class Chunks:
    """A source that gives its bytes in the pieces a pipe might: cut at ``cuts``."""

    def __init__(self, data: bytes, *cuts: int) -> None:
        bounds = [0, *cuts, len(data)]
        self.parts = [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    def read1(self, size: int) -> bytes:
        if not self.parts:
            return b""
        part = self.parts.pop(0)
        if len(part) > size:
            self.parts.insert(0, part[size:])
        return part[:size]


NOT_TEXT = [
    ("utf-8-cut-at-the-end", b"a.com\nb\xc3", "UTF-8", 7),
    ("utf-8-bad-continuation", b"a.com\nb\xc3(.com\n", "UTF-8", 7),
    ("utf-8-after-bom", b"\xef\xbb\xbfa.com\n\xff\n", "UTF-8", 6),
    ("utf-16-le-lone-surrogate-at-the-end", b"\xff\xfea\x00\n\x00\x00\xd8", "UTF-16", 4),
    ("utf-16-be-lone-surrogate", b"\xfe\xff\x00a\x00\n\xd8\x00\x00b", "UTF-16", 4),
]


@pytest.mark.parametrize(("data", "name", "offset"), [c[1:] for c in NOT_TEXT], ids=[c[0] for c in NOT_TEXT])
def test_text_that_does_not_decode_names_the_first_bad_byte_however_the_source_is_cut(
    data: bytes, name: str, offset: int
) -> None:
    """The offset counts bytes after the byte-order mark; a character cut between two reads
    (or by the end of the source) is reported where it starts."""
    expected = f"<stdin>: not {name} text (invalid byte at offset {offset}), expected a list of domain names"
    for cut in range(len(data) + 1):
        with pytest.raises(InputError) as caught:
            list(DomainReader("-", stdin=Chunks(data, cut)))  # type: ignore[arg-type]
        assert str(caught.value) == expected, cut


@pytest.mark.parametrize("first", [1, BINARY_SNIFF_BYTES - 1, BINARY_SNIFF_BYTES])
def test_the_last_byte_of_the_sniff_window_is_checked_however_the_source_is_cut(first: int) -> None:
    data = b"#" * (BINARY_SNIFF_BYTES - 1) + b"\x00\na.com\n"
    with pytest.raises(InputError, match="binary file"):
        list(DomainReader("-", stdin=Chunks(data, first)))  # type: ignore[arg-type]
    past = b"#" * BINARY_SNIFF_BYTES + b"\x00\na.com\n"  # first byte past the window: a line
    assert [i.domain for i in DomainReader("-", stdin=Chunks(past, first))] == ["a.com"]  # type: ignore[arg-type]


class Failing:
    """A source whose read fails after its first bytes (an I/O error on a disk or a pipe)."""

    def __init__(self) -> None:
        self.calls = 0

    def read1(self, size: int) -> bytes:
        self.calls += 1
        if self.calls == 1:
            return b"a.com\n"
        raise OSError(5, "Input/output error")


def test_a_read_error_names_the_source_and_the_reason() -> None:
    with pytest.raises(InputError) as caught:
        list(DomainReader("-", stdin=Failing()))  # type: ignore[arg-type]
    assert str(caught.value) == "<stdin>: cannot read (Input/output error)"


def test_utf32_is_refused_naming_the_source() -> None:
    with pytest.raises(InputError) as caught:
        list(DomainReader("-", stdin=io.BytesIO(b"\xff\xfe\x00\x00a\x00\x00\x00")))
    assert str(caught.value) == "<stdin>: UTF-32 text is not supported; save the list as UTF-8"
