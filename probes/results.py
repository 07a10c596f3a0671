"""Read a results file back as domain records with their SMTP references resolved.

Domain lines reference host lines (``probes.domain``); readers that want a
domain's SMTP results get them here as ``mx_transport[i]["addresses"]`` (a list
of SMTP result objects, in ``smtp_refs`` order), the shape schema version 1
embedded.  Version 1 lines pass through unchanged, so reports read old files too.
The host line's ``ptr`` (the address's reverse DNS) is set as the result's ``ptr`` key
(absent when the host line has none).

Memory grows with the number of distinct host lines, not domains; ``project``
keeps only what a reader needs of each SMTP result (a report over 10M domains
holds ~3M hosts).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from engine.checkpoint import StoreError, is_marker, read_records

__all__ = ["DanglingReference", "domain_records", "is_host_line", "read_domain_records"]

Projection = Callable[[dict[str, Any]], dict[str, Any]]


class DanglingReference(StoreError):
    """A domain line references a host line the file does not hold before it."""


def is_host_line(record: dict[str, Any]) -> bool:
    return "ref" in record and "domain" not in record


def domain_records(
    records: Iterable[dict[str, Any]], project: Projection | None = None
) -> Iterator[dict[str, Any]]:
    """The domain lines of ``records`` (run lines skipped), each transport's ``addresses``
    filled from the host lines before it (latest wins).  Raises DanglingReference for a
    reference no earlier line defines: the file was cut or edited, and silently dropping a
    probe would change figures."""
    hosts: dict[str, dict[str, Any]] = {}
    for record in records:
        if is_marker(record):
            continue  # a run line (the scan finished): no domain
        if is_host_line(record):
            smtp = record.get("smtp")
            if isinstance(smtp, dict):
                if record.get("ptr") is not None:
                    smtp["ptr"] = record["ptr"]  # the address's reverse DNS rides along (see above)
                hosts[str(record["ref"])] = project(smtp) if project is not None else smtp
            continue
        for transport in record.get("mx_transport") or ():
            refs = transport.get("smtp_refs")
            if refs is None:
                continue  # schema 1: results embedded
            try:
                transport["addresses"] = [hosts[ref] for ref in refs]
            except KeyError as exc:
                raise DanglingReference(
                    f"domain {record.get('domain')!r} references {exc.args[0]!r}, which no earlier line holds"
                ) from None
        yield record


def read_domain_records(
    path: str | os.PathLike[str], project: Projection | None = None
) -> Iterator[dict[str, Any]]:
    """``read_records`` (torn tail skipped, corruption refused) with references resolved."""
    return domain_records(read_records(path), project)
