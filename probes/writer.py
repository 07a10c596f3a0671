"""Writing a results file: domain records, the host lines they reference, the run line.

The layout ``probes/results.py`` reads back: a host line is written before the first
record that references it (in the same buffer, so a torn tail never leaves a reference
to a line that is not there), each host line once per run, and a run line at the end
of a finished list.  Names of the list already measured are skipped; an invalid line is
recorded once as ``invalid-input``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any, Protocol

from engine.checkpoint import KeySet, ResultStore
from engine.inputs import InputError, InputItem
from engine.progress import Progress
from engine.records import encode
from engine.status import Status
from probes.dane.tlsa import DaneResult
from probes.domain import SCHEMA_VERSION, DomainRecord, RunEnd, ScanMeta, ShardRun, host_line, run_line
from probes.egress import EgressCheck
from probes.plan import DomainOutcome
from probes.smtp.probe import SmtpProbe

__all__ = ["LineSink", "ResultWriter", "WrittenHosts", "now"]


class WrittenHosts(Protocol):
    """Which (host, address) results have their host line in the file."""

    def written(self, probe: SmtpProbe, /) -> bool: ...

    def wrote(self, probe: SmtpProbe, dane: DaneResult | None, /) -> None: ...


class LineSink(Protocol):
    """Sees every line the file gets (live metrics)."""

    def line(self, data: bytes, /) -> None: ...


def now() -> str:
    """UTC now as ISO 8601 with milliseconds; once per record, so kept cheap (no datetime)."""
    stamp = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z"


class ResultWriter:
    """What this run writes into the results file, and what it skips of the list."""

    def __init__(self, store: ResultStore, done: KeySet, meta: ScanMeta, hosts: WrittenHosts) -> None:
        self.store = store
        self.done = done
        self.meta = meta
        #: Which host lines are written (the caller's record of them may compact its SMTP cache).
        self.hosts = hosts
        self.progress: Progress | None = None
        #: --metrics: sees every line the file gets, so its figures are the file's.
        self.metrics: LineSink | None = None
        #: The egress pre-flight with every attempt: written once (run line, --summary-json);
        #: domain lines carry its verdicts (meta.egress).
        self.egress: EgressCheck | None = None
        #: The shard of the list this run measured (--shard K/N), for the run line.
        self.shard: ShardRun | None = None
        self.skipped_done = 0
        self.written = 0
        self.input_error = ""
        self._invalid_seen: set[str] = set()

    def record(self, item: InputItem, **fields: Any) -> DomainRecord:
        base: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "domain": item.domain or item.raw,
            "input_line": item.line,
            "status": Status.SUCCESS,
            "reason": "",
            "scan": self.meta,
            "measured_at": now(),
            "duration_ms": 0.0,
            "dns": None,
            "mx_transport": (),
            "mta_sts": None,
            "tlsrpt": None,
            "posture": None,
            "errors": (),
        }
        return DomainRecord(**(base | fields))

    def measured(self, item: InputItem, outcome: DomainOutcome, duration_ms: float) -> DomainRecord:
        """The record of a domain the plan measured (``outcome``: every section it filled)."""
        sections = {f.name: getattr(outcome, f.name) for f in dataclasses.fields(outcome)}
        del sections["smtp_probes"]  # written as host lines, which the record references
        return self.record(item, duration_ms=duration_ms, **sections)

    def write(self, record: DomainRecord, hosts: tuple[tuple[SmtpProbe, ...], ...] = ()) -> None:
        """The host lines the record references that this run has not written yet, then the record
        (same buffer, in order: a reference never points past a torn tail)."""
        for transport, probes in zip(record.mx_transport, hosts, strict=True):
            for probe in probes:
                if not self.hosts.written(probe):
                    self._append(probe.host_line or host_line(probe.result))
                    self.hosts.wrote(probe, transport.dane)
        self._append(encode(record))
        self.written += 1
        if self.progress is not None:
            self.progress.add(str(record.status))

    def _append(self, line: bytes) -> None:
        self.store.append(line)
        if self.metrics is not None:
            self.metrics.line(line)

    def targets(self, items: Iterator[InputItem]) -> Iterator[InputItem]:
        try:
            yield from self._valid(items)
        except InputError as exc:  # the list broke mid-stream (unreadable, ...): stop taking new domains
            self.input_error = str(exc)

    def _valid(self, items: Iterator[InputItem]) -> Iterator[InputItem]:
        for item in items:
            key = item.domain or item.raw
            if key in self.done:
                self.skipped_done += 1
                continue
            if item.domain is None:
                if key not in self._invalid_seen:
                    self._invalid_seen.add(key)
                    self.write(
                        self.record(item, status=Status.INVALID_INPUT, reason=item.reason or "invalid")
                    )
                continue
            yield item

    def mark_finished(self) -> None:
        """Every domain of the list has a line: end the file with a run line, unless it already
        ends with one and this run added nothing (see engine.checkpoint, "Finished or not")."""
        if self.store.finished and not self.store.appended:
            return
        end = RunEnd(
            finished=True,
            domains=len(self.done) + self.written,
            started=self.meta.started,
            ended=now(),
            tool=self.meta.tool,
            version=self.meta.version,
            egress=self.egress,
            shard=self.shard,
        )
        self.store.append_alone(run_line(end))
