"""Domain lists as users hand them to the installed ``mxscan`` command (issue #13 items 15, 16).

Line endings (CR, CRLF, LF, mixed) and encodings (UTF-8 with or without BOM, UTF-16 with
BOM) are read alike; binary input is refused with exit 2 before any server is contacted;
stdin, a FIFO and a process substitution are read exactly once, so they neither hang nor
need a second pass, and their progress has no total.  The command runs as a subprocess
from a directory outside the checkout, with ``--dns-only`` against the scenario world.
"""

from __future__ import annotations

import codecs
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from testbed.harness import RunningWorld
from tests.e2e.worldscan import world_scan_argv

#: The console script installed beside this interpreter (what a user runs).
MXSCAN = Path(sys.executable).parent / "mxscan"
#: Generous: every scan here takes a few seconds unless it hangs.
SCAN_TIMEOUT = 120.0
#: /dev/zero must be refused at once; this only keeps a regression from hanging the suite.
HANG_TIMEOUT = 20.0
#: Names the scenario world answers at once (no timeouts).
NAMES = (
    "nxdomain.scenario.test",
    "null-mx.scenario.test",
    "multi-mx.scenario.test",
    "signed.scenario.test",
    "valid-cert.scenario.test",
)


def scan_argv(shared_world: RunningWorld, source: str, out: Path, *extra: str) -> list[str]:
    argv = world_scan_argv(shared_world.endpoints, Path(source), out, "--dns-only", *extra)
    assert argv[1:4] == ["-m", "mxscan", "scan"]
    return [str(MXSCAN), *argv[3:]]


