"""Every reader of a results file (report, diff, trend, export through ``read_records``;
``--retry-unknown`` and ``mxscan merge`` through ``open_results``) keeps exactly the lines a
resume keeps: a torn last line of a plain file and a torn last gzip member of a compressed
one are dropped, whole, at whatever byte the kill stopped the write (1 byte into a member,
mid-member, mid-line), and said as a plain file's torn tail is said: the file is unfinished.

Bug: a ``.gz`` results file torn 1 byte into its first member (a kill during the first
flush) was read as a plain file, "corrupt line 1 (not JSON)", while resume accepted it; and
the complete lines of a torn last member were read, while resume drops them (never
committed) and measures their domains again."""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import orjson
import pytest

from engine.checkpoint import ResultStore, read_records
from engine.compressed import GzipMembers, open_results
from engine.retrypass import read_lines
from mxscan.cli import main
from tests.unit.test_retry import settled


def dom(key: str, pad: str = "") -> bytes:
    return orjson.dumps({"schema_version": 2, "domain": key, "pad": pad}) + b"\n"


def member(*lines: bytes) -> bytes:
    return gzip.compress(b"".join(lines), mtime=0)


def kept_by_resume(torn: Path, tmp_path: Path) -> list[dict[str, object]]:
    """The records of ``torn`` once a resume has cut it (the oracle)."""
    copy = tmp_path / f"resumed-{torn.name}"
    shutil.copyfile(torn, copy)
    store = ResultStore(copy)
    store.open()
    store.close()
    return list(read_records(copy))


def retry_lines(path: Path) -> list[dict[str, object]]:
    with open_results(path) as stream:
        return [line.record for line in read_lines(stream, path)]


#: (file name, committed part, the write a kill cut): plain lines, and gzip members holding
#: several lines with one longer than a decompression step's input.
FILES = [
    ("r.ndjson", dom("a") + dom("b"), dom("c") + dom("d", "x" * 300)),
    ("r.ndjson.gz", member(dom("a"), dom("b")), member(dom("c"), dom("d", "x" * 300), dom("e"))),
    ("r.ndjson.gz", b"", member(dom("a"), dom("b"))),
]


@pytest.mark.parametrize(("name", "committed", "write"), FILES, ids=["plain", "gzip", "gzip-first-member"])
def test_readers_keep_exactly_the_lines_a_resume_keeps_wherever_the_kill_cut_the_last_write(
    tmp_path: Path, name: str, committed: bytes, write: bytes
) -> None:
    path = tmp_path / name
    for cut in range(1, len(write)):
        path.write_bytes(committed + write[:cut])
        expected = kept_by_resume(path, tmp_path)
        assert list(read_records(path)) == expected, cut
        assert retry_lines(path) == expected, cut


def test_a_gzip_results_file_torn_one_byte_into_its_first_member_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson.gz"
    path.write_bytes(member(dom("a"))[:1])
    assert list(read_records(path)) == [] == kept_by_resume(path, tmp_path)


def test_the_complete_lines_of_a_torn_last_member_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson.gz"
    torn = member(dom("c"), dom("d", "x" * 5000))
    path.write_bytes(member(dom("a"), dom("b")) + torn[: len(torn) - 12])  # all of c, most of d
    assert [r["domain"] for r in read_records(path)] == ["a", "b"]


def _run(command: list[str], path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    files = [str(path), str(path)] if command[0] == "diff" else [str(path)]
    assert main([command[0], *files, *command[1:]]) == 0
    captured = capsys.readouterr()
    return tuple(text.replace(str(path), "FILE").replace(path.name, "FILE") for text in captured)  # type: ignore[return-value]


#: Where the kill cut the file: (writes kept whole, bytes kept of the next write; negative:
#: all but that many).
CUTS = {"1-byte-into-the-first-write": (0, 1), "mid-second-write": (1, -12)}


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize(
    "command",
    [
        ["report", "--format", "json"],
        ["export"],
        ["diff", "--allow-unfinished"],
        ["trend", "--allow-unfinished"],
    ],
    ids=lambda c: c[0],
)
def test_each_report_command_reads_a_torn_gzip_file_as_it_reads_a_torn_plain_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], cut: str
) -> None:
    """The same output and the same one warning per file given (the file is unfinished),
    never "corrupt line": the torn write gives no line in either kind of file."""
    writes = [settled("a.test"), settled("b.test")]  # one line each: a plain file's torn
    # write then holds no complete line, as a torn member gives none
    whole, part = CUTS[cut]
    plain, packed = tmp_path / "r.ndjson", tmp_path / "r.ndjson.gz"
    plain.write_bytes(b"".join(writes[:whole]) + writes[whole][:part])
    packed.write_bytes(b"".join(map(member, writes[:whole])) + member(writes[whole])[:part])
    out, err = _run(command, plain, capsys)
    assert _run(command, packed, capsys) == (out, err)
    assert err.count("WARNING: FILE:") == (2 if command[0] == "diff" else 1) == err.count("\n"), err
    if command[0] == "export":
        assert ("a.test" in out) is bool(whole) and "b.test" not in out


def test_a_member_larger_than_the_hold_streams_on_and_a_torn_one_still_gives_nothing(tmp_path: Path) -> None:
    """A member past ``hold`` is no flush of ours (``gzip results.ndjson`` makes one): its
    lines stream as they decode, so memory stays bounded; a member within it is held."""
    lines = [dom(str(i), "y" * 50) for i in range(200)]
    whole = member(*lines)
    stream = io.BufferedReader(GzipMembers(io.BytesIO(whole), "big", hold=1000))
    assert stream.read() == b"".join(lines)
    held = io.BufferedReader(GzipMembers(io.BytesIO(whole[:-8]), "torn", hold=len(whole) * 100))
    assert held.read() == b""
    streamed = io.BufferedReader(GzipMembers(io.BytesIO(whole[:-8]), "torn", hold=1000))
    assert b"".join(lines).startswith(streamed.read())
