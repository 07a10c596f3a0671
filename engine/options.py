"""Option value types for the command line, each saying in the user's words what it expects.

argparse reports a type function's ``ValueError`` as ``invalid _positive_int value``
and accepts any number a type function lets through; every numeric option
instead takes one of these, which check the range and name it:
``--smtp-port must be a port number 1-65535, got 70000``.  ``Parser`` prints
that form (argparse's own is ``argument --smtp-port: ...``); subparsers inherit
it.  ``prepare_output`` readies the directory of an output file before any work.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

__all__ = ["Parser", "port", "prepare_output", "seconds", "whole"]

#: argparse's prefix of an option's error, "argument --smtp-port: ..." (several flags: "--out/-o").
_ARGUMENT = re.compile(r"^argument (\S+): (must be )?")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose option errors read ``--flag must be ..., got ...`` (exit 2)."""

    def error(self, message: str) -> NoReturn:
        super().error(_ARGUMENT.sub(lambda m: f"{m[1]} {m[2]}" if m[2] else f"{m[1]}: ", message))


def _shown(text: str) -> str:
    return text if text.strip() and text.isprintable() else repr(text)


def whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number in [minimum, maximum] (no maximum: at least ``minimum``)."""
    expected = f"a whole number >= {minimum}" if maximum is None else f"a whole number {minimum}-{maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {_shown(text)}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {value}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in some messages
    return parse


def port(text: str) -> int:
    """A TCP/UDP port number, 1-65535 (port 0 means "any" to the kernel: never a target)."""
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number 1-65535, got {_shown(text)}")
    return value


def seconds(text: str) -> float:
    """A duration in seconds, finite and greater than zero ("nan" and "inf" are floats too)."""
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {_shown(text)}")
    return value


def prepare_output(path: Path) -> str | None:
    """Create the directory an output file goes into (as ``mkdir -p``); None when the file
    can be written there, else why not, in a sentence for the user."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the directory for {path}: {exc.strerror or exc}"
    if path.is_dir():
        return f"{path} is a directory; give a file name"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"cannot write into {path.parent}: permission denied"
    return None
