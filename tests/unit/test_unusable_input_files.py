"""Files mxscan reads that are not what they should be (bytes that are not UTF-8, an endless
device, a directory, an empty file) are refused in the user's words, naming the file (and
through ``mxscan scan`` its option, exit 2), never a bare ``UnicodeDecodeError`` or a read
until memory runs out.

Bugs: a TOML file with invalid UTF-8 escaped as a bare ``UnicodeDecodeError`` (the Python
codec's words, or a traceback from the library call); ``--exclude`` gave the offset within
the chunk being decoded, not in the file; ``--exclude``, ``--ca-file``, ``--intermediates``,
``--providers`` and ``mxscan providers update --from`` read ``/dev/zero`` until memory ran
out (a size check by ``stat`` sees 0 bytes for a device)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from engine.exclude import ExcludeList
from engine.limitspec import load_limits_toml
from engine.textfile import utf8_error_offset
from engine.tomldoc import MAX_TOML_BYTES, read_toml_text
from mxscan.cli import main
from probes.providers import ProviderMapError, read_provider_toml

#: A TOML file whose byte 21 is not UTF-8 (0xff never occurs in UTF-8).
BAD_TOML = b'[limits]\n"a.test" = "\xff"\n'
NOT_UTF8_TOML = "not UTF-8 text (invalid byte at offset 21), expected a TOML file (TOML is UTF-8)"


def test_a_toml_file_that_is_not_utf8_is_refused_naming_the_file_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "table.toml"
    path.write_bytes(BAD_TOML)
    for read in (read_toml_text, load_limits_toml):
        with pytest.raises(ValueError) as caught:
            read(path)
        assert str(caught.value) == f"{path}: {NOT_UTF8_TOML}"
    with pytest.raises(ProviderMapError) as refused:
        read_provider_toml(path)
    assert str(refused.value) == f"{path}: {NOT_UTF8_TOML}"


def test_a_provider_file_is_checked_and_named_when_malformed(tmp_path: Path) -> None:
    path = tmp_path / "providers.toml"
    path.write_text('[[override]]\nsuffix = "mail.test"\nprovider = "test"\n')
    assert read_provider_toml(path) == path.read_text()
    path.write_text("[[nope]]\n")
    with pytest.raises(ProviderMapError, match=f"^{path}: unknown table"):
        read_provider_toml(path)


def test_a_toml_file_larger_than_any_table_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    with path.open("wb") as out:
        out.truncate(MAX_TOML_BYTES + 1)  # sparse: NUL bytes, which are UTF-8
    with pytest.raises(
        ValueError, match=f"^{path}: larger than {MAX_TOML_BYTES} bytes, expected a TOML file$"
    ):
        load_limits_toml(path)


def test_an_opt_out_list_that_is_not_utf8_names_the_offset_in_the_file(tmp_path: Path) -> None:
    """Past the first chunk a text-mode read decodes (8 KiB): the offset is the file's."""
    path = tmp_path / "optout.txt"
    path.write_bytes(b"example.com\n" * 10_000 + b"\xffbad.example\n")
    with pytest.raises(ValueError) as caught:
        ExcludeList.from_file(path)
    assert str(caught.value) == "not UTF-8 text (invalid byte at offset 120000), expected an opt-out list"


def test_the_offset_of_the_first_byte_that_is_not_utf8_is_found_across_read_chunks(tmp_path: Path) -> None:
    """A character cut by a chunk boundary is whole; one cut by the end of the file is not."""
    path = tmp_path / "text"
    umlaut = "\u00fc".encode()  # 2 bytes
    path.write_bytes(b"x" * 65535 + umlaut + b"y\xffz")
    assert utf8_error_offset(path) == 65538
    path.write_bytes(b"x" * 70000 + umlaut[:1])
    assert utf8_error_offset(path) == 70000
    path.write_bytes(b"x" * 70000 + umlaut)
    assert utf8_error_offset(path) is None


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mxscan: "), err
    return err.removeprefix("mxscan: ").strip()


#: (flag, the file's bytes, what follows "FLAG FILE: ").
NOT_UTF8 = [
    ("--limits", BAD_TOML, NOT_UTF8_TOML),
    ("--providers", BAD_TOML, NOT_UTF8_TOML),
    (
        "--exclude",
        b"example.com\n\xfe\n",
        "not UTF-8 text (invalid byte at offset 12), expected an opt-out list",
    ),
]


