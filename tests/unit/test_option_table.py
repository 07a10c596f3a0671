"""engine/options.py's option table on a small config of its own: one declaration makes the
flag, the field default, the parsing and the post-parse checks."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.options import OptionError, Parser, add_options, config_from, declared, option, whole


def _read(path: str | None, values: Mapping[str, Any]) -> str:
    return Path(path).read_text().strip() * values["times"] if path else ""


def _refuse_x(value: str) -> str | None:
    return "x is refused" if value == "x" else None


@dataclass(frozen=True, slots=True)
class Toy:
    target: str = option("target", metavar="TARGET", help="what")
    times: int = option("--times", "-t", parse=whole(1, 5), default=2, help="how often")
    loud: bool = option("--loud", action="store_true", default=False, contradicts=("quiet",), help="l")
    quiet: bool = option("--quiet", action="store_true", default=False, help="q")
    color: bool = option("--no-color", action="store_false", default=True, group="looks", help="c")
    tags: tuple[str, ...] = option("--tag", action="append", default=(), group="looks", help="repeatable")
    text: str = option("--text-file", load=_read, default="", help="read after parsing")
    name: str | None = option("--name", default=None, check=_refuse_x, help="checked")


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="toy")
    add_options(parser, Toy)
    return parser


def _toy(*argv: str) -> Toy:
    return config_from(_parser().parse_args(["it", *argv]), Toy)


def test_without_flags_the_config_is_the_class_defaults() -> None:
    assert _toy() == Toy(target="it")


def test_flags_fill_their_fields() -> None:
    toy = _toy("-t", "3", "--loud", "--no-color", "--tag", "a", "--tag", "b", "--name", "n")
    assert (toy.times, toy.loud, toy.color, toy.tags, toy.name) == (3, True, False, ("a", "b"), "n")


def test_load_sees_the_other_parsed_values(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("ab\n")
    assert _toy("--text-file", str(tmp_path / "f"), "--times", "3").text == "ababab"


def test_a_load_that_fails_is_an_option_error_with_its_message(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="No such file or directory"):
        _toy("--text-file", str(tmp_path / "missing"))


def test_contradicting_flags_and_failed_checks_name_the_flags() -> None:
    with pytest.raises(OptionError) as caught:
        _toy("--quiet", "--loud")
    assert str(caught.value) == "--loud and --quiet contradict each other"
    with pytest.raises(OptionError) as caught:
        _toy("--name", "x")
    assert str(caught.value) == "--name: x is refused"


def test_bad_values_exit_2_in_the_flags_words(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["it", "--times", "6"])
    assert exited.value.code == 2
    assert (
        capsys.readouterr().err.splitlines()[-1] == "toy: error: --times/-t must be a whole number 1-5, got 6"
    )


def test_help_shows_flags_as_argparse_names_them_in_declared_groups() -> None:
    text = _parser().format_help()
    assert "--tag TAG" in text and "--text-file TEXT_FILE" in text and "--times TIMES, -t TIMES" in text
    looks = text.split("\nlooks:\n", 1)[1]
    assert "--no-color" in looks and "--tag TAG" in looks and "--times" not in looks
    assert [opt.flags[0] for _, opt in declared(Toy)][:2] == ["target", "--times"]
