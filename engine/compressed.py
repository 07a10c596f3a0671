"""Compressed results files: one gzip member per flush, and the one opener every reader uses.

Theory of operation
-------------------
A results file named ``*.gz`` is written as a sequence of gzip members (RFC 1952 §2.2: a
gzip file is members one after another), one per ``ResultStore.flush``, each holding whole
lines and written with a single ``os.write`` on an ``O_APPEND`` descriptor.  A ``kill -9``
can therefore only leave the *last* member incomplete, exactly as it can only leave the
last line of a plain file torn: every member before it is complete, and each member's
CRC-32 and length trailer say whether it is.  Resuming cuts the file back to the end of its
last complete member; the lines of the torn member are measured again.

Readers never care which kind a file is: :func:`open_results` sniffs the gzip magic and
returns a binary stream of the lines either way (a plain file as itself).  A reader sees
exactly the lines a resume keeps: the data of a member is released only once its trailer
has checked it (held back up to ``MEMBER_HOLD_BYTES``), so a torn last member gives no
line at all, even the complete ones it already holds, as a plain file's torn last line
gives none.  A file named ``*.gz`` that is shorter than the magic (a kill during the first
flush, at byte 1) is a torn first member too, as resuming decides by the name.  Resuming
reads the data as it comes and takes lines back itself, from the member boundaries
(:attr:`GzipMembers.complete_end`, :attr:`GzipMembers.complete_out`).

gzip, not zstd: the stdlib has it (no optional dependency for a file format), a member per
~512 lines compresses results ~5-8 times (benchmarks/README.md), and every tool reads it.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from typing import BinaryIO

__all__ = [
    "GZIP_MAGIC",
    "CorruptCompressed",
    "GzipMembers",
    "compress_frame",
    "is_compressed_path",
    "last_member",
    "open_results",
]

GZIP_MAGIC = b"\x1f\x8b"
#: The fixed header ``compress_frame`` writes (deflate, no flags, mtime 0): where a member starts.
_MEMBER_HEAD = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
#: Compression level: 6 is zlib's default trade-off; results lines compress well at any level.
LEVEL = 6
_READ = 1 << 16
#: Decompressed bytes produced per step: bounds memory whatever one member holds.
_STEP = 1 << 20
#: How far back from the end ``last_member`` looks for the start of the last member.
_TAIL_WINDOW = 1 << 20
#: Decompressed bytes of one member a reader holds back until its trailer checks them.  A
#: member is one flush (512 lines of a few KB, some MB with --keep-certs); a larger one is
#: no flush of ours (``gzip results.ndjson`` makes one member of the whole file) and streams
#: on past this, its lines read as a plain file's would be.
MEMBER_HOLD_BYTES = 64 << 20


class CorruptCompressed(Exception):
    """A gzip member before the end of the file is damaged, or the file is not gzip at all."""


def is_compressed_path(path: str | os.PathLike[str]) -> bool:
    """Whether a results file at ``path`` is written compressed (decided by its name)."""
    return os.fspath(path).endswith(".gz")


def compress_frame(data: bytes) -> bytes:
    """One complete, independently decodable gzip member (deterministic: mtime 0)."""
    return gzip.compress(data, compresslevel=LEVEL, mtime=0)


class GzipMembers(io.RawIOBase):
    """The decompressed bytes of a sequence of gzip members, streamed.

    After the stream is read to its end: ``complete_end`` is the compressed offset just past
    the last complete member, ``complete_out`` the decompressed offset there, and ``torn``
    says the file ends inside a member (its data was streamed; see the module docstring).
    A damaged member is :class:`CorruptCompressed`, unless nothing but NUL filler (a file
    system crash) follows the last complete member, which counts as torn.  ``hold`` > 0
    releases a member's data only when the member is complete (up to ``hold`` bytes of it,
    then as it comes): a torn last member then yields nothing.
    """

    def __init__(self, raw: BinaryIO, label: str, *, hold: int = 0) -> None:
        super().__init__()
        self._raw = raw
        self._label = label
        self._hold = hold
        self._held: list[bytes] = []
        self._held_size = 0
        self._decompressor = zlib.decompressobj(31)
        self._input = b""
        self._pending = b""
        self._member_in = 0
        self._out = 0
        self._done = False
        self.complete_end = 0
        self.complete_out = 0
        self.torn = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            if not self._step():
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _step(self) -> bool:
        """Decompress some more; False at the end of the file."""
        if self._done:
            return False
        if not self._input:
            self._input = self._raw.read(_READ)
            if not self._input:
                self.torn = self._member_in > 0
                self._done = True
                return False
        fed = len(self._input)
        try:
            data = self._decompressor.decompress(self._input, _STEP)
        except zlib.error as exc:
            return self._damaged(exc)
        ended = self._decompressor.eof
        rest = self._decompressor.unused_data if ended else self._decompressor.unconsumed_tail
        self._member_in += fed - len(rest)
        self._input = rest
        self._out += len(data)
        if ended:
            self.complete_end += self._member_in
            self._member_in = 0
            self._decompressor = zlib.decompressobj(31)
            self.complete_out = self._out
        self._pending = self._release(data, ended)
        return True

    def _release(self, data: bytes, ended: bool) -> bytes:
        """What of the member's data a reader may see now (see ``hold``)."""
        if not self._hold or (not self._held and self._held_size):
            if ended:
                self._held_size = 0
            return data  # not holding, or streaming a member past the hold
        self._held.append(data)
        self._held_size += len(data)
        if not ended and self._held_size <= self._hold:
            return b""
        released = b"".join(self._held)
        self._held.clear()
        self._held_size = 0 if ended else self._held_size
        return released

    def _damaged(self, exc: zlib.error) -> bool:
        rest = self._input + self._raw.read()
        if self._member_in == 0 and not rest.strip(b"\x00"):
            self.torn = self._done = True  # NUL filler after the last complete member
            self._input = b""
            return False
        where = (
            "not a gzip file" if self.complete_end == 0 and self._member_in == 0 else "damaged gzip member"
        )
        raise CorruptCompressed(
            f"{self._label}: {where} at byte {self.complete_end + self._member_in} ({exc})"
        ) from None


