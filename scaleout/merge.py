"""``mxscan merge OUT FILE...``: the N files of a ``--shard K/N`` scan joined into one.

Checked before anything is written:

* every file is a shard of the same scan: its run line names the shard (K/N) and the
  digests of the list and of the measurement options (``scaleout.shard``), equal in all;
  a file of another scan, a whole-list file, two files of one shard are refused;
* every domain of a file is of that file's shard (the hash says so), and no domain is in
  two files.  A domain in two files is an error naming it -- never "the later one wins":
  with a stable hash two files can only share a domain when they are not the shards of one
  scan (a shard given twice under two names, a file of another split), which a silent
  choice would hide;
* every file is finished and all N shards are given, unless ``--allow-unfinished``: then
  what there is is merged (a file without a run line is taken as the shard its domains hash
  to), and the merged file is unfinished (no run line) -- a scan of the whole list with
  OUT as its results file then measures only what is missing.

The merged file is written beside OUT and renamed onto it (OUT exists completely or not at
all) through the results store (``engine.checkpoint``: plain or gzip by OUT's name).  Lines
are copied as they are, file after file, run lines left out; host lines come with their
file's domains, so every reference still resolves to the latest host line before it (the
results-file layout, ``probes.results``).  A finished merge ends with a run line for the
whole list.  Inputs are read under a shared lock: a file a scan is still writing is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.checkpoint import DigestSet, ResultStore, StoreError, is_marker
from engine.compressed import open_results
from engine.retrypass import Line, RetryError, read_lines
from mxscan import __version__
from probes.domain import RunEnd, run_line
from probes.writer import now
from scaleout.shard import shard_of

__all__ = ["MergeError", "Merged", "merge_shards"]


class MergeError(Exception):
    """The files cannot be merged; the message names the file, shard or domain and why."""


@dataclass(frozen=True, slots=True)
class Merged:
    """What a merge wrote."""

    domains: int
    files: int
    #: The merged file ends with a run line (every shard given and finished).
    finished: bool


@dataclass(slots=True)
class _Part:
    """One input file as the survey found it."""

    path: Path
    #: The file's last line is a finished run line.
    finished: bool = False
    #: The ``run`` object of the last run line in the file, if any.
    run: dict[str, Any] | None = None
    #: (K, N) from the run line, or K inferred from the domains (N from the other files).
    index: int | None = None
    domains: int = 0

    @property
    def shard(self) -> dict[str, Any] | None:
        shard = (self.run or {}).get("shard")
        return shard if isinstance(shard, dict) else None


def merge_shards(out: Path, inputs: Sequence[Path], *, allow_unfinished: bool = False) -> Merged:
    """Merge the shard files ``inputs`` into ``out`` (see the module docstring)."""
    _check_paths(out, inputs)
    with contextlib.ExitStack() as locks:
        for path in inputs:
            locks.enter_context(_shared_lock(path))
        parts = [_survey(path) for path in inputs]
        count = _check_scan(parts)
        domains = _check_domains(parts, count)
        complete = _check_complete(parts, count, allow_unfinished)
        _write(out, parts, domains if complete else None)
    return Merged(domains=domains, files=len(parts), finished=complete)


def _check_paths(out: Path, inputs: Sequence[Path]) -> None:
    if not inputs:
        raise MergeError("no files to merge")
    if out.exists():
        raise MergeError(f"{out} exists; merge writes a new file (remove it, or give another name)")
    seen: dict[tuple[int, int], Path] = {}
    for path in inputs:
        try:
            info = path.stat()
        except OSError as exc:
            raise MergeError(f"{path}: cannot read ({exc.strerror or exc})") from None
        identity = (info.st_dev, info.st_ino)
        if identity in seen:
            raise MergeError(f"{path} is given twice (also as {seen[identity]})")
        seen[identity] = path


@contextlib.contextmanager
def _shared_lock(path: Path) -> Iterator[None]:
    """Read ``path`` under a shared flock: a scan writing it holds an exclusive one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise MergeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MergeError(f"{path}: in use by a running scan; merge it when the scan ends") from None
        yield
    finally:
        os.close(fd)


