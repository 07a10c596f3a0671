"""What makes an encoded record a safe results line: separators escaped, size capped.

Theory of operation
-------------------
A results file is split into records by newlines, and some tools split further:
Python's ``str.splitlines`` (and jq pipelines built on such readers) also break
at U+0085, U+2028 and U+2029.  JSON allows those raw inside strings and orjson
writes them raw, so ``escape_separators`` rewrites them as ``\\u0085``,
``\\u2028``, ``\\u2029`` (a JSON decoder gives back the same string).  Every
other character ``str.splitlines`` splits on (``\\n \\r \\x0b \\x0c \\x1c
\\x1d \\x1e``) is a control character that JSON, and orjson, already escape.
A line of pure ASCII (nearly every line) skips the replacement after one
``bytes.isascii`` scan.

A line never exceeds ``MAX_LINE_BYTES``.  Peer text is bounded where it is read
(``engine.peertext``), but a record can still gather a lot of it: a certificate
chain with thousands of names, a 64 KiB policy of invalid lines, a TXT answer
near 64 KiB.  ``fit_line`` cuts such a record, in the order that loses least:

1. the longest strings are cut to a common length (a water level), as long as
   that length stays above ``KEEP_STRING_BYTES``: names, references and
   timestamps are far shorter and are never touched at this stage;
2. otherwise lists (and maps) are cut to 512, 256, ... items, and step 1 is
   tried again after each;
3. at one item per list, strings are cut to whatever length fits.

Cuts work on the JSON value, guided by the record class's type hints, so only
fields typed ``str``, ``tuple[X, ...]`` or ``dict[str, X]`` shrink (never an
enum, a number, a fixed-shape tuple).  A cut string ends in
``engine.peertext.TRUNCATION_MARK``; every cut is listed in the record's own
``truncated`` field by its JSON path (``smtp.tls.chain.certs[].san_dns``), so
a reader always knows what is incomplete.  A record class that can be written
as a line must therefore have that field.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import types
import typing
from typing import Any

import orjson

from engine.peertext import TRUNCATION_MARK

__all__ = ["KEEP_STRING_BYTES", "MAX_LINE_BYTES", "TRUNCATED_FIELD", "escape_separators", "fit_line"]

#: The longest results line (newline included).  Real records are 1-10 KB; 64 KiB
#: leaves room for every legitimate one while a hostile peer cannot bloat the file.
MAX_LINE_BYTES = 64 * 1024
#: Strings whose JSON form is at most this long survive every cut but the last resort.
KEEP_STRING_BYTES = 2048
#: The field of a line's record that lists what ``fit_line`` cut.
TRUNCATED_FIELD = "truncated"

_OPTIONS = orjson.OPT_APPEND_NEWLINE
#: How the three separators raw JSON may hold look in UTF-8, and their JSON escapes.
_ESCAPES = ((b"\xc2\x85", b"\\u0085"), (b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))
#: Their lead bytes.  C2 and E2 are lead bytes in UTF-8, never continuation bytes, so a
#: match at a lead byte is the separator itself, not the inside of another character.
_LEADS = ((b"\xc2", (b"\xc2\x85",)), (b"\xe2", (b"\xe2\x80\xa8", b"\xe2\x80\xa9")))
#: List lengths tried in step 2; None leaves lists whole.
_ITEM_CAPS: tuple[int | None, ...] = (None, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1)


def escape_separators(line: bytes) -> bytes:
    """``line`` with U+0085, U+2028 and U+2029 written as JSON escapes."""
    if line.isascii() or not _has_separator(line):
        return line
    for raw, escaped in _ESCAPES:
        line = line.replace(raw, escaped)
    return line


def _has_separator(line: bytes) -> bool:
    # A one-byte find is memchr, ~10x faster than a multi-byte search (measured: 0.4 vs
    # 4-6 us on a 3.6 KB line), so jump from lead byte to lead byte: text in other scripts
    # (lead bytes C3-DF, E3-F4) costs one scan, "…" or an en dash (E2 80 ..) one step each.
    for lead, separators in _LEADS:
        at = line.find(lead)
        while at >= 0:
            if line.startswith(separators, at):
                return True
            at = line.find(lead, at + 1)
    return False


def _size(text: str) -> int:
    """Bytes ``text`` takes in a line (quotes and escapes included)."""
    return len(escape_separators(orjson.dumps(text)))


def _encode(value: Any) -> bytes:
    return escape_separators(orjson.dumps(value, option=_OPTIONS))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@dataclasses.dataclass(slots=True)
class _Leaf:
    """A string in the JSON value: where it sits, its path and its size in the line."""

    holder: Any  # the list or dict holding it
    key: Any
    path: str
    size: int


def fit_line(record: object, line: bytes) -> bytes:
    """``line`` (the encoding of ``record``, longer than MAX_LINE_BYTES) cut to fit, with
    the cuts listed in ``record``'s ``truncated`` field."""
    cls = type(record)
    if not dataclasses.is_dataclass(cls) or TRUNCATED_FIELD not in {f.name for f in dataclasses.fields(cls)}:
        raise TypeError(f"{cls.__name__} has no {TRUNCATED_FIELD!r} field to list the cuts of a long line in")
    for items in _ITEM_CAPS:
        value = orjson.loads(line)
        walk = _Walk(items, set(value.get(TRUNCATED_FIELD) or ()))
        walk.value(cls, {"": value}, "", "")
        last_resort = items == _ITEM_CAPS[-1]
        fitted = _cut_strings(value, walk.leaves, walk.cut, floor=0 if last_resort else KEEP_STRING_BYTES)
        if fitted is not None:
            return fitted
    # Only a record class whose fields alone, one item per list, outgrow the cap gets here.
    raise ValueError(f"a {cls.__name__} cannot be cut to {MAX_LINE_BYTES} bytes")


