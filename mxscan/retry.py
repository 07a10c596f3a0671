"""``mxscan scan --retry-unknown``: re-probe, in place, the domains whose results
were unknown (timeouts, throttling, SERVFAIL, crashes, a lost probe process).

Nothing is removed before its replacement exists.  The retried domains are
measured into a side file (``<results>.retry``, an ordinary results file) while
the results file stays as it is; when the pass ends -- done, stopped, or failed
-- the side file is merged in with one atomic rename: each retried domain's old
line gives way to its new one, every other line is kept, and the new host lines
follow the old ones (a reference still resolves to the latest host line before
it).  A resolver that is down, a probe process that does not start, a bad list:
the side file is empty and the results file is never touched.  A pass killed
outright leaves the side file behind; the next scan of the same results file
(with or without ``--retry-unknown``) merges it first, so nothing measured is
lost and nothing is lost that was not yet measured again.

The merged file is finished (ends with a run line) when the retry pass itself
finished, or when the results file was finished and the pass only replaced
domains it already held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from engine.checkpoint import MAX_LINE_BYTES, DigestSet, finished, is_marker
from engine.compressed import CorruptCompressed, compress_frame, is_compressed_path, open_results
from engine.records import decode
from engine.status import Status
from mxscan import __version__
from probes.domain import RunEnd, ShardRun, run_line
from probes.posture import answers
from probes.results import is_host_line

__all__ = ["Merged", "RetryError", "RetryRun", "needs_retry", "side_path"]


def needs_retry(record: dict[str, Any], crashed_refs: AbstractSet[str] = frozenset()) -> bool:
    """A crash, or a question the measurement could not settle (never a definite no).

    A crash is the domain's own status, a probe that gave no result (``errors``), a policy
    fetch or an SMTP probe (``crashed_refs``: refs whose host line says ``unknown-error``,
    e.g. the probe process died) that ended in ``unknown-error``: even where the other MX
    hosts settle the domain's figures, such a result is no measurement."""
    if record.get("status") == Status.UNKNOWN_ERROR or record.get("errors"):
        return True
    if ((record.get("mta_sts") or {}).get("fetch") or {}).get("status") == Status.UNKNOWN_ERROR:
        return True
    if crashed_refs and any(
        ref in crashed_refs for t in record.get("mx_transport") or () for ref in t.get("smtp_refs") or ()
    ):
        return True
    return bool(answers(record).unknown())


class RetryError(Exception):
    """The results file cannot be retried or merged (missing, in use, corrupt)."""


def side_path(path: Path) -> Path:
    """Where a retry pass writes before its lines are merged into ``path``."""
    return path.with_name(path.name + ".retry")


@dataclass(frozen=True, slots=True)
class _Line:
    raw: bytes
    record: dict[str, Any]

    @property
    def key(self) -> str | None:
        if is_marker(self.record) or is_host_line(self.record):
            return None
        domain = self.record.get("domain")
        return domain if isinstance(domain, str) else None


def _lines(stream: BinaryIO, label: Path) -> Iterator[_Line]:
    """Complete lines of a results file (plain or compressed: ``open_results``); a torn last
    line is skipped (a kill left it), anything unparseable before the end is refused."""
    try:
        yield from _parsed(stream, label)
    except CorruptCompressed as exc:
        raise RetryError(str(exc)) from None


def _parsed(stream: BinaryIO, label: Path) -> Iterator[_Line]:
    for number, raw in enumerate(iter(lambda: stream.readline(MAX_LINE_BYTES + 1), b""), start=1):
        if not raw.endswith(b"\n"):
            return  # torn tail (or an over-long line at the end): its domain is measured again
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RetryError(f"{label}: corrupt line {number}; not an mxscan results file?") from None
        if not isinstance(record, dict) or "schema_version" not in record:
            raise RetryError(f"{label}: line {number} is not an mxscan results line")
        yield _Line(raw, record)


def _finishes(line: _Line | None) -> bool:
    return line is not None and is_marker(line.record) and line.record["run"].get("finished") is True


@dataclass(frozen=True, slots=True)
class Merged:
    """What merging a side file changed."""

    #: Domain lines of the results file replaced by newer ones.
    replaced: int
    #: Domains the results file did not hold before.
    added: int
    #: Retried domains whose new result is still unknown.
    still_unknown: int
    #: The merged file ends with a run line.
    finished: bool


