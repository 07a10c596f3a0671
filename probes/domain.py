"""The lines of a results file: one per domain, plus one per probed mail server address.

A results file is a stream of two kinds of line.  A *domain line* (a
``DomainRecord``, it has a ``domain`` field) holds everything measured about one
domain; its MX hosts point at their SMTP results by reference.  A *host line*
(a ``HostRecord``, it has a ``ref`` field) holds one (MX host, address) probe,
written once, just before the first domain line that references it: a host shared
by 10,000 domains is stored once, not 10,000 times.  A reference resolves to the
latest host line with that ``ref`` before the domain line (a resumed or retried
run may probe a host again).  ``probes.results`` reads a file back with the
references resolved.  A *run line* (a ``RunRecord``, it has a ``run`` field) ends
a file whose scan has a line for every domain of its list: the file is finished
exactly when its last line is one (``engine.checkpoint.finished``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import orjson

from engine.records import MAX_LINE_BYTES, decode, encode
from engine.status import Status
from probes.dns.records import DnsResult, ResolverCheck
from probes.dns.reverse import PtrResult
from probes.egress import EgressCheck, EgressVerdict
from probes.mtasts.records import MtaStsResult
from probes.smtp.records import SmtpResult
from probes.tlsrpt.record import TlsRptRecord
from probes.transport import MxTransport, Posture, smtp_ref
from probes.vantage import Vantage

__all__ = [
    "SCHEMA_VERSION",
    "DomainRecord",
    "HostRecord",
    "ProbeError",
    "RunEnd",
    "RunRecord",
    "ScanMeta",
    "ShardRun",
    "host_line",
    "run_line",
    "with_ptr",
]

#: Bumped whenever a field changes meaning or shape; readers check it.
#: 2: SMTP results moved out of domain lines into host lines (``MxTransport.smtp_refs``).
SCHEMA_VERSION = 2


@dataclass(frozen=True, slots=True)
class ScanMeta:
    """Which scan produced a record; repeated on every line so any line stands alone.

    Fields:
      tool: always "mxscan".
      version: the mxscan version that wrote the record.
      started: when the scan (or the run that resumed it) started, ISO 8601 UTC.
      resolver: the DNS resolver address used, "host:port".
      dnssec_validating: AD is read: the resolver passed the DNSSEC pre-flight check, or the check
        was inconclusive (see dnssec_check); when false every dnssec field is "unknown".
      ehlo_name: the name the scanner gave in EHLO (its identity to mail operators); "" for
        DNS-only scans.
      contact: where operators learn about the scan and opt out (--contact), "" if not given.
      dnssec_check: the pre-flight verdict: validating (AD on the signed name, SERVFAIL on the
        bogus one), inconclusive (AD on the signed name, no verdict on the bogus one: AD is read,
        rejection of bogus data was not shown), not-validating; null in files from before it.
      egress: the egress pre-flight's verdicts: outbound port 25 per address family (reachable /
        blocked / untested), whether it was skipped, whether the scan went IPv4-only because
        IPv6 was blocked; null for DNS-only scans and files from before it.  Its attempts are
        written once per run, on the run line (run.egress) and in --summary-json.
      vantage: where the scan measured from: its egress addresses, their PTR names and FCrDNS,
        the EHLO name's addresses and whether they include an egress address; null for
        DNS-only scans and files from before it.
      shard: the shard of the list the scan measures, "K/N" as given to --shard; null for the
        whole list.  A file is resumed only by a scan of the same shard (absent in files from
        before it, which are not checked).
    """

    tool: str
    version: str
    started: str
    resolver: str
    dnssec_validating: bool
    ehlo_name: str
    contact: str
    dnssec_check: ResolverCheck | None = None
    egress: EgressVerdict | None = None
    vantage: Vantage | None = None
    shard: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeError:
    """A probe that could not produce its result (a bug or an unclassified failure).

    Fields:
      probe: which probe failed ("dns", "smtp", "mta-sts", ...).
      status: the status of the failure (unknown-error for a crash).
      detail: the exception type and a bounded message.
    """

    probe: str
    status: Status
    detail: str


@dataclass(frozen=True, slots=True)
class DomainRecord:
    """Everything measured about one domain.

    Fields:
      schema_version: the record schema version (see SCHEMA_VERSION).
      domain: the normalised domain (lowercase A-label); for invalid input the sanitised raw text.
      input_line: the line number in the input list (0 for stdin-less sources).
      status: success, invalid-input, skipped or unknown-error for the domain as a whole.
      reason: why the status is not success (e.g. the invalid-input reason), else "".
      scan: which scan wrote this record.
      measured_at: when this domain's measurement finished, ISO 8601 UTC.
      duration_ms: wall-clock time spent on this domain, in milliseconds.
      dns: the DNS measurements; null when not measured (invalid input) or the DNS probe crashed.
      mx_transport: per MX host: provider, a reference to the SMTP STARTTLS probe of each address
        (a host line earlier in the file), DANE verdict; empty when SMTP was not probed
        (--dns-only, no MX, or the probe failed).
      mta_sts: the MTA-STS record, policy fetch, policy, coverage and findings; null when not probed.
      tlsrpt: the TLS-RPT record as RFC 8460 judges it; null when DNS failed.
      posture: the study's domain-level roll-ups; null when DNS failed.
      errors: probes that failed to produce a result, with why.
      truncated: JSON paths ("[]" for list items) of the strings and lists cut so the line fits
        MAX_LINE_BYTES (64 KiB), sorted; empty for a complete record.  A cut string ends in "…";
        a cut list keeps its first items.  Peer text is also bounded where it is read (banners and
        replies 512 characters, EHLO parameters 256, certificate names 1024, details 300, EDE
        texts 256), a cut there likewise ending in "…".
    """

    schema_version: int
    domain: str
    input_line: int
    status: Status
    reason: str
    scan: ScanMeta
    measured_at: str
    duration_ms: float
    dns: DnsResult | None
    mx_transport: tuple[MxTransport, ...]
    mta_sts: MtaStsResult | None
    tlsrpt: TlsRptRecord | None
    posture: Posture | None
    errors: tuple[ProbeError, ...]
    #: Last, with a default: written by every writer, optional in lines from before it.
    truncated: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HostRecord:
    """One SMTP STARTTLS probe of one (MX host, address), shared by every domain using it.

    Fields:
      schema_version: the record schema version (see SCHEMA_VERSION).
      ref: how domain lines reference this probe (MxTransport.smtp_refs): "smtp:host@address:port".
      smtp: the probe's result.
      ptr: the reverse DNS of the address (PTR names, FCrDNS), looked up once per address per
        run; null when not looked up (files from before it).
      truncated: JSON paths ("[]" for list items) of the strings and lists cut so the line fits
        MAX_LINE_BYTES (64 KiB), sorted; empty for a complete record.  A cut string ends in "…";
        a cut list keeps its first items.  Peer text is also bounded where it is read (banners and
        replies 512 characters, EHLO parameters 256, certificate names 1024, details 300, EDE
        texts 256), a cut there likewise ending in "…".
    """

    schema_version: int
    ref: str
    smtp: SmtpResult
    truncated: tuple[str, ...] = ()
    #: Last, with a default: ``with_ptr`` appends it to a line a probe process encoded.
    ptr: PtrResult | None = None


def host_line(result: SmtpResult, ptr: PtrResult | None = None) -> bytes:
    """The results-file line holding ``result`` (with its newline)."""
    return encode(HostRecord(schema_version=SCHEMA_VERSION, ref=smtp_ref(result), smtp=result, ptr=ptr))


def with_ptr(line: bytes, ptr: PtrResult) -> bytes:
    """A host line a probe process encoded (``ptr`` null, its last field) with ``ptr`` set: the
    bytes ``host_line`` would give, without decoding the SMTP result again (a line that would
    then exceed the cap is decoded and fitted by ``encode``)."""
    head = line.rstrip(b"\n")
    if not head.endswith(b',"ptr":null}'):
        raise ValueError("not a host line without ptr")
    out = head[: -len(b"null}")] + encode(ptr).rstrip(b"\n") + b"}\n"
    if len(out) <= MAX_LINE_BYTES:
        return out
    record = decode(HostRecord, orjson.loads(head))
    return encode(dataclasses.replace(record, ptr=ptr))


@dataclass(frozen=True, slots=True)
class ShardRun:
    """Which shard of a list a file holds (``mxscan scan --shard K/N``), and of which scan.

    Fields:
      index: K, this shard (1..count).
      count: N, the shards the list was split into (a name's shard: scaleout.shard.shard_of).
      names: the entries of the whole list (every shard reads it whole).
      list: a digest of the whole list's entries (order does not matter): equal in the N files
        of one scan.
      options: a digest of the options that change what a record measures
        (scaleout.shard.MEASUREMENT_OPTIONS): equal in the N files of one scan.
    """

    index: int
    count: int
    names: int
    list: str
    options: str


@dataclass(frozen=True, slots=True)
class RunEnd:
    """The end of a scan that has a line for every domain of its list.

    Fields:
      finished: always true: every domain of the list has a domain line in the file.
      domains: the distinct domains (invalid input lines included) the file holds.
      started: when the run that finished the file started, ISO 8601 UTC.
      ended: when it finished, ISO 8601 UTC.
      tool: always "mxscan".
      version: the mxscan version that finished the file.
      egress: the egress pre-flight of the run that finished the file: its verdicts and every
        connection attempt (domain lines carry only the verdicts of the run that wrote them,
        scan.egress); null for DNS-only runs, merges of --retry-unknown and files from before it.
      shard: the shard of the list the file holds (--shard K/N); null for a whole list.
    """

    finished: bool
    domains: int
    started: str
    ended: str
    tool: str
    version: str
    egress: EgressCheck | None = None
    shard: ShardRun | None = None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run line: a file is finished exactly when its last line is one; readers skip it.

    A resumed or retried scan that appends more lines writes a new one when it is done.

    Fields:
      schema_version: the record schema version (see SCHEMA_VERSION).
      run: the run that finished the file.
    """

    schema_version: int
    run: RunEnd


def run_line(end: RunEnd) -> bytes:
    """The results-file line marking the file finished (with its newline)."""
    return encode(RunRecord(schema_version=SCHEMA_VERSION, run=end))
