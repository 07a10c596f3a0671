"""One pass over a results file: headline figures, provider tables and breakdowns."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from probes.posture import answers
from report.breakdowns import Breakdowns
from report.figures import FOOTNOTES, Headline, headline_figures
from report.providers import FOOTNOTES as PROVIDER_FOOTNOTES
from report.providers import ProviderTally
from report.ptr import PtrTally

__all__ = ["Summary", "summarise"]


class Summary:
    """The one computation behind every report, fed one parsed record at a time.

    ``summarise`` runs it over a file; a scan's live metrics (report.openmetrics) feed
    it each record as it is written, so both give the same figures.  Memory stays
    bounded by the number of distinct domains, MX hosts and providers, never by the
    records themselves.  A domain seen twice counts once (its first line).
    """

    def __init__(self, *, top: int = 10, cap: int = 20) -> None:
        self.top = top
        self.headline = Headline()
        self.providers = ProviderTally()
        self.breakdowns = Breakdowns(cap)
        self.ptr = PtrTally()
        self.seen: set[str] = set()
        self.duplicates = self.unreadable = 0
        self.started: Counter[str] = Counter()
        self.validating: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()

    def add(self, record: dict[str, Any]) -> None:
        domain = str(record.get("domain", ""))
        if domain in self.seen:
            self.duplicates += 1
            return
        self.seen.add(domain)
        scan = record.get("scan") or {}
        self.started[str(scan.get("started", ""))[:10] or "(unknown)"] += 1
        self.validating[str(scan.get("dnssec_validating", "unknown")).lower()] += 1
        writer = f"{scan.get('tool', '?')} {scan.get('version', '?')}"
        self.versions[f"{writer} schema {record.get('schema_version')}"] += 1
        try:
            facts = answers(record)
            self.headline.add(facts)
            self.providers.add(record, facts)
            self.breakdowns.add(record, facts)
            self.ptr.add(record)
        except (AttributeError, TypeError, ValueError, KeyError):  # a line of another shape
            self.unreadable += 1

    def result(self) -> dict[str, Any]:
        headline = self.headline
        return {
            "meta": {
                "records": headline.lines,
                "duplicates": self.duplicates,
                "unreadable": self.unreadable,
                "scan_dates": dict(sorted(self.started.items())),
                "dnssec_validating": dict(self.validating),
                "writers": dict(self.versions.most_common(5)),
                "statuses": dict(headline.statuses.most_common()),
                "mx_states": dict(headline.mx_states.most_common()),
            },
            "headline": headline_figures(headline),
            "providers": self.providers.result(self.top),
            **self.breakdowns.result(),
            "ptr": self.ptr.result(self.top),
            "footnotes": {**FOOTNOTES, **{f"provider_{k}": v for k, v in PROVIDER_FOOTNOTES.items()}},
        }


def summarise(records: Iterable[dict[str, Any]], *, top: int = 10, cap: int = 20) -> dict[str, Any]:
    """Everything a report shows, from a stream of parsed records, in one pass."""
    summary = Summary(top=top, cap=cap)
    for record in records:
        summary.add(record)
    return summary.result()