def open_results(path: str | os.PathLike[str]) -> BinaryIO:
    """A results file's committed lines as a binary stream, plain or gzip (sniffed by the
    magic; a ``*.gz`` file shorter than it, by the name), a torn last member held back.

    The caller closes it; raises OSError like ``open``."""
    stream = open(path, "rb")  # noqa: SIM115 - returned to the caller
    try:
        magic = stream.read(2)
        stream.seek(0)
    except BaseException:
        stream.close()
        raise
    torn_magic = len(magic) < len(GZIP_MAGIC) and is_compressed_path(path) and GZIP_MAGIC.startswith(magic)
    if magic != GZIP_MAGIC and not torn_magic:
        return stream
    return io.BufferedReader(GzipMembers(stream, os.fspath(path), hold=MEMBER_HOLD_BYTES), _READ)


def last_member(path: str | os.PathLike[str]) -> bytes | None:
    """The decompressed data of a gzip results file's last member, if that member is
    complete and starts within the last MiB (a run line is always a member of its own);
    None otherwise (torn, or the last member is larger)."""
    with open(path, "rb") as stream:
        end = stream.seek(0, os.SEEK_END)
        start = max(0, end - _TAIL_WINDOW)
        stream.seek(start)
        tail = stream.read()
    at = len(tail)
    while (at := tail.rfind(_MEMBER_HEAD, 0, at)) >= 0:
        decompressor = zlib.decompressobj(31)
        try:
            data = decompressor.decompress(tail[at:], _TAIL_WINDOW * 64)
        except zlib.error:
            continue
        if decompressor.eof and not decompressor.unused_data:
            return data
    return None
