"""Per-domain changes between two scans.

OLD is reduced to a compact digest per domain (a tuple of short strings and
one hash); NEW is streamed against it, so only one file's digests are ever
held.  A change is claimed only between two settled answers: a domain whose
STARTTLS went from "all" to "unknown" (a timeout) has not lost STARTTLS.

Change kinds (``CHANGE_KINDS``): starttls-gained / starttls-lost (posture
starttls none ↔ all|some), cert-became-valid / cert-became-invalid (posture
pkix_valid none ↔ all|some), mta-sts-mode-changed (effective mode, including
appearing or disappearing), mta-sts-id-changed (both records valid, ids
differ), tlsa-appeared / tlsa-disappeared / tlsa-rolled-over (TLSA records in
DNSSEC-secure answers over all MX hosts; rolled over = present in both and
different), mx-provider-changed (provider of the most preferred MX host),
mx-gained / mx-lost (has MX), domain-appeared / domain-disappeared.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.status import Status
from probes.posture import Answer, MxKind, answers
from probes.transport import Coverage3

__all__ = ["CHANGE_KINDS", "Change", "DiffResult", "Digest", "diff_records", "digest", "render_diff_text"]

CHANGE_KINDS = (
    "domain-appeared",
    "domain-disappeared",
    "mx-gained",
    "mx-lost",
    "mx-provider-changed",
    "starttls-gained",
    "starttls-lost",
    "cert-became-valid",
    "cert-became-invalid",
    "mta-sts-mode-changed",
    "mta-sts-id-changed",
    "tlsa-appeared",
    "tlsa-disappeared",
    "tlsa-rolled-over",
)
_UNSETTLED = frozenset({Answer.UNKNOWN.value, Answer.NOT_MEASURED.value})
#: A coverage digest as a yes (some MX host has it) or a no; else unsettled.
_HAS = {Coverage3.ALL.value: True, Coverage3.SOME.value: True, Coverage3.NONE.value: False}

#: (mx state, starttls, pkix, mta-sts mode or "", mta-sts id or "", provider or "", tlsa count, tlsa hash)
Digest = tuple[str, str, str, str, str, str, int, int]


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one domain between the scans."""

    domain: str
    kind: str
    old: str
    new: str

    def as_dict(self) -> dict[str, str]:
        return {"domain": self.domain, "change": self.kind, "old": self.old, "new": self.new}


@dataclass(slots=True)
class DiffResult:
    changes: list[Change]
    counts: Counter[str]
    old_domains: int
    new_domains: int
    unchanged: int
    #: Files compared although their scan had not finished (--allow-unfinished): the domains
    #: one of them lacks show up as appeared or disappeared.
    unfinished: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        summary = {
            "old_domains": self.old_domains,
            "new_domains": self.new_domains,
            "unchanged": self.unchanged,
            "changes": {kind: self.counts[kind] for kind in CHANGE_KINDS if self.counts[kind]},
        }
        if self.unfinished:
            summary["unfinished"] = list(self.unfinished)
        return summary


_INTERN: dict[str, str] = {}


def _i(text: str) -> str:
    """Share equal small strings between digests (modes, providers, states repeat a lot)."""
    return _INTERN.setdefault(text, text)


def digest(record: dict[str, Any]) -> tuple[str, Digest]:
    """(domain, its digest) for one parsed record."""
    f = answers(record)
    mode = f.sts_mode or ("" if f.sts_policy is not Answer.NOT_MEASURED else Answer.NOT_MEASURED.value)
    if Answer.UNKNOWN in (f.sts_record, f.sts_policy):
        mode = Answer.UNKNOWN.value
    return f.domain, (
        _i(f.mx.text),
        _i(f.starttls.text),
        _i(f.pkix.text),
        _i(mode),
        f.sts_id if f.sts_record is Answer.YES else "",
        _i(f.provider or ""),
        len(f.tlsa),
        hash(f.tlsa) if f.tlsa else 0,
    )


