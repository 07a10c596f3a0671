"""Domain-list reading: formats, normalisation, whole-source errors, fuzz invariants."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.inputs import (
    BINARY_SNIFF_BYTES,
    DomainReader,
    InputError,
    InputItem,
    count_names,
)
from engine.names import MAX_RAW_CHARS, escape_text, normalise_domain


def read_bytes(data: bytes) -> tuple[list[InputItem], DomainReader]:
    reader = DomainReader("-", stdin=io.BytesIO(data))
    return list(reader), reader


def domains(data: bytes) -> list[str | None]:
    return [item.domain for item in read_bytes(data)[0]]


# --- normalisation -----------------------------------------------------------------------------

VALID = [
    ("plain", "example.com", "example.com"),
    ("uppercase", "ExAmple.COM", "example.com"),
    ("trailing-dot", "example.com.", "example.com"),
    ("surrounding-space", "  example.com\t", "example.com"),
    ("u-label", "bücher.de", "xn--bcher-kva.de"),
    ("uppercase-u-label", "BÜCHER.DE", "xn--bcher-kva.de"),
    ("a-label-kept", "xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("nontransitional-sharp-s", "faß.de", "xn--fa-hia.de"),
    ("ideographic-full-stop", "bücher。de", "xn--bcher-kva.de"),
    ("digits-and-hyphen", "1-2-3.co.uk", "1-2-3.co.uk"),
    ("label-63", "a" * 63 + ".com", "a" * 63 + ".com"),
    ("name-253", ".".join(["a" * 63] * 3 + ["b" * 61]), ".".join(["a" * 63] * 3 + ["b" * 61])),
    ("numeric-inner-label", "123.example", "123.example"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_names_normalise(text: str, expected: str) -> None:
    assert normalise_domain(text) == (expected, None)


INVALID = [
    ("empty", "", "empty name"),
    ("spaces-only", "   ", "empty name"),
    ("only-dot", ".", "empty label"),
    ("double-dot", "a..com", "empty label"),
    ("two-trailing-dots", "example.com..", "empty label"),
    ("leading-dot", ".example.com", "empty label"),
    ("label-64", "a" * 64 + ".com", "label too long (64 > 63)"),
    ("name-254", ".".join(["a" * 63] * 3 + ["b" * 62]), "name too long (254 > 253)"),
    ("huge", "a." * 2000, "name too long"),
    ("underscore", "_dmarc.example.com", "invalid character '_'"),
    ("space-inside", "exa mple.com", "invalid character ' '"),
    ("comma", "1,example.com", "invalid character ','"),
    ("escape-char", "\x1b[2J.com", "invalid character '\\x1b'"),
    ("leading-hyphen", "-a.com", "label starts or ends with a hyphen"),
    ("trailing-hyphen", "a-.com", "label starts or ends with a hyphen"),
    ("single-label", "localhost", "single-label name"),
    ("single-label-dot", "com.", "single-label name"),
    ("ipv4", "192.0.2.1", "ip address"),
    ("ipv4-dot", "192.0.2.1.", "ip address"),
    ("ipv6", "2001:db8::1", "ip address"),
    ("ipv6-brackets", "[::1]", "ip address"),
    ("ipv4-shorthand", "127.1", "numeric top-level label"),
    ("ipv4-full-width", "\uff11\uff12\uff17.0.0.1", "ip address"),
]


@pytest.mark.parametrize(("text", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_names_give_reason(text: str, reason: str) -> None:
    assert normalise_domain(text) == (None, reason)


def test_ascii_labels_with_double_hyphen_are_ldh_not_idna() -> None:
    # Only U-labels and xn-- labels go through IDNA2008 label rules; "ab--cd"
    # is a valid LDH hostname label (RFC 1123 §2.1).
    assert normalise_domain("ab--cd.example") == ("ab--cd.example", None)


@pytest.mark.parametrize(
    "text",
    ["xn--.com", "xn--abc.com", "a\u200db.com", "ab--cü.de", "\u0661\u0041.com"],
    ids=["empty-punycode", "bad-punycode", "zwj-without-context", "hyphens-3-4-in-idn", "bidi-mix"],
)
def test_idna_failures_are_reported_as_idna(text: str) -> None:
    domain, reason = normalise_domain(text)
    assert domain is None
    assert reason is not None and reason.startswith("idna: ")


def test_escape_text_escapes_controls_and_bounds_length() -> None:
    assert escape_text("a\x00b\u202ec") == "a\\x00b\\u202ec"
    long = escape_text("x" * 1000)
    assert len(long) == MAX_RAW_CHARS and long.endswith("…")
    assert len(escape_text("\x01" * 1000)) <= MAX_RAW_CHARS


# --- formats -----------------------------------------------------------------------------------

FORMATS = [
    ("plain", b"example.com\nexample.org\n", ["example.com", "example.org"], "text"),
    ("no-final-newline", b"example.com\nexample.org", ["example.com", "example.org"], "text"),
    ("crlf", b"example.com\r\nexample.org\r\n", ["example.com", "example.org"], "text"),
    (
        "comments-and-blanks",
        b"# list\n\n  \nexample.com # main site, with a comma\n#x\nexample.org\n",
        ["example.com", "example.org"],
        "text",
    ),
    ("bom", b"\xef\xbb\xbfexample.com\n", ["example.com"], "text"),
    (
        "radar-domain-rank",
        b"domain,rank\nexample.com,1\nexample.org,2\n",
        ["example.com", "example.org"],
        "csv",
    ),
    (
        "radar-rank-domain-categories",
        b'rank,domain,categories\n1,example.com,"Search Engines,Technology"\n2,"example.org",\n',
        ["example.com", "example.org"],
        "csv",
    ),
    ("csv-header-case", b" Rank , DOMAIN \n1, example.com \n", ["example.com"], "csv"),
    ("csv-comment-first", b"# exported\ndomain\nexample.com\n", ["example.com"], "csv"),
    ("tranco", b"1,google.com\n2,example.org\n", ["google.com", "example.org"], "rank-csv"),
    ("tranco-quoted", b'1,"google.com"\n2,"example.org"\n', ["google.com", "example.org"], "rank-csv"),
]


@pytest.mark.parametrize(("data", "expected", "kind"), [c[1:] for c in FORMATS], ids=[c[0] for c in FORMATS])
def test_formats_are_detected_and_read(data: bytes, expected: list[str], kind: str) -> None:
    items, reader = read_bytes(data)
    assert [i.domain for i in items] == expected
    assert reader.stats.format == kind


def test_line_numbers_raw_and_reasons_are_kept() -> None:
    items, reader = read_bytes(b"# c\nExample.COM\n\nbad_name.com\n1.2.3.4\n")
    assert items == [
        InputItem(2, "Example.COM", "example.com", None),
        InputItem(4, "bad_name.com", None, "invalid character '_'"),
        InputItem(5, "1.2.3.4", None, "ip address"),
    ]
    stats = reader.stats
    assert (stats.lines, stats.valid, stats.invalid, stats.duplicates, stats.skipped) == (5, 1, 2, 0, 2)


def test_later_duplicates_are_skipped_and_counted() -> None:
    items, reader = read_bytes("a.com\nA.COM.\nb.com\na.com\nbücher.de\nxn--bcher-kva.de\n".encode())
    assert [(i.line, i.domain) for i in items] == [(1, "a.com"), (3, "b.com"), (5, "xn--bcher-kva.de")]
    assert reader.stats.duplicates == 3


def test_csv_row_problems_are_invalid_items_not_errors() -> None:
    items, _ = read_bytes(b'rank,domain\n1\n2,\n3,ok.com\n4,"unterminated.com\n')
    assert [(i.line, i.domain, i.reason) for i in items] == [
        (2, None, "missing domain column"),
        (3, None, "empty name"),
        (4, "ok.com", None),
        (5, "unterminated.com", None),
    ]


def test_overlong_line_is_one_invalid_item_and_reading_continues() -> None:
    items, _ = read_bytes(b"x" * 50_000 + b"\nok.com\n")
    assert [(i.line, i.reason) for i in items] == [(1, "line too long"), (2, None)]
    assert len(items[0].raw) <= MAX_RAW_CHARS


def test_invalid_utf8_after_the_sniff_window_is_an_invalid_line() -> None:
    data = b"a.com\n" * (BINARY_SNIFF_BYTES // 6 + 10) + b"b\xff.com\nc.com\n"
    items, _ = read_bytes(data)
    assert [(i.domain, i.reason) for i in items[-2:]] == [(None, "invalid utf-8"), ("c.com", None)]


def test_multibyte_character_cut_by_sniff_window_is_fine() -> None:
    head = b"a.com\n" + b"#" * (BINARY_SNIFF_BYTES - 9) + b"\nb"
    data = head + "ü.de\n".encode()
    assert data[BINARY_SNIFF_BYTES - 1 : BINARY_SNIFF_BYTES + 1] == "ü".encode()
    items, _ = read_bytes(data)
    assert [i.domain for i in items] == ["a.com", "xn--b-eha.de"]


# --- whole-source errors -----------------------------------------------------------------------

SOURCE_ERRORS = [
    ("empty", b"", "no domain names"),
    ("only-comments", b"# a\n\n# b\n", "no domain names"),
    ("csv-header-only", b"domain,rank\n", "no domain names"),
    ("nul-bytes", b"a.com\n\x00\x01\x02", "binary file"),
    ("invalid-utf8", b"a.com\n\xff\xfe\x00", "binary file"),
    ("latin1", b"caf\xe9.com\n", "not UTF-8"),
    ("header-without-domain", b"rank,host\n1,a.com\n", "no 'domain' column"),
]


@pytest.mark.parametrize(
    ("data", "message"), [c[1:] for c in SOURCE_ERRORS], ids=[c[0] for c in SOURCE_ERRORS]
)
def test_whole_source_problems_raise_input_error(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_bytes(data)


def test_file_source_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(InputError, match=r"missing\.txt: cannot read"):
        list(DomainReader(missing))
    with pytest.raises(InputError, match="cannot read"):
        list(DomainReader(tmp_path))
    binary = tmp_path / "list.gz"
    binary.write_bytes(b"\x1f\x8b\x08\x00\x00\x00")
    with pytest.raises(InputError, match=r"list\.gz: binary file"):
        list(DomainReader(binary))
    with pytest.raises(InputError):
        count_names(missing)


def test_reader_reads_files_and_is_single_use(tmp_path: Path) -> None:
    path = tmp_path / "top.csv"
    path.write_text("rank,domain\n1,a.com\n2,b.com\n")
    reader = DomainReader(str(path))
    assert [i.domain for i in reader] == ["a.com", "b.com"]
    with pytest.raises(RuntimeError):
        iter(reader)


def test_reader_streams_without_reading_everything_first() -> None:
    class Endless(io.RawIOBase):
        """An endless list: a reader that loaded it whole would never yield."""

        def __init__(self) -> None:
            self.n = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
            chunk = b"".join(b"d%d.com\n" % (self.n + i) for i in range(len(buffer) // 16))
            self.n += len(buffer) // 16
            buffer[: len(chunk)] = chunk
            return len(chunk)

    stream = io.BufferedReader(Endless())
    first = []
    for item in DomainReader("-", stdin=stream):
        first.append(item.domain)
        if len(first) == 3:
            break
    assert first == ["d0.com", "d1.com", "d2.com"]


# --- count_names --------------------------------------------------------------------------------

COUNTS = [
    ("plain", b"# c\na.com\n\nb.com\na.com\nbad_\n", 4),
    ("no-final-newline", b"a.com\nb.com", 2),
    ("csv-header-subtracted", b"\xef\xbb\xbfdomain,rank\na.com,1\nb.com,2\n", 2),
    ("tranco", b"1,a.com\n2,b.com\n", 2),
    ("empty", b"", 0),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in COUNTS], ids=[c[0] for c in COUNTS])
def test_count_names(tmp_path: Path, data: bytes, expected: int) -> None:
    path = tmp_path / "list"
    path.write_bytes(data)
    assert count_names(path) == expected


def test_count_names_matches_reader_over_chunk_boundaries(tmp_path: Path) -> None:
    lines = [f"host{i}.example" if i % 7 else f"# comment {i}" for i in range(200_000)]
    path = tmp_path / "big.txt"
    path.write_text("\n".join(lines) + "\n")
    reader = DomainReader(path)
    total = sum(1 for _ in reader)
    assert count_names(path) == total == reader.stats.valid
    assert count_names("-") is None


# --- properties ---------------------------------------------------------------------------------

NAMEISH = st.text(alphabet=st.sampled_from('abcxyz019-._ .ÄüßøЖ日本\u200d\x00#,"'), max_size=80)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), NAMEISH))
def test_normalise_is_total_and_its_output_is_a_fixed_point(text: str) -> None:
    domain, reason = normalise_domain(text)
    assert (domain is None) != (reason is None)
    if domain is not None:
        assert domain.isascii() and domain == domain.lower()
        assert len(domain) <= 253 and domain.count(".") >= 1
        assert all(1 <= len(label) <= 63 for label in domain.split("."))
        assert normalise_domain(domain) == (domain, None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), NAMEISH.map(str.encode)), max_size=20))
def test_any_bytes_give_items_or_input_error(lines: list[bytes]) -> None:
    data = b"\n".join(lines)
    try:
        items, reader = read_bytes(data)
    except InputError:
        return
    stats = reader.stats
    assert len(items) == stats.valid + stats.invalid
    seen = [i.domain for i in items if i.domain is not None]
    assert len(seen) == len(set(seen))
    for item in items:
        assert (item.domain is None) != (item.reason is None)
        assert len(item.raw) <= MAX_RAW_CHARS
        assert all(ch >= " " for ch in item.raw)
