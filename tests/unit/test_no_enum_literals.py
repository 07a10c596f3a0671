"""No value of a record vocabulary spelled as a string literal in ``report/`` or ``mxscan/``.

A comparison such as ``outcome in ("servfail", "timeout")`` re-states a vocabulary where mypy
cannot see it: renaming or adding a value leaves it silently wrong.  Such code compares
against the enum (``Outcome.SERVFAIL``) or asks the reduction (``probes.posture``).  The test
walks the AST: a string constant equal to a value of any ``StrEnum`` of ``engine/`` or
``probes/`` fails it when it is compared (an operand of ``==``, ``!=``, ``in``, ``not in``,
or a member of a tuple, list or set so compared) or a member of a set literal.  Dict keys,
subscripts and ``.get`` arguments are field names, not vocabulary uses, and are not looked at.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from enum import Enum
from pathlib import Path

import engine
import probes

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("report", "mxscan")

#: (file relative to the repository, literal): spellings that equal a vocabulary value but
#: are not a use of it, each with its reason.  Empty: keep it so, or give the reason here.
ALLOWED: dict[tuple[str, str], str] = {}


def _vocabulary() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for package in (engine, probes):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for obj in vars(module).values():
                if isinstance(obj, type) and issubclass(obj, Enum) and obj.__module__ == info.name:
                    for member in obj:
                        if isinstance(member.value, str):
                            values.setdefault(member.value, []).append(f"{obj.__name__}.{member.name}")
    return values


_CALLS = ("frozenset", "set", "tuple")


def _members(node: ast.expr) -> list[ast.expr]:
    """The node itself, or the members of a tuple/list/set display or a frozenset/set/tuple
    call over one."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.args
        and node.func.id in _CALLS
    ):
        node = node.args[0]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return list(node.elts)
    return [node]


def vocabulary_literals(source: str, vocabulary: set[str] | dict[str, list[str]]) -> list[tuple[int, str]]:
    """(line, literal) of every compared or set-member string equal to a vocabulary value."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            candidates = [m for operand in (node.left, *node.comparators) for m in _members(operand)]
        elif isinstance(node, ast.Set):
            candidates = list(node.elts)
        else:
            continue
        found += [
            (c.lineno, c.value)
            for c in candidates
            if isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value in vocabulary
        ]
    return sorted(set(found))


def test_the_detector_flags_compared_and_set_member_vocabulary_values_only() -> None:
    vocabulary = {"servfail", "timeout", "all"}
    source = (
        "a = outcome == 'servfail'\n"
        "b = outcome in ('timeout', 'other')\n"
        "c = frozenset({'all'})\n"
        "d = x not in frozenset(['servfail'])\n"
        "e = record['servfail']\n"
        "f = record.get('timeout')\n"
        "g = {'all': 1}\n"
        "h = label == 'unrelated'\n"
    )
    assert vocabulary_literals(source, vocabulary) == [
        (1, "servfail"),
        (2, "timeout"),
        (3, "all"),
        (4, "servfail"),
    ]


def test_no_vocabulary_value_is_spelled_as_a_literal_in_report_or_mxscan() -> None:
    vocabulary = _vocabulary()
    assert {"servfail", "unknown-error", "not-measured", "all"} <= set(vocabulary)  # the walk found them
    offences = []
    for package in SCANNED:
        for path in sorted((ROOT / package).glob("**/*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for line, literal in vocabulary_literals(path.read_text(encoding="utf-8"), vocabulary):
                if (rel, literal) not in ALLOWED:
                    offences.append(f"{rel}:{line}: {literal!r} is {', '.join(vocabulary[literal])}")
    assert not offences, "compare against the enum instead:\n" + "\n".join(offences)