@pytest.mark.parametrize(("flag", "content", "problem"), NOT_UTF8, ids=[f for f, _, _ in NOT_UTF8])
def test_a_file_an_option_names_that_is_not_utf8_exits_2_in_the_users_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, content: bytes, problem: str
) -> None:
    named, out = tmp_path / "named", tmp_path / "r.ndjson"
    named.write_bytes(content)
    argv = ["scan", "list.txt", "--out", str(out), "--dns-only", flag, str(named)]
    assert _usage_error(argv, capsys) == f"{flag} {named}: {problem}"
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--limits", "--providers", "--exclude", "--ca-file", "--intermediates"])
def test_a_directory_an_option_names_exits_2_as_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    argv = ["scan", "list.txt", "--out", str(tmp_path / "r.ndjson"), "--dns-only", flag, str(tmp_path)]
    assert _usage_error(argv, capsys) == f"{flag} {tmp_path}: cannot read (Is a directory)"


#: What an endless device gives, after "FLAG /dev/zero: ".
ENDLESS = {
    "--limits": f"larger than {MAX_TOML_BYTES} bytes, expected a TOML file",
    "--providers": f"larger than {MAX_TOML_BYTES} bytes, expected a TOML file",
    "--exclude": "line 1: line longer than 1024 characters",
    "--ca-file": "larger than 16777216 bytes",
    "--intermediates": "larger than 16777216 bytes",
}


def _limited_memory() -> None:
    """A reader that reads an endless file to its end fails here instead of taking the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 31, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _run_limited(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited_memory,
        check=False,
    )


@pytest.mark.parametrize("flag", ENDLESS)
def test_an_endless_file_an_option_names_exits_2_unread(tmp_path: Path, flag: str) -> None:
    out = tmp_path / "r.ndjson"
    argv = ["scan", "list.txt", "--out", str(out), "--dns-only", flag, "/dev/zero"]
    done = _run_limited(f"import sys; from mxscan.cli import main; sys.exit(main({argv!r}))")
    assert (done.returncode, done.stderr) == (2, f"mxscan: {flag} /dev/zero: {ENDLESS[flag]}\n")
    assert not out.exists()


def test_an_endless_provider_table_or_suffix_list_is_refused_unread(tmp_path: Path) -> None:
    dest = str(tmp_path / "psl.dat")
    code = (
        "from probes.providers import ProviderMapError, read_provider_toml, update_psl\n"
        f"for read in (read_provider_toml, lambda path: update_psl(path, dest={dest!r})):\n"
        "    try:\n"
        "        read('/dev/zero')\n"
        "    except ProviderMapError as exc:\n"
        "        print(exc)\n"
    )
    done = _run_limited(code)
    assert done.stdout.splitlines() == [
        f"/dev/zero: larger than {MAX_TOML_BYTES} bytes, expected a TOML file",
        "/dev/zero: larger than 16777216 bytes",
    ], done.stderr
    assert not (tmp_path / "psl.dat").exists()


@pytest.mark.parametrize(
    ("flag", "problem"),
    [
        ("--limits", None),
        ("--providers", None),
        ("--exclude", None),
        ("--ca-file", "no PEM certificate found"),
        ("--intermediates", "no PEM certificate found"),
    ],
)
def test_an_empty_file_an_option_names_is_an_empty_table_or_refused_as_holding_no_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, problem: str | None
) -> None:
    """An empty TOML document is valid (every table empty: the defaults hold), an empty
    opt-out list excludes nothing; a CA file must hold a certificate."""
    empty, out = tmp_path / "empty", tmp_path / "r.ndjson"
    empty.write_bytes(b"")
    argv = ["scan", "list.txt", "--out", str(out), "--resolver", "127.0.0.1:1", flag, str(empty)]
    if problem is not None:
        assert _usage_error(argv, capsys) == f"{flag} {empty}: {problem}"
        return
    # Accepted: the scan goes on to the next check, the EHLO name this argv leaves out.
    assert "--ehlo-name" in _usage_error(argv, capsys)


def test_a_provider_table_that_is_not_utf8_is_refused_by_providers_lookup_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mxscan providers lookup --providers FILE`` crashed with a traceback (exit 1)."""
    named = tmp_path / "providers.toml"
    named.write_bytes(BAD_TOML)
    assert _usage_error(["providers", "lookup", "--providers", str(named), "mx.example"], capsys) == (
        f"{named}: {NOT_UTF8_TOML}"
    )
