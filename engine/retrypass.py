"""A retry pass over a results file: re-measure some of its targets into a side file, then
merge the side file in, without ever losing a line.

Nothing is removed before its replacement exists.  The retried targets are measured into a
side file (``<results>.retry``, an ordinary results file) while the results file stays as it
is; when the pass ends -- done, stopped, or failed -- the side file is merged in with one
atomic rename: each retried target's old line gives way to its new one, every other line is
kept, and the new side records (lines several targets reference, ``ResultStore.side_field``)
follow the old ones, so a reference still resolves to the latest side record before it.  A
pass that measured nothing leaves an empty side file and the results file untouched.  A pass
killed outright leaves the side file behind; the next open of the same results file merges it
first, so nothing measured is lost and nothing is lost that was not yet measured again.

The merged file is finished (ends with a run line) when the retry pass itself finished, or
when the results file was finished and the pass only replaced targets it already held.

Which targets a pass measures again, whether a new line is still unsettled, and how a run
line reads are the caller's (``MergeRules``): this module only moves lines.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from engine.checkpoint import MARKER_FIELD, MAX_LINE_BYTES, DigestSet, finished, is_marker
from engine.compressed import CorruptCompressed, compress_frame, is_compressed_path, open_results

__all__ = ["Line", "MergeRules", "Merged", "RetryError", "RetryPass", "read_lines", "side_path"]

#: The field naming a target's line (``ResultStore.key_field``).
_KEY_FIELD = "domain"


class RetryError(Exception):
    """The results file cannot be retried or merged (missing, in use, corrupt)."""


def side_path(path: Path) -> Path:
    """Where a retry pass writes before its lines are merged into ``path``."""
    return path.with_name(path.name + ".retry")


@dataclass(frozen=True, slots=True)
class Line:
    """One complete line of a results file: its bytes and its parsed record."""

    raw: bytes
    record: dict[str, Any]

    @property
    def key(self) -> str | None:
        """The target this line finishes; None for a run line or a side record."""
        key = self.record.get(_KEY_FIELD)
        return key if isinstance(key, str) and not is_marker(self.record) else None


def read_lines(stream: BinaryIO, label: Path) -> Iterator[Line]:
    """Complete lines of a results file (plain or compressed: ``open_results``); a torn last
    line is skipped (a kill left it), anything unparseable before the end is refused."""
    try:
        yield from _parsed(stream, label)
    except CorruptCompressed as exc:
        raise RetryError(str(exc)) from None


def _parsed(stream: BinaryIO, label: Path) -> Iterator[Line]:
    for number, raw in enumerate(iter(lambda: stream.readline(MAX_LINE_BYTES + 1), b""), start=1):
        if not raw.endswith(b"\n"):
            return  # torn tail (or an over-long line at the end): its target is measured again
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RetryError(f"{label}: corrupt line {number}; not an mxscan results file?") from None
        if not isinstance(record, dict) or "schema_version" not in record:
            raise RetryError(f"{label}: line {number} is not an mxscan results line")
        yield Line(raw, record)


def _finishes(line: Line | None) -> bool:
    return line is not None and is_marker(line.record) and line.record[MARKER_FIELD].get("finished") is True


class MergeRules(Protocol):
    """What a merge must know about the records it moves."""

    def unsettled(self, record: dict[str, Any]) -> bool:
        """A retried target's new line still gives no answer (counted in ``Merged``)."""

    def run_line(self, domains: int, last_run: Mapping[str, Any]) -> bytes:
        """The run line ending a finished merged file (with its newline): ``domains`` targets,
        ``last_run`` the run object of the run line it follows on from."""


@dataclass(frozen=True, slots=True)
class Merged:
    """What merging a side file changed."""

    #: Target lines of the results file replaced by newer ones.
    replaced: int
    #: Targets the results file did not hold before.
    added: int
    #: Retried targets whose new line is still unsettled (``MergeRules.unsettled``).
    still_unknown: int
    #: The merged file ends with a run line.
    finished: bool


