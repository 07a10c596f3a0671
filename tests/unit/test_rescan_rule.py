"""The rescan rule of ``--retry-unknown`` (probes/rescan.py ``needs_retry`` and ``RetryRun.plan``):
which records are measured again and why.  A crash or a question the measurement could not
settle is rescanned; a definite no and a question the file never measured are not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from mxscan import __version__
from probes.rescan import RetryRun, needs_retry
from tests.unit.test_posture import dns, lookup, record

REF = "smtp:mx.example.com@192.0.2.1:25"


def settled(**over: Any) -> dict[str, Any]:
    rec = record(**over)
    rec["mx_transport"] = [{"host": "mx.example.com", "preference": 10, "smtp_refs": [REF]}]
    return rec


def test_a_settled_record_is_kept() -> None:
    assert needs_retry(settled()) is False


def test_definite_negatives_are_kept() -> None:
    rec = settled(dns=dns(has_mx=False, mx=lookup("nxdomain"), mx_hosts=[], mta_sts=lookup("nxdomain")))
    rec["posture"].update(starttls="none", pkix_valid="none", dane_published=False)
    rec["mta_sts"].update(record={"present": False, "valid": False}, mode=None, fetch=None, policy=None)
    rec["tlsrpt"]["valid"] = False
    assert needs_retry(rec) is False


def test_a_record_that_never_measured_a_question_is_kept() -> None:
    # A --dns-only file: not measured is not unknown, and a retry would not measure it either.
    assert needs_retry(settled(posture=None, mta_sts=None, tlsrpt=None)) is False


@pytest.mark.parametrize(
    "why",
    ["mx", "starttls", "pkix", "dnssec", "dane", "sts_record", "sts_policy", "tlsrpt"],
)
def test_each_unknown_question_is_rescanned(why: str) -> None:
    rec = settled()
    if why == "mx":
        rec["dns"].update(has_mx=False, mx=lookup("servfail", "indeterminate"))
    elif why in ("starttls", "pkix"):
        rec["posture"]["starttls" if why == "starttls" else "pkix_valid"] = "unknown"
    elif why == "dnssec":
        rec["dns"]["mx"]["dnssec"] = "indeterminate"
    elif why == "dane":
        rec["posture"]["dane_published"] = False
        rec["dns"]["mx_hosts"][0]["tlsa"] = lookup("timeout", "indeterminate")
    elif why == "sts_record":
        rec["mta_sts"].update(record={"present": False, "valid": None}, mode=None)
    elif why == "sts_policy":
        rec["mta_sts"].update(mode=None, fetch={"status": "connection-timeout"}, policy=None)
    else:
        rec["tlsrpt"]["valid"] = None
    assert needs_retry(rec) is True


@pytest.mark.parametrize(
    "crash",
    [
        {"status": "unknown-error"},
        {"errors": [{"probe": "dns", "status": "unknown-error"}]},
    ],
)
def test_a_crashed_domain_is_rescanned(crash: dict[str, Any]) -> None:
    assert needs_retry({**settled(), **crash}) is True


def test_a_crashed_policy_fetch_is_rescanned_even_with_the_figures_settled() -> None:
    rec = settled()
    rec["mta_sts"]["fetch"] = {"status": "unknown-error"}
    assert needs_retry(rec) is True


def test_a_crashed_smtp_probe_is_rescanned_only_for_domains_referencing_it() -> None:
    assert needs_retry(settled(), frozenset({REF})) is True
    assert needs_retry(settled(), frozenset({"smtp:other.example@192.0.2.9:25"})) is False


def _line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps({"schema_version": 2, **obj}) + b"\n"


def _host(status: str) -> bytes:
    return _line({"ref": REF, "smtp": {"status": status}})


def _plan(path: Path, *lines: bytes) -> tuple[set[str], int]:
    """(the domains kept, of those the lines name; how many are measured again)."""
    path.write_bytes(b"".join(lines))
    names = {str(orjson.loads(line)["domain"]) for line in lines if b'"domain"' in line}
    with RetryRun(path, __version__) as run:
        kept, retried = run.plan()
    return {name for name in names if name in kept}, retried


def test_plan_the_latest_line_of_a_domain_decides(tmp_path: Path) -> None:
    unknown = settled(domain="a.example")
    unknown["posture"]["starttls"] = "unknown"
    kept, retried = _plan(tmp_path / "r.ndjson", _line(unknown), _line(settled(domain="a.example")))
    assert (kept, retried) == ({"a.example"}, 0)
    kept, retried = _plan(tmp_path / "s.ndjson", _line(settled(domain="a.example")), _line(unknown))
    assert (kept, retried) == (set(), 1)


def test_plan_a_crashed_host_line_marks_the_domains_after_it(tmp_path: Path) -> None:
    kept, retried = _plan(
        tmp_path / "r.ndjson",
        _line(settled(domain="before.example")),
        _host("unknown-error"),
        _line(settled(domain="crashed.example")),
        _host("success"),
        _line(settled(domain="after.example")),
    )
    assert (kept, retried) == ({"before.example", "after.example"}, 1)
