"""``mxscan scan``: everything checked before the network, the results file opened, the run.

Everything that can be checked without the network (the list, the trust store, the
results file, a retry pass's plan) is checked here, before any resolver or server is
contacted, so a usage mistake costs nobody a connection; ``mxscan.steps`` runs the rest.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections.abc import Iterator
from typing import NamedTuple, TextIO

import uvloop

from engine.checkpoint import KeySet, ResultStore, StoreError
from engine.heap import settle_heap
from engine.inputs import DomainReader, InputError, InputItem, count_names
from engine.offload import Offload
from engine.retrypass import RetryError, side_path
from mxscan import __version__
from mxscan.config import ScanConfig
from mxscan.probeservice import probe_process
from mxscan.steps import EXIT_USAGE, ScanRun
from mxscan.wiring import smtp_prober
from probes.providers import ProviderMap, load_provider_map
from probes.rescan import RetryRun, finish_retry, merged_text, settle_leftover
from probes.smtp.probe import SmtpProber
from probes.tls.truststore import TrustStoreError
from report.openmetrics import LiveMetrics
from scaleout.shard import resume_problem

__all__ = ["run_scan"]


class _Inputs(NamedTuple):
    """What a scan reads before it opens anything: the list, the prober, the provider map."""

    items: Iterator[InputItem]
    total: int | None
    prober: SmtpProber | None
    providers: ProviderMap


def run_scan(cfg: ScanConfig, stderr: TextIO | None = None) -> int:
    """Run one scan to completion (or interruption); returns the exit code."""
    stderr = stderr or sys.stderr
    if cfg.ehlo_name is None and os.environ.get("MXSCAN_EHLO_NAME"):
        cfg = dataclasses.replace(cfg, ehlo_name=os.environ["MXSCAN_EHLO_NAME"])
    if not cfg.dns_only and not cfg.ehlo_name:
        print(
            "mxscan: set --ehlo-name (or MXSCAN_EHLO_NAME) to a name that identifies your scanner, "
            "e.g. scanner.example.org; mxscan never uses this machine's host name silently. "
            "Use --dns-only to measure DNS alone.",
            file=stderr,
        )
        return EXIT_USAGE
    try:
        inputs = _read_inputs(cfg)
    except InputError as exc:  # the files options name were read with the config (mxscan.config)
        print(f"mxscan: domain list {exc}", file=stderr)
        return EXIT_USAGE
    except (TrustStoreError, OSError, ValueError) as exc:
        print(f"mxscan: {exc}", file=stderr)
        return EXIT_USAGE
    if cfg.cluster is not None:
        from scaleout.cluster.driver import run_cluster  # imports Ray only now

        return run_cluster(cfg, stderr, inputs.items, inputs.total)
    # A retry pass writes beside the results file and merges at the end (engine.retrypass).
    store = ResultStore(
        side_path(cfg.out) if cfg.retry_unknown else cfg.out,
        fresh=cfg.fresh or cfg.retry_unknown,
        keep_until_written=not cfg.retry_unknown,
    )
    settle_heap()
    files = _Files(cfg, stderr, store)
    if inputs.prober is not None and not cfg.inline_probes:
        # Forked before the store is opened (the child must not hold its lock) and before
        # the event loop starts (a fork must not copy a running loop).
        files.offload = probe_process(cfg, inputs.prober, inputs.providers)
    try:
        done = files.open()
        if done is None:
            return EXIT_USAGE
        probes = files.offload or inputs.prober
        run = ScanRun(cfg, stderr, store, done, inputs.providers, probes, files.metrics)
        return uvloop.run(run.run(inputs.items, inputs.total))
    finally:
        files.close()


def _read_inputs(cfg: ScanConfig) -> _Inputs:
    items = iter(DomainReader(cfg.domains))
    first = next(items)  # sniffs the source: binary or empty lists fail here
    # After the sniff, so binary content is refused before it is counted; None
    # (no total) for a pipe, FIFO or device, which the reader streams once.
    total = count_names(cfg.domains)
    prober = smtp_prober(cfg)
    providers = load_provider_map(cfg.provider_overrides)
    return _Inputs(itertools.chain([first], items), total, prober, providers)


class _Files:
    """The results file and what rides on it: a retry pass (its side file merged at the end),
    the probe process, --metrics; closed in that order whatever ends the run."""

    def __init__(self, cfg: ScanConfig, stderr: TextIO, store: ResultStore) -> None:
        self.cfg, self.stderr, self.store = cfg, stderr, store
        self.retry: RetryRun | None = None
        self.offload: Offload | None = None
        self.metrics: LiveMetrics | None = None

    def open(self) -> KeySet | None:
        """The domains already measured (a retry pass: those it keeps); None after a usage error."""
        cfg = self.cfg
        try:
            if cfg.retry_unknown:
                self.retry = RetryRun(cfg.out, __version__).__enter__()
                self.say(merged_text(cfg.out, self.retry.merge(), leftover=True))
                kept, redo = self.retry.plan()
            else:
                self.say(settle_leftover(cfg.out, __version__, fresh=cfg.fresh))
            done: KeySet = self.store.open()
            problem = resume_problem(cfg.out, cfg.shard, fresh=cfg.fresh)
        except (StoreError, RetryError) as exc:
            problem = str(exc)
        if problem is not None:
            self.say(problem)
            return None
        if self.retry is not None:
            done = kept
            self.say(
                f"retrying {redo} domains with unknown results ({len(kept)} kept); "
                f"{cfg.out} changes only when they are measured"
            )
        if cfg.metrics is not None:
            metrics = LiveMetrics(
                cfg.metrics, top=cfg.metrics_top, interval=cfg.metrics_interval, warn=self.warn
            )
            self.metrics = metrics.start(cfg.out)
        return done

    def say(self, message: str | None) -> None:
        if message is not None:
            print(f"mxscan: {message}", file=self.stderr)

    def warn(self, problem: str) -> None:
        self.say(f"WARNING: --metrics {self.cfg.metrics}: {problem}")

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            if self.retry is not None:
                self.say(finish_retry(self.retry))
            if self.offload is not None:
                self.offload.kill()
            if self.metrics is not None:
                self.metrics.close(self.cfg.out)  # after a retry pass's merge: the file as it now stands