def _cut_strings(value: dict[str, Any], leaves: list[_Leaf], cut: set[str], floor: int) -> bytes | None:
    """The line with the longest strings cut to a common length so it fits, or None when
    that length would fall below ``floor``."""
    value[TRUNCATED_FIELD] = sorted(cut)
    line = _encode(value)
    if len(line) <= MAX_LINE_BYTES:
        return line
    sizes = sorted(leaf.size for leaf in leaves)
    # The truncated list can at most grow to name every string's path: reserve that room,
    # so the cut strings plus everything else provably fit.
    listed_now = len(orjson.dumps(value[TRUNCATED_FIELD]))
    listed_max = len(orjson.dumps(sorted(cut | {leaf.path for leaf in leaves})))
    fixed = len(line) - sum(sizes) - listed_now + listed_max
    level = _water_level(sizes, MAX_LINE_BYTES - fixed)
    if level is None or level < floor:
        return None
    for leaf in leaves:
        if leaf.size > level:
            leaf.holder[leaf.key] = _shorten(leaf.holder[leaf.key], level)
            cut.add(leaf.path)
    value[TRUNCATED_FIELD] = sorted(cut)
    line = _encode(value)
    return line if len(line) <= MAX_LINE_BYTES else None


def _water_level(sizes: list[int], budget: int) -> int | None:
    """The largest L with sum(min(s, L)) <= budget for ascending ``sizes``; None if even
    the shortest cut string (quotes and mark) does not fit."""
    floor = _size(TRUNCATION_MARK)
    prefix = [0]
    for s in sizes:
        prefix.append(prefix[-1] + s)

    def total(level: int) -> int:
        k = bisect.bisect_right(sizes, level)  # sizes[:k] stay whole
        return prefix[k] + level * (len(sizes) - k)

    if not sizes or total(sizes[-1]) <= budget:
        return sizes[-1] if sizes else 0
    if total(floor) > budget:
        return None
    low, high = floor, sizes[-1]
    while low < high:  # total() grows with level: find the largest level within budget
        mid = (low + high + 1) // 2
        if total(mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def _shorten(text: str, size: int) -> str:
    """The longest prefix of ``text`` that, marked as cut, takes at most ``size`` bytes."""
    low, high = 0, len(text) - 1
    while low < high:
        mid = (low + high + 1) // 2
        if _size(text[:mid] + TRUNCATION_MARK) <= size:
            low = mid
        else:
            high = mid - 1
    return text[:low] + TRUNCATION_MARK


@functools.cache
def _shape(tp: Any) -> tuple[str, Any]:
    """How a type hint is walked, worked out once per hint: (kind, what it holds)."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return "union", tuple(a for a in typing.get_args(tp) if a is not type(None))
    if tp is str:
        return "str", None
    if origin is tuple:
        args = typing.get_args(tp)
        return ("list", args[0]) if len(args) == 2 and args[1] is Ellipsis else ("fixed", args)
    if origin is dict:
        return "map", typing.get_args(tp)[1]
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = _hints(tp)
        return "record", tuple(
            (f.name, hints[f.name]) for f in dataclasses.fields(tp) if f.name != TRUNCATED_FIELD
        )
    return "other", None


class _Walk:
    """One pass over a line's JSON value: cuts lists and maps to ``items`` (None: no cut),
    collects every string, and notes the paths it cut."""

    def __init__(self, items: int | None, cut: set[str]) -> None:
        self.items = items
        self.cut = cut
        self.leaves: list[_Leaf] = []

    def value(self, tp: Any, holder: Any, key: Any, path: str) -> None:
        value = holder[key]
        kind, inner = _shape(tp)
        if kind == "union":
            member = _member(inner, value)
            if member is not None:
                self.value(member, holder, key, path)
        elif kind == "str":
            if isinstance(value, str):
                self.leaves.append(_Leaf(holder, key, path, _size(value)))
        elif kind == "list" and isinstance(value, list):
            self._shrink(value, path)
            for i in range(len(value)):
                self.value(inner, value, i, f"{path}[]")
        elif kind == "fixed" and isinstance(value, list):
            for i, arg in enumerate(inner[: len(value)]):
                self.value(arg, value, i, f"{path}[]")
        elif kind == "map" and isinstance(value, dict):
            self._shrink(value, path)
            for name in value:
                self.value(inner, value, name, f"{path}{{}}")
        elif kind == "record" and isinstance(value, dict):
            for name, hint in inner:
                if name in value:
                    self.value(hint, value, name, f"{path}.{name}" if path else name)

    def _shrink(self, value: list[Any] | dict[str, Any], path: str) -> None:
        """Keep the first ``items`` entries of a list or map."""
        if self.items is None or len(value) <= self.items:
            return
        if isinstance(value, list):
            del value[self.items :]
        else:
            for name in list(value)[self.items :]:
                del value[name]
        self.cut.add(path)


def _member(members: tuple[Any, ...], value: Any) -> Any:
    """The member of a union that ``value`` (JSON) is an instance of, or None."""
    for member in members:
        kind, inner = _shape(member)
        if (
            (kind == "str" and isinstance(value, str))
            or (kind in ("list", "fixed") and isinstance(value, list))
            or (kind == "map" and isinstance(value, dict))
            or (kind == "record" and isinstance(value, dict) and set(value) <= {name for name, _ in inner})
        ):
            return member
    return None
