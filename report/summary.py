"""One pass over a results file: headline figures, provider tables and breakdowns."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from report.breakdowns import Breakdowns
from report.figures import FOOTNOTES, Headline, domain_facts, headline_figures
from report.providers import FOOTNOTES as PROVIDER_FOOTNOTES
from report.providers import ProviderTally

__all__ = ["summarise"]


def summarise(records: Iterable[dict[str, Any]], *, top: int = 10, cap: int = 20) -> dict[str, Any]:
    """Everything a report shows, from a stream of parsed records, in one pass.

    Memory stays bounded by the number of distinct domains, MX hosts and providers,
    never by the records themselves.  A domain seen twice counts once (its first line).
    """
    headline = Headline()
    providers = ProviderTally()
    breakdowns = Breakdowns(cap)
    seen: set[str] = set()
    duplicates = unreadable = 0
    started: Counter[str] = Counter()
    validating: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    for record in records:
        domain = str(record.get("domain", ""))
        if domain in seen:
            duplicates += 1
            continue
        seen.add(domain)
        scan = record.get("scan") or {}
        started[str(scan.get("started", ""))[:10] or "(unknown)"] += 1
        validating[str(scan.get("dnssec_validating", "unknown")).lower()] += 1
        writer = f"{scan.get('tool', '?')} {scan.get('version', '?')}"
        versions[f"{writer} schema {record.get('schema_version')}"] += 1
        try:
            facts = domain_facts(record)
            headline.add(facts)
            providers.add(record, facts)
            breakdowns.add(record, facts)
        except (AttributeError, TypeError, ValueError, KeyError):  # a line of another shape
            unreadable += 1
    return {
        "meta": {
            "records": headline.lines,
            "duplicates": duplicates,
            "unreadable": unreadable,
            "scan_dates": dict(sorted(started.items())),
            "dnssec_validating": dict(validating),
            "writers": dict(versions.most_common(5)),
            "statuses": dict(headline.statuses.most_common()),
            "mx_states": dict(headline.mx_states.most_common()),
        },
        "headline": headline_figures(headline),
        "providers": providers.result(top),
        **breakdowns.result(),
        "footnotes": {**FOOTNOTES, **{f"provider_{k}": v for k, v in PROVIDER_FOOTNOTES.items()}},
    }
