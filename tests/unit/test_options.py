"""Command-line value types (engine/options.py): boundaries and the messages the user reads."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.options import Parser, port, prepare_output, seconds, whole

PORTS = [("1", 1), ("65535", 65535), (" 25 ", 25), ("0025", 25)]
BAD_PORTS = [
    ("0", "0"),
    ("65536", "65536"),
    ("-1", "-1"),
    ("25.0", "25.0"),
    ("", "''"),
    ("x", "x"),
    ("\x1b", "'\\x1b'"),
]


@pytest.mark.parametrize(("text", "value"), PORTS)
def test_port_accepts_1_to_65535(text: str, value: int) -> None:
    assert port(text) == value


@pytest.mark.parametrize(("text", "shown"), BAD_PORTS)
def test_port_refuses_others_and_shows_what_was_given(text: str, shown: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        port(text)
    assert str(caught.value) == f"must be a port number 1-65535, got {shown}"


@pytest.mark.parametrize(("text", "value"), [("0.001", 0.001), ("3", 3.0), (" 1e3 ", 1000.0)])
def test_seconds_accepts_finite_positive(text: str, value: float) -> None:
    assert seconds(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "-inf", "", "soon", "0.0"])
def test_seconds_refuses_zero_negative_and_non_finite(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="must be a number of seconds > 0, got "):
        seconds(text)


def test_whole_bounds_are_inclusive() -> None:
    parse = whole(1, 10)
    assert (parse("1"), parse("10"), parse(" 5 ")) == (1, 10, 5)
    for text, got in (("0", "0"), ("11", "11"), ("1.5", "1.5"), ("", "''")):
        with pytest.raises(argparse.ArgumentTypeError) as caught:
            parse(text)
        assert str(caught.value) == f"must be a whole number 1-10, got {got}"


def test_whole_without_maximum() -> None:
    parse = whole(0)
    assert parse("0") == 0 and parse(str(10**12)) == 10**12
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        parse("-1")
    assert str(caught.value) == "must be a whole number >= 0, got -1"


def test_parser_errors_name_the_flag_first(capsys: pytest.CaptureFixture[str]) -> None:
    parser = Parser(prog="mxscan")
    parser.add_argument("--smtp-port", type=port)
    parser.add_argument("--name", required=True)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--name", "x", "--smtp-port", "70000"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "mxscan: error: --smtp-port must be a port number 1-65535, got 70000"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--smtp-port", "25", "--name"])
    assert capsys.readouterr().err.splitlines()[-1] == "mxscan: error: --name: expected one argument"


def test_prepare_output_creates_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.ndjson"
    assert prepare_output(target) is None and target.parent.is_dir()


def test_prepare_output_refuses_a_directory_and_an_impossible_parent(tmp_path: Path) -> None:
    assert prepare_output(tmp_path) == f"{tmp_path} is a directory; give a file name"
    blocker = tmp_path / "file"
    blocker.write_text("")
    said = prepare_output(blocker / "out.ndjson")
    assert said is not None and said.startswith(f"cannot create the directory for {blocker / 'out.ndjson'}: ")