def _read(path: Path) -> Iterator[Line]:
    """The complete lines of ``path`` (a torn last line skipped, as a resume would cut it)."""
    try:
        with open_results(path) as stream:
            yield from read_lines(stream, path)
    except RetryError as exc:
        raise MergeError(f"{exc} (resume that shard's scan first: it cuts a torn tail)") from None
    except OSError as exc:
        raise MergeError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _survey(path: Path) -> _Part:
    part = _Part(path)
    last: Line | None = None
    for line in _read(path):
        last = line
        if is_marker(line.record):
            part.run = line.record["run"]
        elif line.key is not None:
            part.domains += 1
    part.finished = (
        last is not None
        and is_marker(last.record)
        and part.run is not None
        and (part.run.get("finished") is True)
    )
    if part.finished and part.shard is None:
        raise MergeError(
            f"{path} is not a shard file (its run line names no shard); merge joins the files of "
            "mxscan scan --shard K/N"
        )
    if part.shard is not None:
        part.index = int(part.shard.get("index", 0))
    return part


#: The fields of a shard's run line that N files of one scan share, and what differs when not.
_SAME_SCAN = (("count", "shard counts"), ("list", "lists"), ("names", "lists"), ("options", "options"))


def _check_scan(parts: Sequence[_Part]) -> int | None:
    """The shard count N all files agree on (None: no file says); refuses different scans and
    one shard given twice."""
    first: _Part | None = None
    for part in parts:
        shard = part.shard
        if shard is None:
            continue
        if first is None:
            first = part
            continue
        other = first.shard
        assert other is not None
        for name, what in _SAME_SCAN:
            if shard.get(name) != other.get(name):
                raise MergeError(
                    f"{first.path} and {part.path} are shards of different scans: different {what} "
                    f"({name} {other.get(name)!r} and {shard.get(name)!r})"
                )
    return None if first is None or first.shard is None else int(first.shard["count"])


def _check_domains(parts: Sequence[_Part], count: int | None) -> int:
    """Every domain in exactly one file and of that file's shard; the number of domains."""
    seen = DigestSet()
    for part in parts:
        mine = DigestSet()
        for line in _read(part.path):
            key = line.key
            if key is None or not mine.add(key):
                continue  # a line measured again in the same file: the file's own latest wins
            if not seen.add(key):
                raise MergeError(f"{key} is in {part.path} and in {_holder(parts, part, key)}")
            if count is None:
                continue
            shard = shard_of(key, count)
            if part.index is None:
                part.index = shard  # a file without a run line: the shard of its first domain
            if shard != part.index:
                raise MergeError(
                    f"{key} in {part.path} is of shard {shard}/{count}, not {part.index}/{count}: "
                    "the file is not a shard of this split"
                )
    holders: dict[int, Path] = {}
    for part in parts:
        if part.index is None:
            continue
        if part.index in holders:
            raise MergeError(f"shard {part.index}/{count} is in both {holders[part.index]} and {part.path}")
        holders[part.index] = part.path
    return len(seen)


def _holder(parts: Sequence[_Part], before: _Part, key: str) -> Path:
    """The earlier file holding ``key`` (read again: only on the way to an error)."""
    for part in parts:
        if part is before:
            break
        if any(line.key == key for line in _read(part.path)):
            return part.path
    return before.path  # pragma: no cover - a 64-bit digest collision, not a second copy


def _check_complete(parts: Sequence[_Part], count: int | None, allow_unfinished: bool) -> bool:
    """Whether every shard is given and finished; refused when not, unless allowed."""
    unfinished = [part.path for part in parts if not part.finished]
    present = {part.index for part in parts}
    missing = [k for k in range(1, (count or 0) + 1) if k not in present]
    if allow_unfinished:
        return not unfinished and not missing and count is not None
    if unfinished:
        raise MergeError(
            f"{unfinished[0]} is unfinished (no run line at its end: its scan was stopped, or has not "
            "read its whole list); run that scan again to finish it, or give --allow-unfinished"
        )
    if missing:
        raise MergeError(
            f"shard {missing[0]}/{count} is missing ({len(missing)} of {count}); give all {count} files, "
            "or --allow-unfinished to merge what there is"
        )
    return True


def _write(out: Path, parts: Sequence[_Part], domains: int | None) -> None:
    """The merged lines into a file beside ``out``, renamed onto it once complete; the run
    line (``domains`` not None) last."""
    temporary = out.with_name(out.name + ".merge-tmp")
    store = ResultStore(temporary, fresh=True)
    try:
        store.open()
        for part in parts:
            for line in _read(part.path):
                if not is_marker(line.record):
                    store.append(line.raw)
        if domains is not None:
            store.append_alone(run_line(_run_end(parts, domains)))
        store.close()
        os.replace(temporary, out)
    except StoreError as exc:
        raise MergeError(str(exc)) from None
    finally:
        store.close()
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _run_end(parts: Sequence[_Part], domains: int) -> RunEnd:
    started = min(str((part.run or {}).get("started", "")) for part in parts)
    return RunEnd(
        finished=True, domains=domains, started=started, ended=now(), tool="mxscan", version=__version__
    )
