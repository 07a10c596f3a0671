"""Command-line options: each declared once, on the config field it fills, and its value types.

``option(...)`` is a dataclass field that carries its flag(s), help, value type and
default; ``add_options`` makes the argparse flags of a config class from them and
``config_from`` builds the config from the parsed arguments (after loading the files
options name and checking outputs), so a flag, its config field and its default cannot
drift apart.

Value types say in the user's words what they expect.

argparse reports a type function's ``ValueError`` as ``invalid _positive_int value``
and accepts any number a type function lets through; every numeric option
instead takes one of these, which check the range and name it:
``--smtp-port must be a port number 1-65535, got 70000``.  ``Parser`` prints
that form (argparse's own is ``argument --smtp-port: ...``); subparsers inherit
it.  ``prepare_output`` readies the directory of an output file before any work.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "Option",
    "OptionError",
    "Parser",
    "add_options",
    "config_from",
    "declared",
    "endpoint",
    "option",
    "port",
    "prepare_output",
    "seconds",
    "whole",
]

C = TypeVar("C", bound="DataclassInstance")

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


def endpoint(default_port: int) -> Callable[[str], tuple[str, int]]:
    """``HOST``, ``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); no port: ``default_port``."""

    def parse(text: str) -> tuple[str, int]:
        text = text.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            number = rest.removeprefix(":") or str(default_port)
        elif text.count(":") == 1:
            host, _, number = text.partition(":")
        else:
            host, number = text, str(default_port)
        if not host:
            raise argparse.ArgumentTypeError(
                f"must be HOST[:PORT] (e.g. 127.0.0.1:{default_port}), got {text!r}"
            )
        try:
            return host, port(number)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"must be HOST[:PORT] with a port 1-65535, got {text!r}"
            ) from None

    parse.__name__ = "endpoint"
    return parse


class OptionError(Exception):
    """A usage mistake found after parsing (a file an option names, contradicting options);
    the message is for the user, the exit code 2."""


@dataclass(frozen=True, slots=True)
class Option:
    """How one config field is given on the command line."""

    #: ``("--out", "-o")``; a positional argument is named after its field (``("domains",)``).
    flags: tuple[str, ...]
    help: str
    #: argparse's ``type``: parses and validates one value (one of the value types above).
    parse: Callable[[str], object] | None = None
    #: ``store_true``; ``store_false`` (a ``--no-...`` flag); ``append`` (repeatable: a tuple).
    action: str | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    required: bool = False
    #: The --help section ("politeness"); None: the command's own.
    group: str | None = None
    #: (parsed value, every parsed value) -> the config's value: reads the files an option names.
    #: OSError or ValueError is the user's mistake, said with the flag and the file (a
    #: ValueError's text names the file first, or is about the one file given).
    load: Callable[[Any, Mapping[str, Any]], object] | None = None
    #: A given value -> None, or why it cannot be used (an output checked before any work).
    check: Callable[[Any], str | None] | None = None
    #: Fields this flag contradicts when both are set.
    contradicts: tuple[str, ...] = ()


def option(
    *flags: str,
    help: str,
    default: Any = dataclasses.MISSING,
    factory: Callable[[], Any] | None = None,
    **how: Any,
) -> Any:
    """A config field declared as a command-line option (``how``: the other ``Option`` fields).

    Typed ``Any`` so that ``port: int = option(...)`` reads as the field's own type."""
    meta = {"option": Option(flags, help, **how)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def declared(config: type[DataclassInstance]) -> Iterator[tuple[dataclasses.Field[Any], Option]]:
    """The config's fields that are options, in declaration (and --help) order."""
    for field in dataclasses.fields(config):
        if "option" in field.metadata:
            yield field, field.metadata["option"]


def add_options(parser: argparse.ArgumentParser, config: type[DataclassInstance]) -> None:
    """The argparse flags of every option of ``config``, grouped as declared."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field, opt in declared(config):
        where: argparse._ActionsContainer = parser
        if opt.group is not None:
            if opt.group not in groups:
                groups[opt.group] = parser.add_argument_group(opt.group)
            where = groups[opt.group]
        where.add_argument(*opt.flags, **_argparse_keywords(field, opt))


def _argparse_keywords(field: dataclasses.Field[Any], opt: Option) -> dict[str, Any]:
    keywords: dict[str, Any] = {"help": opt.help}
    if opt.flags[0].startswith("-"):
        keywords["dest"] = field.name
    if opt.action == "append":
        keywords["default"] = []
    elif opt.load is not None:
        keywords["default"] = None  # the parsed value; the field's default is what load makes of it
    elif field.default is not dataclasses.MISSING:
        keywords["default"] = field.default
    metavar = opt.metavar
    if metavar is None and opt.action in (None, "append") and opt.choices is None:
        metavar = opt.flags[0].lstrip("-").replace("-", "_").upper()  # as argparse names it, not the field
    named = {"type": opt.parse, "action": opt.action, "metavar": metavar, "choices": opt.choices}
    keywords.update((key, value) for key, value in named.items() if value is not None)
    if opt.required:
        keywords["required"] = True
    return keywords


def config_from(args: argparse.Namespace, config: type[C]) -> C:
    """The config of the parsed ``args``; raises OptionError for a usage mistake: contradicting
    flags first, then files that cannot be read (in declaration order), then outputs."""
    options = {field.name: opt for field, opt in declared(config)}
    values = {name: getattr(args, name) for name in options}
    for name, opt in options.items():
        for other in opt.contradicts:
            if values[name] and values[other]:
                raise OptionError(f"{opt.flags[0]} and {options[other].flags[0]} contradict each other")
        if opt.action == "append":
            values[name] = tuple(values[name])
    for name, opt in options.items():
        if opt.load is not None:
            try:
                values[name] = opt.load(values[name], values)
            except (OSError, ValueError) as exc:
                raise OptionError(_load_problem(opt.flags[0], values[name], exc)) from None
    for name, opt in options.items():
        problem = opt.check(values[name]) if opt.check is not None and values[name] is not None else None
        if problem:
            raise OptionError(f"{opt.flags[0]}: {problem}")
    return config(**values)


def _load_problem(flag: str, given: object, exc: OSError | ValueError) -> str:
    """Why a value (most often a file) an option names cannot be used, in the user's words:
    the flag, the file, the reason (``--exclude optout.txt: cannot read (No such file or
    directory)``), whatever the loader said it with."""
    if isinstance(exc, OSError):
        name = given if exc.filename is None else exc.filename
        return f"{flag} {name}: cannot read ({exc.strerror or exc})"
    text = str(exc)
    if text.startswith(flag):
        return text
    if isinstance(given, str) and not text.startswith(f"{given}: "):
        text = f"{given}: {text}"  # one file: its problem names it
    return f"{flag} {text}"
