"""Files the user names (a limit table, a provider table, an opt-out list, a CA bundle):
read up to a size cap whatever ``stat`` says (``/dev/zero`` or a pipe has no size), and
text as UTF-8, strictly, with a refusal in the user's words when it is not, naming the
first byte that is not (as the domain list says it, ``engine.inputs``), never a bare
``UnicodeDecodeError`` from deep inside a parser."""

from __future__ import annotations

import codecs
import os

__all__ = ["decode_utf8", "not_utf8", "read_at_most", "utf8_error_offset"]

_CHUNK = 1 << 16


def read_at_most(path: str | os.PathLike[str], cap: int) -> bytes | None:
    """The file's bytes, or None when it holds more than ``cap``; OSError as ``open`` raises it."""
    with open(path, "rb") as stream:
        data = stream.read(cap + 1)
    return data if len(data) <= cap else None


def not_utf8(offset: int) -> str:
    """Why text is refused: the offset of its first byte that is not UTF-8."""
    return f"not UTF-8 text (invalid byte at offset {offset})"


def decode_utf8(data: bytes, where: str, *, expected: str, error: type[ValueError] = ValueError) -> str:
    """``data`` as UTF-8, or ``error`` naming ``where``, the offset and what the file should be."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{where}: {not_utf8(exc.start)}, expected {expected}") from None


def utf8_error_offset(path: str | os.PathLike[str]) -> int | None:
    """The offset in the file of its first byte that is not UTF-8, or None: a text-mode read
    reports the offset within the chunk it was decoding, so the file is read again to say
    where (only after it failed)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as raw:
        while True:
            chunk = raw.read(_CHUNK)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # The decoder decodes the bytes it carried over (a character cut by the previous
                # chunk) followed by this chunk: the bad sequence may start before the chunk.
                return offset - (len(exc.object) - len(chunk)) + exc.start
            if not chunk:
                return None
            offset += len(chunk)