def run(
    argv: Sequence[str], cwd: Path, stdin: bytes | None = None, timeout: float = SCAN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv,
        cwd=cwd,
        input=stdin.decode("latin-1") if stdin is not None else None,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="latin-1",
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def domain_lines(out: Path) -> Counter[str]:
    """How many domain lines each domain has in a results file."""
    records = (orjson.loads(line) for line in out.read_bytes().splitlines())
    return Counter(record["domain"] for record in records if "domain" in record)


@contextmanager
def fifo_writing(path: Path, data: bytes) -> Iterator[Path]:
    """A FIFO at ``path`` that a thread fills once with ``data``, then closes."""
    os.mkfifo(path)

    def write() -> None:
        try:
            with path.open("wb") as fifo:  # blocks until a reader opens it
                fifo.write(data)
        except BrokenPipeError:
            pass  # the reader went away early; the test's assertions say why

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        if writer.is_alive():
            # Nobody opened it (or not yet): a reader end of our own releases the writer.
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(HANG_TIMEOUT)


def lines(names: Sequence[str], ending: str = "\n") -> str:
    return "".join(name + ending for name in names)


# --- exit 2 before any network: no world ----------------------------------------------------------

#: Nothing listens here: a scan that got as far as the resolver would say so instead.
DEAD_RESOLVER = ("--resolver", "127.0.0.1:9", "--dns-only", "--progress", "off")

REFUSED = [
    ("binary-early-cr", b"\x1f\x8b\x08\x00\r\x9c\x00\x03\n\xff", "binary file"),
    ("binary-early-cr-no-nul", b"PK\x03\x04\r\x14\x9c\xff\xfe", "not UTF-8 text"),
    ("utf-32", codecs.BOM_UTF32_LE + "a.example\n".encode("utf-32-le"), "UTF-32 text is not supported"),
    ("empty", b"", "no domain names"),
    ("comments-only", b"# top list\r# nothing yet\r", "no domain names"),
]


@pytest.mark.parametrize(("data", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_bad_list_file_exits_2_with_a_message(tmp_path: Path, data: bytes, message: str) -> None:
    (tmp_path / "list.txt").write_bytes(data)
    done = run([str(MXSCAN), "scan", "list.txt", "--out", "out.ndjson", *DEAD_RESOLVER], tmp_path)
    assert done.returncode == 2
    assert f"list.txt: {message}" in done.stderr and "resolver" not in done.stderr
    assert not (tmp_path / "out.ndjson").exists()


@pytest.mark.parametrize(("data", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_bad_list_on_stdin_exits_2_with_a_message(tmp_path: Path, data: bytes, message: str) -> None:
    done = run([str(MXSCAN), "scan", "-", "--out", "out.ndjson", *DEAD_RESOLVER], tmp_path, stdin=data)
    assert done.returncode == 2
    assert f"<stdin>: {message}" in done.stderr and "resolver" not in done.stderr
    assert not (tmp_path / "out.ndjson").exists()


def test_an_endless_binary_device_exits_2_without_counting_it(tmp_path: Path) -> None:
    done = run(
        [str(MXSCAN), "scan", "/dev/zero", "--out", "out.ndjson", *DEAD_RESOLVER],
        tmp_path,
        timeout=HANG_TIMEOUT,
    )
    assert done.returncode == 2 and "/dev/zero: binary file" in done.stderr


# --- lists that scan: the scenario world --------------------------------------------------------

ENCODED = [
    ("lf", lines(NAMES).encode()),
    ("crlf", lines(NAMES, "\r\n").encode()),
    ("cr-only", lines(NAMES, "\r").encode()),
    ("mixed", "\r".join(NAMES[:2]).encode() + b"\r\n" + "\n".join(NAMES[2:]).encode()),
    ("utf-8-bom-csv", codecs.BOM_UTF8 + ("domain,rank\r\n" + lines(NAMES, ",1\r\n")).encode()),
    (
        "utf-16-le-bom-csv",
        codecs.BOM_UTF16_LE + ("rank,domain\r\n" + "".join(f"1,{n}\r\n" for n in NAMES)).encode("utf-16-le"),
    ),
    ("utf-16-be-bom", codecs.BOM_UTF16_BE + lines(NAMES).encode("utf-16-be")),
]


@pytest.mark.parametrize("data", [c[1] for c in ENCODED], ids=[c[0] for c in ENCODED])
def test_every_line_ending_and_encoding_scans_every_name(
    shared_world: RunningWorld, tmp_path: Path, data: bytes
) -> None:
    (tmp_path / "list.txt").write_bytes(data)
    done = run(scan_argv(shared_world, "list.txt", tmp_path / "out.ndjson"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert domain_lines(tmp_path / "out.ndjson") == Counter(NAMES)


def test_a_fifo_list_is_read_once_and_its_progress_has_no_total(
    shared_world: RunningWorld, tmp_path: Path
) -> None:
    with fifo_writing(tmp_path / "list.fifo", lines(NAMES, "\r").encode()):
        done = run(
            scan_argv(shared_world, "list.fifo", tmp_path / "out.ndjson", "--progress", "plain"), tmp_path
        )
    assert done.returncode == 0, done.stderr
    assert domain_lines(tmp_path / "out.ndjson") == Counter(NAMES)
    (summary,) = [line for line in done.stderr.splitlines() if line.startswith("finished")]
    assert summary.startswith(f"finished {len(NAMES)} done ") and "%" not in summary


def test_a_regular_file_progress_has_its_total(shared_world: RunningWorld, tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text(lines(NAMES))
    done = run(scan_argv(shared_world, "list.txt", tmp_path / "out.ndjson", "--progress", "plain"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"finished {len(NAMES)}/{len(NAMES)} (100.0%)" in done.stderr


def test_a_list_on_stdin_is_read_like_a_file(shared_world: RunningWorld, tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + lines(NAMES, "\r\n").encode("utf-16-le")
    done = run(scan_argv(shared_world, "-", tmp_path / "out.ndjson"), tmp_path, stdin=data)
    assert done.returncode == 0, done.stderr
    assert domain_lines(tmp_path / "out.ndjson") == Counter(NAMES)


@pytest.mark.skipif(shutil.which("bash") is None, reason="process substitution needs bash")
def test_a_process_substitution_list_is_read_once(shared_world: RunningWorld, tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text(lines(NAMES))
    argv = scan_argv(shared_world, "PLACEHOLDER", tmp_path / "out.ndjson")
    # mxscan scan <(cat list.txt) ...: the list is a /dev/fd pipe that can be opened once.
    script = 'source="$1"; shift; exec "$@" <(cat "$source")'
    index = argv.index("PLACEHOLDER")
    command = ["bash", "-c", script, "bash", "list.txt", *argv[:index], *argv[index + 1 :]]
    done = run(command, tmp_path)
    assert done.returncode == 0, done.stderr
    assert domain_lines(tmp_path / "out.ndjson") == Counter(NAMES)


def test_resume_and_retry_unknown_read_a_fifo_list_once(shared_world: RunningWorld, tmp_path: Path) -> None:
    out = tmp_path / "out.ndjson"
    every = (*NAMES, "timeout.scenario.test")
    # One attempt bounds timeout.scenario.test's cost; 2 s is far above a loaded machine's
    # scheduling noise, so no other name becomes unknown (the retry count below would change).
    quick_dns = ("--dns-timeout", "2", "--dns-attempts", "1")
    (tmp_path / "part.txt").write_text(lines(every[:2]) + "timeout.scenario.test\n")
    first = run(scan_argv(shared_world, "part.txt", out, *quick_dns), tmp_path)
    assert first.returncode == 0, first.stderr
    assert domain_lines(out) == Counter((*every[:2], "timeout.scenario.test"))

    with fifo_writing(tmp_path / "resume.fifo", lines(every).encode()):
        resumed = run(scan_argv(shared_world, "resume.fifo", out, *quick_dns), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert domain_lines(out) == Counter(every)

    with fifo_writing(tmp_path / "retry.fifo", lines(every).encode()):
        retried = run(scan_argv(shared_world, "retry.fifo", out, *quick_dns, "--retry-unknown"), tmp_path)
    assert retried.returncode == 0, retried.stderr
    assert "retrying 1 domains" in retried.stderr
    assert domain_lines(out) == Counter(every)
