"""Domain lists at their edges: a comment glued to the name, the last line of a file without
its newline (a comment, a CSV header), and the exact text of the errors a user reads (the
file named, the operating system's reason) from the reader and from ``count_names`` alike."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest

from engine.inputs import DomainReader, InputError, count_names


def names_of(data: bytes) -> list[str | None]:
    return [item.domain for item in DomainReader("-", stdin=io.BytesIO(data))]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a.com#top site\n", ["a.com"]),
        (b"a.com # top site\n", ["a.com"]),
        (b"a.com\t#\n", ["a.com"]),
        (b"b.com#\n", ["b.com"]),
    ],
    ids=["no-space", "spaced", "tab-empty", "empty-comment"],
)
def test_a_trailing_comment_ends_the_name_with_or_without_space(data: bytes, expected: list[str]) -> None:
    assert names_of(data) == expected


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