def _compare(domain: str, old: Digest, new: Digest) -> Iterator[Change]:
    if old[0] != new[0] and MxKind.MX in (old[0], new[0]) and not {old[0], new[0]} & _UNSETTLED:
        yield Change(domain, "mx-gained" if new[0] == MxKind.MX else "mx-lost", old[0], new[0])
    if old[5] and new[5] and old[5] != new[5]:
        yield Change(domain, "mx-provider-changed", old[5], new[5])
    pairs = (
        ("starttls-gained", "starttls-lost", old[1], new[1]),
        ("cert-became-valid", "cert-became-invalid", old[2], new[2]),
    )
    for gained, lost, was, now in pairs:
        before, after = _HAS.get(was), _HAS.get(now)
        if before is not None and after is not None and before != after:
            yield Change(domain, gained if after else lost, was, now)
    if old[3] != new[3] and not {old[3], new[3]} & _UNSETTLED:
        yield Change(domain, "mta-sts-mode-changed", old[3] or "no policy", new[3] or "no policy")
    if old[4] and new[4] and old[4] != new[4]:
        yield Change(domain, "mta-sts-id-changed", old[4], new[4])
    if (old[6], old[7]) != (new[6], new[7]) and old[0] == new[0] == MxKind.MX:
        if not old[6]:
            yield Change(domain, "tlsa-appeared", "", f"{new[6]} records")
        elif not new[6]:
            yield Change(domain, "tlsa-disappeared", f"{old[6]} records", "")
        else:
            yield Change(domain, "tlsa-rolled-over", f"{old[6]} records", f"{new[6]} records")


def diff_records(old: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]) -> DiffResult:
    """Changes from OLD to NEW; invalid-input lines take no part (they are not domains)."""
    digests: dict[str, Digest] = {}
    for record in old:
        if record.get("status") != Status.INVALID_INPUT:
            domain, d = digest(record)
            digests.setdefault(domain, d)
    result = DiffResult([], Counter(), len(digests), 0, 0)
    seen: set[str] = set()
    for record in new:
        if record.get("status") == Status.INVALID_INPUT:
            continue
        domain, d = digest(record)
        if domain in seen:
            continue
        seen.add(domain)
        result.new_domains += 1
        before = digests.pop(domain, None)
        found = (
            [Change(domain, "domain-appeared", "", d[0])]
            if before is None
            else list(_compare(domain, before, d))
        )
        result.changes += found
        result.unchanged += not found
        result.counts.update(c.kind for c in found)
    for domain, d in digests.items():
        result.changes.append(Change(domain, "domain-disappeared", d[0], ""))
        result.counts["domain-disappeared"] += 1
    result.changes.sort(key=lambda c: (CHANGE_KINDS.index(c.kind), c.domain))
    return result


def render_diff_ndjson(result: DiffResult) -> Iterator[bytes]:
    """One JSON line per change, then one ``{"summary": ...}`` line."""
    for change in result.changes:
        yield orjson.dumps(change.as_dict(), option=orjson.OPT_APPEND_NEWLINE)
    yield orjson.dumps({"summary": result.summary()}, option=orjson.OPT_APPEND_NEWLINE)


def render_diff_text(result: DiffResult, *, old_label: str = "OLD", new_label: str = "NEW") -> str:
    from report.render_text import printable

    s = result.summary()
    lines = [
        f"mxscan diff: {printable(old_label)} -> {printable(new_label)}",
        f"domains: {s['old_domains']:,} before, {s['new_domains']:,} after, {s['unchanged']:,} unchanged",
        *(
            f"WARNING: {printable(path)} is an unfinished scan (domains it lacks count as (dis)appeared)"
            for path in result.unfinished
        ),
        "",
        "Summary",
    ]
    lines += [f"  {kind:<22} {n:>9,}" for kind, n in s["changes"].items()] or ["  no changes"]
    current = ""
    for change in result.changes:
        if change.kind != current:
            current = change.kind
            lines += ["", current]
        arrow = (
            f"{printable(change.old, 60)} -> {printable(change.new, 60)}" if change.old or change.new else ""
        )
        lines.append(f"  {printable(change.domain)}  {arrow}".rstrip())
    return "\n".join(lines) + "\n"
