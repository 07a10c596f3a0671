"""Domain-list reading: formats, normalisation, whole-source errors, fuzz invariants."""

from __future__ import annotations

import codecs
import io
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.inputs import (
    BINARY_SNIFF_BYTES,
    DomainReader,
    InputError,
    InputItem,
    _csv_fields,
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
    ("cr-only", b"example.com\rexample.org\r", ["example.com", "example.org"], "text"),
    ("cr-only-csv", b"domain,rank\rexample.com,1\rexample.org,2", ["example.com", "example.org"], "csv"),
    (
        "mixed-endings",
        b"a.example\rb.example\r\nc.example\nd.example\n\re.example",
        ["a.example", "b.example", "c.example", "d.example", "e.example"],
        "text",
    ),
    ("bom", b"\xef\xbb\xbfexample.com\n", ["example.com"], "text"),
    ("utf-8-bom-csv", b"\xef\xbb\xbfdomain,rank\r\nexample.com,1\r\n", ["example.com"], "csv"),
    (
        "utf-16-le-bom",
        codecs.BOM_UTF16_LE + "example.com\r\nbücher.de\r\n".encode("utf-16-le"),
        ["example.com", "xn--bcher-kva.de"],
        "text",
    ),
    (
        "utf-16-be-bom",
        codecs.BOM_UTF16_BE + "example.com\nbücher.de".encode("utf-16-be"),
        ["example.com", "xn--bcher-kva.de"],
        "text",
    ),
    (
        "utf-16-le-csv-excel",
        codecs.BOM_UTF16_LE + "rank,domain\r\n1,example.com\r\n2,example.org\r\n".encode("utf-16-le"),
        ["example.com", "example.org"],
        "csv",
    ),
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
    ("binary-early-cr", b"x\r\x00\x9c\x0d\x0a\xff", "binary file"),
    ("binary-early-cr-no-nul", b"PK\x03\x04\r\x14\x9c\xff", "not UTF-8"),
    ("utf-16-without-text", codecs.BOM_UTF16_LE + "a.com\n\0".encode("utf-16-le"), "binary file"),
    ("utf-16-lone-surrogate", codecs.BOM_UTF16_LE + b"a\x00\x00\xd8b\x00", "not UTF-16"),
    ("utf-16-bom-only", codecs.BOM_UTF16_BE, "no domain names"),
    ("utf-32-le", codecs.BOM_UTF32_LE + "a.com\n".encode("utf-32-le"), "UTF-32 text is not supported"),
    ("utf-32-be", codecs.BOM_UTF32_BE + "a.com\n".encode("utf-32-be"), "UTF-32 text is not supported"),
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


@pytest.mark.parametrize(("data", "expected", "kind"), [c[1:] for c in FORMATS], ids=[c[0] for c in FORMATS])
def test_count_names_decodes_every_format_as_the_reader_does(
    tmp_path: Path, data: bytes, expected: list[str], kind: str
) -> None:
    path = tmp_path / "list"
    path.write_bytes(data)
    assert count_names(path) == len(expected)


REFUSED = [c for c in SOURCE_ERRORS if c[0].startswith(("nul", "invalid", "latin", "binary", "utf-3"))]


@pytest.mark.parametrize(("data", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_count_names_refuses_binary_content_instead_of_crashing(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "list.bin"
    path.write_bytes(data)
    with pytest.raises(InputError, match=message):
        count_names(path)


def test_a_bare_cr_in_a_csv_row_is_not_a_crash() -> None:
    # The csv module refuses a bare CR inside one line; lines arrive newline-translated,
    # so only a direct call can show the guard.
    assert _csv_fields("1,a.com\rb") is None
    assert _csv_fields('1,"a.com"') == ["1", "a.com"]


# --- streams that can be read once (pipes, FIFOs, devices) -------------------------------------

#: Generous: each call below returns in milliseconds unless it hangs.
HANG_TIMEOUT = 20.0


def returns_in_time(call: Callable[[], object]) -> object:
    """``call()``'s result; a failure, not a hang, when it is still running after HANG_TIMEOUT."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_TIMEOUT)
    assert outcome, f"still running after {HANG_TIMEOUT} s"
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


def test_count_names_gives_no_total_for_a_fifo_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "list.fifo"
    os.mkfifo(fifo)  # no writer: opening it would block forever
    assert returns_in_time(lambda: count_names(fifo)) is None


def test_count_names_gives_no_total_for_an_endless_device() -> None:
    assert returns_in_time(lambda: count_names("/dev/zero")) is None


def test_an_endless_binary_device_is_refused_on_its_first_bytes() -> None:
    with pytest.raises(InputError, match=r"/dev/zero: binary file"):
        returns_in_time(lambda: list(DomainReader("/dev/zero")))


def test_a_fifo_is_opened_and_read_once(tmp_path: Path) -> None:
    fifo = tmp_path / "list.fifo"
    os.mkfifo(fifo)
    names = [f"d{i}.example" for i in range(20_000)]  # more than a pipe holds at once

    def write() -> None:
        with open(fifo, "w") as out:  # blocks until the reader opens the FIFO
            out.write("\r\n".join(names))

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert count_names(fifo) is None
    read = returns_in_time(lambda: [item.domain for item in DomainReader(fifo)])
    assert read == names
    writer.join(HANG_TIMEOUT)


def test_a_slow_pipe_yields_its_first_name_before_the_sniff_window_fills() -> None:
    read_end, write_end = os.pipe()
    first_seen = threading.Event()
    waited: list[bool] = []

    def write() -> None:
        with os.fdopen(write_end, "wb", buffering=0) as out:
            out.write(b"first.example\n")
            # the reader must take what is there, not wait for 64 KiB or the end
            waited.append(first_seen.wait(HANG_TIMEOUT))
            out.write(b"second.example\n")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    with os.fdopen(read_end, "rb") as stdin:
        items = iter(DomainReader("-", stdin=stdin))
        assert next(items).domain == "first.example"
        first_seen.set()
        assert [item.domain for item in items] == ["second.example"]
    writer.join(HANG_TIMEOUT)
    assert waited == [True]


# --- properties ---------------------------------------------------------------------------------

NAMEISH = st.text(alphabet=st.sampled_from('abcxyz019-._ .ÄüßøЖ日本\u200d\x00#,"'), max_size=80)


@given(st.one_of(st.text(max_size=300), NAMEISH))
def test_normalise_is_total_and_its_output_is_a_fixed_point(text: str) -> None:
    domain, reason = normalise_domain(text)
    assert (domain is None) != (reason is None)
    if domain is not None:
        assert domain.isascii() and domain == domain.lower()
        assert len(domain) <= 253 and domain.count(".") >= 1
        assert all(1 <= len(label) <= 63 for label in domain.split("."))
        assert normalise_domain(domain) == (domain, None)


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


@given(
    st.lists(st.one_of(st.binary(max_size=40), NAMEISH.map(str.encode)), max_size=20),
    st.lists(st.sampled_from([b"\n", b"\r", b"\r\n"]), min_size=1, max_size=4),
    st.sampled_from([b"", codecs.BOM_UTF8]),
)
def test_any_line_endings_give_the_same_outcome_to_reader_and_count(
    lines: list[bytes], endings: list[bytes], bom: bytes
) -> None:
    data = bom + b"".join(line + endings[i % len(endings)] for i, line in enumerate(lines))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list"
        path.write_bytes(data)
        try:
            counted = count_names(path)
        except InputError:
            counted = None
        try:
            reader = DomainReader(path)
            list(reader)
        except InputError:
            return
    stats = reader.stats
    # An upper bound for the progress total; None only when the reader refuses the file too.
    assert counted is not None and counted >= stats.valid + stats.invalid + stats.duplicates
