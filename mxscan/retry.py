"""``mxscan scan --retry-unknown``: re-probe, in place, the domains whose results
were unknown (timeouts, throttling, SERVFAIL, crashes).

Crash safety comes from the checkpoint itself: the unknown records are removed
from the results file in one atomic rename, and the normal resume logic then
measures exactly the domains the file no longer holds.  A run killed at any
point is finished by running the same command again.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import orjson

from probes.results import is_host_line
from report.figures import domain_facts

__all__ = ["drop_unknown", "needs_retry"]

#: The questions a record answers; "unknown" in any of them means "we could not tell".
_QUESTIONS = ("mx", "starttls", "pkix", "dnssec", "dane", "sts_record", "sts_policy", "tlsrpt")


def needs_retry(record: dict[str, Any]) -> bool:
    """A crash, or a question the measurement could not settle (never a definite no)."""
    if record.get("status") == "unknown-error":
        return True
    facts = domain_facts(record)
    return any(getattr(facts, question) == "unknown" for question in _QUESTIONS)


class RetryError(Exception):
    """The results file cannot be prepared for a retry (missing, in use, corrupt)."""


def drop_unknown(path: Path) -> tuple[int, int]:
    """Remove records that need a retry; returns (kept, dropped).  Atomic: the file
    is either untouched or fully rewritten.  A torn last line is dropped too."""
    if not path.exists():
        raise RetryError(f"{path}: no results file to retry (run the scan first)")
    temporary = path.with_name(path.name + ".retry-tmp")
    kept = dropped = 0
    with path.open("rb") as source:
        try:
            fcntl.flock(source.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RetryError(f"{path}: in use by another mxscan process") from None
        with temporary.open("wb") as target:
            for number, line in enumerate(source, start=1):
                if not line.endswith(b"\n"):
                    dropped += 1  # torn tail: that domain is redone
                    break
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    temporary.unlink()
                    raise RetryError(f"{path}: corrupt line {number}; not an mxscan results file?") from None
                if not is_host_line(record) and needs_retry(record):
                    dropped += 1
                else:
                    target.write(line)
                    kept += 1
            target.flush()
            os.fsync(target.fileno())
        os.replace(temporary, path)
    return kept, dropped