class RetryRun:
    """One results file held (``flock``) for a retry pass or a merge of a leftover side file.

    ``open`` merges a side file an earlier pass left; ``plan`` reads which domains need a
    retry (without changing anything); ``merge`` folds this pass's side file in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.side = side_path(path)
        self._fd: int | None = None

    def __enter__(self) -> RetryRun:
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

    def plan(self) -> tuple[DigestSet, int]:
        """(domains kept as they are, domains to measure again): each domain's latest line
        decides.  Reads only; the file changes when ``merge`` runs.  Both sets are digests
        (``DigestSet``, ~18 B a domain): the plan of a 10M-domain file fits in ~0.2 GB."""
        kept, redo = DigestSet(), DigestSet()
        crashed: set[str] = set()  # refs whose latest host line so far is unknown-error
        with open_results(self.path) as stream:
            for line in _lines(stream, self.path):
                key = line.key
                if key is not None:
                    retry = needs_retry(line.record, crashed)
                    (redo if retry else kept).add(key)
                    (kept if retry else redo).discard(key)
                elif is_host_line(line.record):
                    ref = str(line.record["ref"])
                    if (line.record.get("smtp") or {}).get("status") == Status.UNKNOWN_ERROR:
                        crashed.add(ref)
                    else:
                        crashed.discard(ref)
        return kept, len(redo)

    def merge(self) -> Merged | None:
        """Fold the side file into the results file (one atomic rename) and remove it;
        None when there is no side file.  Idempotent: a merge killed after its rename is
        done again from the same side file with the same result."""
        if not self.side.exists():
            return None
        side_keys: set[str] = set()
        still_unknown = 0
        side_last: _Line | None = None
        with open_results(self.side) as stream:
            for line in _lines(stream, self.side):
                side_last = line
                if (key := line.key) is not None:
                    side_keys.add(key)
                    still_unknown += needs_retry(line.record)
        side_finished = _finishes(side_last)
        if not side_keys and not (side_finished and not finished(self.path)):
            self.side.unlink()  # nothing measured again (a resolver that was down, ...)
            return Merged(0, 0, 0, finished(self.path))
        temporary = self.path.with_name(self.path.name + ".retry-tmp")
        main_keys = DigestSet()  # every domain of the results file: digests, not names
        main_last: _Line | None = None
        replaced = 0
        with open_results(self.path) as source, temporary.open("wb") as raw_target:
            target = _Framed(raw_target, is_compressed_path(self.path))
            for line in _lines(source, self.path):
                main_last = line
                if (key := line.key) is not None:
                    main_keys.add(key)
                    if key in side_keys:
                        replaced += 1
                        continue
                if not is_marker(line.record):  # a run line is written anew at the end
                    target.write(line.raw)
            with open_results(self.side) as stream:
                for line in _lines(stream, self.side):
                    if not is_marker(line.record):
                        target.write(line.raw)
            added = sum(1 for key in side_keys if key not in main_keys)
            done = side_finished or (_finishes(main_last) and not added)
            if done:
                marker = side_last if side_finished else main_last
                assert marker is not None
                started = str(marker.record["run"].get("started", ""))
                target.flush()  # the run line stands alone in its member (engine.checkpoint.finished)
                # A shard's file stays that shard's (mxscan merge reads it from the run line).
                target.write(_run_line(len(main_keys) + added, started, marker.record["run"].get("shard")))
            target.flush()
            os.fsync(raw_target.fileno())
        os.replace(temporary, self.path)
        _fsync_directory(self.path.parent)
        self.side.unlink()
        return Merged(replaced, added, still_unknown, done)


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


def _run_line(domains: int, started: str, shard: dict[str, Any] | None = None) -> bytes:
    now = time.time()  # the format of every other timestamp in the file
    ended = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    return run_line(
        RunEnd(
            finished=True,
            domains=domains,
            started=started,
            ended=ended,
            tool="mxscan",
            version=__version__,
            shard=None if shard is None else decode(ShardRun, shard),
        )
    )


def _fsync_directory(directory: Path) -> None:
    """The rename itself survives a power cut only once the directory is synced."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
