"""The NDJSON results file is the checkpoint.

Theory of operation
-------------------
Every finished target is one line: a complete JSON object ending in ``\\n``.
Lines are buffered and written with a single ``os.write`` on an ``O_APPEND``
descriptor per flush, so a ``kill -9`` (or a crash) can only ever leave the
*last* line incomplete: everything before it was written by earlier, finished
writes.  Resuming is therefore reading the file back:

* a torn last line (no trailing newline, or not parseable) is cut off with
  ``ftruncate`` and reported through ``dropped_torn_tail``; the target it
  belonged to is simply measured again;
* an unparseable line anywhere else cannot come from a kill, so it is refused
  with :class:`StoreError` naming the line, never silently dropped;
* a line that parses but lacks the key field or ``schema_version`` means the
  path is some other file: refuse rather than append to (or truncate) it.

Only lines that start with ``{`` (or are NUL filler left by a file-system
crash) are ever treated as a torn tail, so a foreign one-line file is refused
rather than truncated.  An exclusive ``flock`` keeps two scans from
interleaving lines in one file.

Finished or not
---------------
A run that has written a line for every target appends a *marker line*
(``{"schema_version": .., "run": {"finished": true, ...}}``).  The file is
finished exactly when its last line is such a marker: anything appended later
(a resume with a longer list, a torn tail from a kill) makes it unfinished
again until the next marker, so the marker never needs removing and a reader
learns the state from the last line alone (``finished``).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import stat
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, Protocol

import orjson

from engine.compressed import (
    GZIP_MAGIC,
    CorruptCompressed,
    GzipMembers,
    compress_frame,
    is_compressed_path,
    last_member,
    open_results,
)

__all__ = [
    "MARKER_FIELD",
    "MAX_LINE_BYTES",
    "DigestSet",
    "KeySet",
    "ResultStore",
    "StoreError",
    "finished",
    "is_marker",
    "read_records",
]

#: Longest line read back; a record is a few KB, a certificate-heavy one well under 1 MiB.
MAX_LINE_BYTES = 64 * 1024 * 1024
_NOT_OURS = "not an mxscan results file (use --fresh to overwrite)"
#: The field of a marker line (see "Finished or not").
MARKER_FIELD = "run"
#: A marker line is a few hundred bytes; a last line longer than this is not one.
_MARKER_MAX_BYTES = 64 * 1024


#: What ``open`` counted (resumed, side records, duplicate keys, markers, finished): taken back
#: to its value before the first line of a torn gzip member.
_Counts = tuple[int, int, int, int, bool]


class StoreError(Exception):
    """The results file cannot be used: not ours, corrupt before its end, or not writable."""


def _lines(stream: BinaryIO, label: str) -> Iterator[tuple[int, int, bytes, bool]]:
    """(line number, start offset, line bytes, is_last) with one line of look-ahead."""
    offset = 0
    lineno = 0
    current = stream.readline(MAX_LINE_BYTES + 1)
    while current:
        lineno += 1
        if len(current) > MAX_LINE_BYTES:
            raise StoreError(f"{label}: line {lineno} is longer than {MAX_LINE_BYTES} bytes")
        following = stream.readline(MAX_LINE_BYTES + 1) if current.endswith(b"\n") else b""
        yield lineno, offset, current, not following
        offset += len(current)
        current = following


def _is_torn_tail(line: bytes) -> bool:
    """Could this last line be the start of a line we wrote? (ours start with ``{``)."""
    return line.startswith(b"{") or not line.strip(b"\x00\n")


def _parse(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def is_marker(record: object, key_field: str = "domain") -> bool:
    """A run marker line: a ``run`` object and no key (a target's line never has ``run``)."""
    return isinstance(record, dict) and key_field not in record and isinstance(record.get(MARKER_FIELD), dict)


def _finishes(record: object, key_field: str = "domain") -> bool:
    if not is_marker(record, key_field):
        return False
    assert isinstance(record, dict)
    return record[MARKER_FIELD].get("finished") is True


def finished(path: str | os.PathLike[str]) -> bool:
    """Whether the file's last line is a finished-run marker (reads only the file's end;
    of a compressed file its last member, where the run line always stands alone).

    A torn tail, a missing marker (a run killed or stopped, or a file written before
    markers existed) or an unreadable file: False.
    """
    try:
        with open(path, "rb") as stream:
            compressed = stream.read(2) == GZIP_MAGIC  # sniffed, as open_results does
            end = stream.seek(0, os.SEEK_END)
            stream.seek(max(0, end - _MARKER_MAX_BYTES))
            tail = stream.read()
        if compressed:
            tail = last_member(path) or b""
            end = len(tail)
    except OSError:
        return False
    if not tail.endswith(b"\n"):
        return False  # empty, or torn: something was being appended after any marker
    start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
    if start == 0 and end > len(tail):
        return False  # the last line is longer than any marker
    return _finishes(_parse(tail[start:]))


def read_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Stream the parsed records of a results file, skipping a torn last line.

    Raises StoreError for an unparseable line before the last one or a line
    that is not a JSON object.
    """
    label = os.fspath(path)
    try:
        stream = open_results(path)
    except OSError as exc:
        raise StoreError(f"{label}: cannot read ({exc.strerror or exc})") from None
    with stream:
        try:
            for lineno, _, line, is_last in _lines(stream, label):
                torn = not line.endswith(b"\n")
                record = None if torn else _parse(line)
                if record is None:
                    if is_last and _is_torn_tail(line):
                        return
                    raise StoreError(f"{label}: corrupt line {lineno} (not JSON)")
                if not isinstance(record, dict):
                    raise StoreError(f"{label}: line {lineno}: {_NOT_OURS}")
                yield record
        except CorruptCompressed as exc:
            raise StoreError(str(exc)) from None


class KeySet(Protocol):
    """What a scan asks of the keys already written: membership and how many."""

    def __contains__(self, key: object, /) -> bool: ...
    def __len__(self) -> int: ...


class DigestSet:
    """A set of keys held as 8-byte BLAKE2b digests in an open-addressing table (``array('Q')``,
    at most half full): 16-32 bytes per key, against ~100 for a set of domain names (a
    resume of 10M finished domains holds ~0.2-0.3 GB instead of ~1 GB).

    Two different keys share a 64-bit digest with probability ~n²/2⁶⁵ (3·10⁻⁶ for 10M keys);
    such a key would count as finished and be skipped, never measured twice.
    """

    __slots__ = ("_count", "_mask", "_table")

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._table = array("Q", bytes(8 * 1024))
        self._mask = 1023
        self._count = 0
        for key in keys:
            self.add(key)

    @staticmethod
    def _digest(key: str) -> int:
        value = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
        return value or 1  # 0 marks an empty slot

    def _slot(self, digest: int) -> int:
        """The slot holding ``digest``, or the empty slot where it would go (linear probing)."""
        table, mask = self._table, self._mask
        at = digest & mask
        while table[at] and table[at] != digest:
            at = (at + 1) & mask
        return at

    def add(self, key: str) -> bool:
        """Add ``key``; False if it was there already."""
        digest = self._digest(key)
        at = self._slot(digest)
        if self._table[at]:
            return False
        self._table[at] = digest
        self._count += 1
        if 2 * self._count > len(self._table):
            self._grow()
        return True

    def discard(self, key: str) -> None:
        """Remove ``key`` (backward-shift deletion keeps every probe chain intact)."""
        table, mask = self._table, self._mask
        at = self._slot(self._digest(key))
        if not table[at]:
            return
        table[at] = 0
        self._count -= 1
        nxt = (at + 1) & mask
        while table[nxt]:
            home = table[nxt] & mask
            # move the entry back if its home is not within (at, nxt]
            if (nxt - home) & mask >= (nxt - at) & mask:
                table[at], table[nxt] = table[nxt], 0
                at = nxt
            nxt = (nxt + 1) & mask

    def _grow(self) -> None:
        old = self._table
        # By repetition: ``array("Q", bytes(n))`` would hold a bytes copy of the new table
        # beside it while growing (the peak 40 bytes a slot of the old table instead of 24).
        self._table = array("Q", (0,)) * (2 * len(old))
        self._mask = len(self._table) - 1
        for digest in old:
            if digest:
                self._table[self._slot(digest)] = digest

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self._table[self._slot(self._digest(key))])

    def __len__(self) -> int:
        return self._count

    def nbytes(self) -> int:
        """Bytes of the table (the object's own memory, a few dozen bytes more)."""
        return self._table.itemsize * len(self._table)


class ResultStore:
    """Append-only NDJSON results file that can be resumed after any kill.

    Usage: ``done = store.open()``; skip targets in ``done``; ``append`` one
    encoded line per finished target; ``close()`` at the end.  ``flush`` runs
    on ``append`` once ``flush_lines`` are buffered or ``flush_interval``
    seconds have passed since the last flush; an idle scan should call
    ``flush()`` from a periodic task so results do not wait for the next append.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fresh: bool = False,
        keep_until_written: bool = False,
        key_field: str = "domain",
        side_field: str = "ref",
        flush_interval: float = 0.5,
        flush_lines: int = 512,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = os.fspath(path)
        #: Written as one gzip member per flush (engine.compressed), by the file's name.
        self.compress = is_compressed_path(self.path)
        self.fresh = fresh
        #: With ``fresh``: the old contents stay until the first flush writes a line, so a run
        #: that stops before it measured anything (a resolver that is down) loses nothing.
        self.keep_until_written = keep_until_written
        self._truncate_pending = False
        self.key_field = key_field
        #: Lines with this field (and no key) are side records: results several targets
        #: reference (written before the first of them); they complete no target.
        self.side_field = side_field
        self.flush_interval = flush_interval
        self.flush_lines = max(1, flush_lines)
        self._clock = clock
        self._fd: int | None = None
        self._closed = False
        self._buffer: list[bytes] = []
        self._last_flush = 0.0
        #: Records found in the file on open (duplicates included).
        self.resumed = 0
        #: Side records found in the file on open.
        self.side_records = 0
        #: Records on open whose key had already appeared earlier in the file.
        self.duplicate_keys = 0
        #: A torn last line was cut off on open.
        self.dropped_torn_tail = False
        #: Lines appended since open (buffered or written).
        self.appended = 0
        #: On open, the file's last line was a finished-run marker (see "Finished or not").
        self.finished = False
        #: Marker lines found in the file on open.
        self.markers = 0

    def open(self) -> DigestSet:
        """Create, truncate (``fresh``) or resume the file; return the keys already written."""
        if self._fd is not None or self._closed:
            raise StoreError(f"{self.path}: store already opened")
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot open for writing ({exc.strerror or exc})") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"{self.path}: not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"{self.path}: in use by another mxscan process") from None
            keys = DigestSet()
            if self.fresh and self.keep_until_written:
                self._truncate_pending = True
            elif self.fresh:
                os.ftruncate(fd, 0)
            else:
                keys = self._resume(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._last_flush = self._clock()
        return keys

    def _resume(self, fd: int) -> DigestSet:
        keys = DigestSet()
        good_end = 0
        #: Compressed: (end offset, key newly added or None, counts before the line) of lines not
        #: yet known to lie in a complete member; those of a torn last member are taken back
        #: (engine.compressed).
        pending: list[tuple[int, str | None, _Counts]] = []
        with os.fdopen(os.dup(fd), "rb") as raw:
            members = GzipMembers(raw, self.path) if self.compress else None
            stream: BinaryIO = io.BufferedReader(members, 1 << 16) if members else raw
            try:
                for lineno, offset, line, is_last in _lines(stream, self.path):
                    torn = not line.endswith(b"\n")
                    record = None if torn else _parse(line)
                    if record is None:
                        if is_last and _is_torn_tail(line):
                            self.dropped_torn_tail = True
                            good_end = offset
                            break
                        if lineno == 1:
                            raise StoreError(f"{self.path}: {_NOT_OURS}")
                        raise StoreError(
                            f"{self.path}: corrupt line {lineno} before the end of the file; refusing to "
                            "resume (fix or remove that line, or use --fresh to start over)"
                        )
                    key = record.get(self.key_field) if isinstance(record, dict) else None
                    if not isinstance(record, dict) or "schema_version" not in record:
                        raise StoreError(f"{self.path}: line {lineno}: {_NOT_OURS}")
                    good_end = offset + len(line)
                    before = self._counts()
                    new_key = self._count(record, key, lineno, keys)
                    if members is not None:
                        pending.append((good_end, new_key, before))
                        if len(pending) > 4096:
                            pending = [p for p in pending if p[0] > members.complete_out]
                if members is not None:
                    stream.read()  # to the end: the last member's boundary is known only there
            except CorruptCompressed as exc:
                raise StoreError(f"{exc}; refusing to resume (use --fresh to start over)") from None
        if members is not None:
            self._take_back_torn_member(members, pending, good_end, keys)
            if self.dropped_torn_tail:
                os.ftruncate(fd, members.complete_end)
        elif self.dropped_torn_tail:
            os.ftruncate(fd, good_end)
        return keys

    def _counts(self) -> _Counts:
        return (self.resumed, self.side_records, self.duplicate_keys, self.markers, self.finished)

    def _count(self, record: dict[str, Any], key: object, lineno: int, keys: DigestSet) -> str | None:
        """Count one complete line read on resume; the key it newly finished, if any."""
        # Only the last line decides (a marker followed by more lines is history).
        self.finished = _finishes(record, self.key_field)
        if self.finished or is_marker(record, self.key_field):
            self.markers += 1
            return None
        if key is None and isinstance(record.get(self.side_field), str):
            self.side_records += 1
            return None
        if not isinstance(key, str):
            raise StoreError(f"{self.path}: line {lineno}: {_NOT_OURS}")
        self.resumed += 1
        if keys.add(key):
            return key
        self.duplicate_keys += 1
        return None

    def _take_back_torn_member(
        self,
        members: GzipMembers,
        pending: list[tuple[int, str | None, _Counts]],
        torn_at: int,
        keys: DigestSet,
    ) -> None:
        """Lines past the last complete member were never committed: their keys are not done,
        and the file is counted as it is once they are cut (as a plain file's torn line)."""
        if self.dropped_torn_tail and torn_at < members.complete_out:
            raise StoreError(
                f"{self.path}: a torn line inside a complete gzip member cannot come from a kill; "
                "refusing to resume (use --fresh to start over)"
            )
        beyond = [(key, before) for end, key, before in pending if end > members.complete_out]
        if not beyond and not members.torn and not self.dropped_torn_tail:
            return
        self.dropped_torn_tail = True
        if beyond:
            self.resumed, self.side_records, self.duplicate_keys, self.markers, self.finished = beyond[0][1]
        for key, _ in beyond:
            if key is not None:
                keys.discard(key)

    def append(self, line: bytes) -> None:
        """Buffer one complete NDJSON line (exactly one ``\\n``, at its end)."""
        if self._fd is None:
            raise StoreError(f"{self.path}: store is not open")
        if not line or line.find(b"\n") != len(line) - 1:
            raise ValueError("append() takes exactly one line ending in b'\\n'")
        self._buffer.append(line)
        self.appended += 1
        if len(self._buffer) >= self.flush_lines or self._clock() - self._last_flush >= self.flush_interval:
            self.flush()

    def append_alone(self, line: bytes) -> None:
        """Write ``line`` as a flush of its own (what is buffered first): a run line stands
        alone in its gzip member, so ``finished`` reads only the file's last member."""
        self.flush()
        self.append(line)
        self.flush()

    def flush(self) -> None:
        """Write all buffered lines with one ``os.write`` (looping only on a short write)."""
        self._last_flush = self._clock()
        if not self._buffer or self._fd is None:
            return
        joined = b"".join(self._buffer)
        data = memoryview(compress_frame(joined) if self.compress else joined)
        self._buffer.clear()
        try:
            if self._truncate_pending:
                os.ftruncate(self._fd, 0)
                self._truncate_pending = False
            # Regular files take the whole buffer in one write() unless the disk
            # fills; a short write still only extends the tail.
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def close(self) -> None:
        """Flush, fsync and close; safe to call more than once."""
        if self._fd is None:
            self._closed = True
            return
        fd = self._fd
        try:
            self.flush()
            os.fsync(fd)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        finally:
            self._fd = None
            self._closed = True
            os.close(fd)  # also releases the flock
