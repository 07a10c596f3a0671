"""One codec for every result record: orjson out, typed dataclasses back in,
and a JSON Schema generated from the same classes.

Theory of operation
-------------------
Records are frozen, slotted dataclasses whose fields are typed with a small
set of shapes: ``str``, ``int``, ``float``, ``bool``, ``StrEnum`` subclasses,
nested record dataclasses, ``tuple[X, ...]``, ``dict[str, X]`` and ``X | None``.
``encode`` relies on orjson's native dataclass and enum support; ``decode``
walks the type hints to rebuild the objects; ``json_schema`` walks the same
hints to describe them.  Because all three read the same annotations, a field
cannot be written one way and read or documented another.

``encode`` also makes the line safe for line-splitting readers and bounded in
size (``engine.linecap``); ``decode`` gives back the same strings.

Field documentation lives in the class docstring, one ``name: text`` line per
field after a line reading ``Fields:``; ``json_schema`` copies it into
``description`` and refuses a record with an undocumented field.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import orjson

from engine.linecap import MAX_LINE_BYTES, escape_separators, fit_line

__all__ = ["MAX_LINE_BYTES", "DecodeError", "decode", "encode", "field_docs", "json_schema"]

T = TypeVar("T")

_ORJSON_OPTIONS = orjson.OPT_APPEND_NEWLINE


class DecodeError(ValueError):
    """A JSON value does not fit the record type it is decoded into."""


def encode(record: object) -> bytes:
    """One NDJSON line (with its newline) for ``record``: line separators inside strings
    escaped, at most ``MAX_LINE_BYTES`` long (a longer record is cut and lists the cuts in
    its ``truncated`` field; see ``engine.linecap``)."""
    line = escape_separators(orjson.dumps(record, option=_ORJSON_OPTIONS))
    return line if len(line) <= MAX_LINE_BYTES else fit_line(record, line)


def decode(cls: type[T], value: Any) -> T:
    """Rebuild ``cls`` from parsed JSON (``orjson.loads`` output)."""
    return typing.cast(T, _decode(cls, value, cls.__name__))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _decode(arg, value, where)
            except DecodeError as exc:
                errors.append(str(exc))
        raise DecodeError(f"{where}: no alternative fits: {'; '.join(errors)}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise DecodeError(f"{where}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise DecodeError(f"{where}: expected {len(args)} items")
        return tuple(_decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        _, value_type = typing.get_args(tp)
        if not isinstance(value, dict):
            raise DecodeError(f"{where}: expected an object")
        return {k: _decode(value_type, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise DecodeError(f"{where}: expected an object for {tp.__name__}")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _decode(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif _no_default(f):
                raise DecodeError(f"{where}: missing field {f.name!r}")
        return tp(**kwargs)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise DecodeError(f"{where}: {value!r} is not a {tp.__name__}") from None
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise DecodeError(f"{where}: expected a number")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise DecodeError(f"{where}: expected an integer")
    if tp in (str, bool):
        if type(value) is tp:
            return value
        raise DecodeError(f"{where}: expected {tp.__name__}")
    if tp is Any:
        return value
    raise DecodeError(f"{where}: unsupported type {tp!r}")


def field_docs(cls: type) -> dict[str, str]:
    """The ``name: text`` lines of the ``Fields:`` block of ``cls``'s docstring."""
    doc = cls.__doc__ or ""
    docs: dict[str, str] = {}
    in_fields = False
    current: str | None = None
    for raw in doc.splitlines():
        line = raw.strip()
        if line == "Fields:":
            in_fields = True
            continue
        if not in_fields or not line:
            continue
        name, sep, text = line.partition(":")
        if sep and name.isidentifier() and name in {f.name for f in dataclasses.fields(cls)}:
            current = name
            docs[name] = text.strip()
        elif current is not None:
            docs[current] += " " + line
    return docs


def json_schema(cls: Any, *, title: str | None = None) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) describing ``cls`` (a record class, or a union of
    them for a file holding several kinds of line) and every nested record."""
    defs: dict[str, Any] = {}
    root = _schema(cls, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title or getattr(cls, "__name__", "record"),
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def _no_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        alts = [_schema(a, defs) for a in typing.get_args(tp)]
        return {"anyOf": alts}
    if tp is type(None):
        return {"type": "null"}
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema(args[0], defs)}
        return {
            "type": "array",
            "prefixItems": [_schema(a, defs) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin is dict:
        _, value_type = typing.get_args(tp)
        return {"type": "object", "additionalProperties": _schema(value_type, defs)}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            docs = field_docs(tp)
            hints = _hints(tp)
            props: dict[str, Any] = {}
            for f in dataclasses.fields(tp):
                if f.name not in docs:
                    raise TypeError(f"{name}.{f.name} has no documentation in the Fields: block")
                props[f.name] = {**_schema(hints[f.name], defs), "description": docs[f.name]}
            summary = (tp.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            defs[name] = {
                "type": "object",
                "description": summary,
                "properties": props,
                # A field with a default was added later: lines written before it still validate.
                "required": [f.name for f in dataclasses.fields(tp) if _no_default(f)],
                "additionalProperties": False,
            }
        return {"$ref": f"#/$defs/{name}"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    simple: Mapping[Any, dict[str, Any]] = {
        str: {"type": "string"},
        int: {"type": "integer"},
        float: {"type": "number"},
        bool: {"type": "boolean"},
        Any: {},
    }
    if tp in simple:
        return dict(simple[tp])
    raise TypeError(f"unsupported type in record: {tp!r}")