class RetryPass:
    """One results file held (``flock``) for a retry pass or a merge of a leftover side file;
    ``merge`` folds the side file in."""

    def __init__(self, path: Path, rules: MergeRules) -> None:
        self.path = path
        self.side = side_path(path)
        self.rules = rules
        self._fd: int | None = None

    def __enter__(self) -> RetryPass:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RetryError(f"{self.path}: no results file to retry (run the scan first)") from None
        except OSError as exc:
            raise RetryError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RetryError(f"{self.path}: in use by another mxscan process") from None
        self._fd = fd
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def lines(self, path: Path) -> Iterator[Line]:
        """The complete lines of ``path`` (the results file or the side file)."""
        with open_results(path) as stream:
            yield from read_lines(stream, path)

    def merge(self) -> Merged | None:
        """Fold the side file into the results file (one atomic rename) and remove it;
        None when there is no side file.  Idempotent: a merge killed after its rename is
        done again from the same side file with the same result."""
        if not self.side.exists():
            return None
        side_keys: set[str] = set()
        still_unknown = 0
        side_last: Line | None = None
        for line in self.lines(self.side):
            side_last = line
            if (key := line.key) is not None:
                side_keys.add(key)
                still_unknown += self.rules.unsettled(line.record)
        side_finished = _finishes(side_last)
        if not side_keys and not (side_finished and not finished(self.path)):
            self.side.unlink()  # nothing measured again (a resolver that was down, ...)
            return Merged(0, 0, 0, finished(self.path))
        temporary = self.path.with_name(self.path.name + ".retry-tmp")
        with temporary.open("wb") as raw_target:
            target = _Framed(raw_target, is_compressed_path(self.path))
            replaced, added, done = self._rewrite(target, side_keys, side_last)
            target.flush()
            os.fsync(raw_target.fileno())
        os.replace(temporary, self.path)
        _fsync_directory(self.path.parent)
        self.side.unlink()
        return Merged(replaced, added, still_unknown, done)

    def _rewrite(self, target: _Framed, side_keys: set[str], side_last: Line | None) -> tuple[int, int, bool]:
        """The results file's lines less those the side file replaces, then the side file's,
        then a run line if the merged file is finished: (replaced, added, finished)."""
        main_keys = DigestSet()  # every target of the results file: digests, not names
        main_last: Line | None = None
        replaced = 0
        for line in self.lines(self.path):
            main_last = line
            if (key := line.key) is not None:
                main_keys.add(key)
                if key in side_keys:
                    replaced += 1
                    continue
            if not is_marker(line.record):  # a run line is written anew at the end
                target.write(line.raw)
        for line in self.lines(self.side):
            if not is_marker(line.record):
                target.write(line.raw)
        added = sum(1 for key in side_keys if key not in main_keys)
        side_finished = _finishes(side_last)
        done = side_finished or (_finishes(main_last) and not added)
        if done:
            marker = side_last if side_finished else main_last
            assert marker is not None
            target.flush()  # the run line stands alone in its member (engine.checkpoint.finished)
            target.write(self.rules.run_line(len(main_keys) + added, marker.record[MARKER_FIELD]))
        return replaced, added, done


class _Framed:
    """Lines written plain, or as the scan writes a compressed file: a gzip member per
    ``_FRAME_LINES`` lines (engine.compressed)."""

    def __init__(self, target: BinaryIO, compress: bool) -> None:
        self._target = target
        self._compress = compress
        self._lines: list[bytes] = []

    def write(self, line: bytes) -> None:
        if not self._compress:
            self._target.write(line)
            return
        self._lines.append(line)
        if len(self._lines) >= _FRAME_LINES:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._target.write(compress_frame(b"".join(self._lines)))
            self._lines.clear()
        self._target.flush()


#: Lines per gzip member when a merge rewrites a compressed file (the store's flush size).
_FRAME_LINES = 512


def _fsync_directory(directory: Path) -> None:
    """The rename itself survives a power cut only once the directory is synced."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
