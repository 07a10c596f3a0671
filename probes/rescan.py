"""The rescan rule of ``mxscan scan --retry-unknown``: which domains of a results file are
measured again (timeouts, throttling, SERVFAIL, crashes, a lost probe process), and how a
retry pass's merged file ends.

The rule is a question of the record, asked through the study's one reduction
(``probes.posture.answers``): a crash, or a question the measurement could not settle, is
measured again; a definite no, and a question the file never measured (``--dns-only``), is
kept.  Moving the lines is the engine's (``engine.retrypass``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.checkpoint import DigestSet
from engine.records import decode
from engine.retrypass import Merged, RetryError, RetryPass, side_path
from engine.status import Status
from probes.domain import RunEnd, ShardRun, run_line
from probes.posture import answers
from probes.results import is_host_line

__all__ = ["RescanRules", "RetryRun", "finish_retry", "merged_text", "needs_retry", "settle_leftover"]


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


@dataclass(frozen=True, slots=True)
class RescanRules:
    """``engine.retrypass.MergeRules`` for mxscan results files, written by ``version``."""

    version: str

    def unsettled(self, record: dict[str, Any]) -> bool:
        return needs_retry(record)

    def run_line(self, domains: int, last_run: Mapping[str, Any]) -> bytes:
        now = time.time()  # the format of every other timestamp in the file
        ended = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        shard = last_run.get("shard")  # a shard's file stays that shard's (mxscan merge reads it)
        return run_line(
            RunEnd(
                finished=True,
                domains=domains,
                started=str(last_run.get("started", "")),
                ended=ended,
                tool="mxscan",
                version=self.version,
                shard=None if shard is None else decode(ShardRun, shard),
            )
        )


class RetryRun(RetryPass):
    """A results file held for ``--retry-unknown``: ``plan`` reads which domains need a retry
    (without changing anything); ``merge`` folds the pass's side file in."""

    def __init__(self, path: Path, version: str) -> None:
        super().__init__(path, RescanRules(version))

    def __enter__(self) -> RetryRun:
        super().__enter__()
        return self

    def plan(self) -> tuple[DigestSet, int]:
        """(domains kept as they are, domains to measure again): each domain's latest line
        decides.  Reads only; the file changes when ``merge`` runs.  Both sets are digests
        (``DigestSet``, ~18 B a domain): the plan of a 10M-domain file fits in ~0.2 GB."""
        kept, redo = DigestSet(), DigestSet()
        crashed: set[str] = set()  # refs whose latest host line so far is unknown-error
        for line in self.lines(self.path):
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


def settle_leftover(out: Path, version: str, *, fresh: bool) -> str | None:
    """A retry pass killed outright left its side file: merged before the results file is
    resumed (``fresh``: discarded with the results); what to tell the user."""
    side = side_path(out)
    if not side.exists():
        return None
    if fresh or not out.exists():
        side.unlink()
        return None
    with RetryRun(out, version) as retry:
        return merged_text(out, retry.merge(), leftover=True)


def finish_retry(retry: RetryRun) -> str | None:
    """Merge the pass's results (whatever ended it) and release the results file; what to
    tell the user."""
    try:
        return merged_text(retry.path, retry.merge(), leftover=False)
    except (OSError, RetryError) as exc:
        return (
            f"{exc}; {retry.path} is unchanged and {retry.side} keeps the retried domains "
            "(the next scan of the file merges them)"
        )
    finally:
        retry.__exit__()


def merged_text(path: Path, merged: Merged | None, *, leftover: bool) -> str | None:
    """What a merge of a pass (``leftover``: one an earlier scan left) did to ``path``."""
    if merged is None:
        return None
    redone = merged.replaced + merged.added
    if not redone:
        return None if leftover else f"{path} is unchanged (no domain was measured again)"
    what = "an interrupted --retry-unknown pass" if leftover else "the retried domains"
    unfinished = (
        "" if merged.finished or leftover else "; the scan is not finished: run the same command again"
    )
    return (
        f"merged {what} into {path}: {redone} domains measured again, "
        f"{redone - merged.still_unknown} now settled, {merged.still_unknown} still unknown{unfinished}"
    )
