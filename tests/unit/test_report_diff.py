"""mxscan diff: every change kind, and no change claimed from an unknown."""

from __future__ import annotations

import typing

import orjson
import pytest

from probes.domain import DomainRecord
from report.diff import CHANGE_KINDS, diff_records, render_diff_ndjson, render_diff_text
from tests.unit.test_report_figures import as_dicts, good, record, smtp, sts_result

H = "mx.p.test"
TLSA_A = ("3 1 1 " + "ab" * 32,)
TLSA_B = ("3 1 1 " + "cd" * 32,)


def one(domain: str = "d.test", *, provider: str = "p.test", host: str = H, **kw: object) -> DomainRecord:
    probe = kw.pop("probe", smtp(host))
    return record(domain, mx=((10, host, provider, (probe,)),), **kw)  # type: ignore[arg-type]


def kinds(old: list[DomainRecord], new: list[DomainRecord]) -> list[tuple[str, str]]:
    return [(c.domain, c.kind) for c in diff_records(as_dicts(*old), as_dicts(*new)).changes]


CASES = [
    pytest.param(
        [one()],
        [one(probe=smtp(H, starttls="no", pkix=None))],
        ["starttls-lost", "cert-became-invalid"],
        id="starttls-lost",
    ),
    pytest.param(
        [one(probe=smtp(H, starttls="no", pkix=None))],
        [one()],
        ["starttls-gained", "cert-became-valid"],
        id="starttls-gained",
    ),
    pytest.param(
        [one()], [one(probe=smtp(H, pkix="expired"))], ["cert-became-invalid"], id="cert-became-invalid"
    ),
    pytest.param(
        [one(probe=smtp(H, pkix="self-signed"))], [one()], ["cert-became-valid"], id="cert-became-valid"
    ),
    pytest.param(
        [one(mta_sts=sts_result("d.test", mode="testing"))],
        [one(mta_sts=sts_result("d.test", mode="enforce"))],
        ["mta-sts-mode-changed"],
        id="mta-sts-testing-to-enforce",
    ),
    pytest.param(
        [one(mta_sts=sts_result("d.test", valid=False))],
        [one(mta_sts=sts_result("d.test"))],
        ["mta-sts-mode-changed"],
        id="mta-sts-appeared",
    ),
    pytest.param(
        [one(mta_sts=sts_result("d.test", sts_id="1"))],
        [one(mta_sts=sts_result("d.test", sts_id="2"))],
        ["mta-sts-id-changed"],
        id="policy-id-changed",
    ),
    pytest.param(
        [one(dnssec="secure")],
        [one(dnssec="secure", tlsa={H: TLSA_A})],
        ["tlsa-appeared"],
        id="tlsa-appeared",
    ),
    pytest.param(
        [one(dnssec="secure", tlsa={H: TLSA_A})],
        [one(dnssec="secure")],
        ["tlsa-disappeared"],
        id="tlsa-disappeared",
    ),
    pytest.param(
        [one(dnssec="secure", tlsa={H: TLSA_A})],
        [one(dnssec="secure", tlsa={H: TLSA_B})],
        ["tlsa-rolled-over"],
        id="tlsa-rolled-over",
    ),
    pytest.param(
        [one()],
        [one(provider="q.test", host="mx.q.test", probe=smtp("mx.q.test"))],
        ["mx-provider-changed"],
        id="mx-moved",
    ),
    pytest.param([one()], [record("d.test", implicit=True)], ["mx-lost"], id="mx-lost"),
    pytest.param([record("d.test", null_mx=True)], [one()], ["mx-gained"], id="mx-gained"),
    pytest.param([], [one()], ["domain-appeared"], id="domain-appeared"),
    pytest.param([one()], [], ["domain-disappeared"], id="domain-disappeared"),
    pytest.param([one()], [one()], [], id="unchanged"),
    pytest.param(
        [one()],
        [one(probe=smtp(H, starttls="unknown", pkix=None, status="io-timeout"))],
        [],
        id="timeout-is-not-lost-starttls",
    ),
    pytest.param([one()], [record("d.test", mx_outcome="timeout")], [], id="dns-timeout-is-not-mx-lost"),
]


@pytest.mark.parametrize(("old", "new", "expected"), CASES)
def test_change_kinds(old: list[DomainRecord], new: list[DomainRecord], expected: list[str]) -> None:
    assert sorted(k for _, k in kinds(old, new)) == sorted(expected)


def test_every_change_kind_is_covered_by_a_case() -> None:
    covered = {k for case in CASES for k in typing.cast(list[str], case.values[2])}
    assert covered == set(CHANGE_KINDS)


def test_summary_and_renderings() -> None:
    old = [good("a.test"), good("b.test"), record("bad", status="invalid-input", reason="x")]
    new = [good("a.test"), good("c.test")]
    result = diff_records(as_dicts(*old), as_dicts(*new))
    summary = result.summary()
    assert summary["old_domains"] == 2 and summary["new_domains"] == 2 and summary["unchanged"] == 1
    assert summary["changes"] == {"domain-appeared": 1, "domain-disappeared": 1}
    lines = [orjson.loads(line) for line in render_diff_ndjson(result)]
    assert lines[0] == {"domain": "c.test", "change": "domain-appeared", "old": "", "new": "mx"}
    assert lines[-1] == {"summary": summary}
    text = render_diff_text(result, old_label="old.ndjson", new_label="new.ndjson")
    assert "domain-disappeared" in text and "b.test" in text


def test_trend_dates_runs_and_charts_them() -> None:
    from report.summary import summarise
    from report.trend import date_from_name, render_trend_csv, render_trend_html, trend_row

    assert date_from_name("/x/results-20250131.ndjson") == "2025-01-31"
    assert date_from_name("results.ndjson") is None
    early = trend_row("a.ndjson", summarise(as_dicts(good("a.test", started="2024-11-04T01:00:00Z"))))
    late = trend_row("=b.ndjson", summarise(as_dicts(good("a.test", started="2025-02-01T01:00:00Z"))))
    csv_text = render_trend_csv([late, early])
    lines = csv_text.splitlines()
    assert lines[1].startswith("2024-11-04,a.ndjson,1,1,100.0,1,100.0,0")
    assert lines[2].startswith("2025-02-01,'=b.ndjson")  # no spreadsheet formula from a file name
    html = render_trend_html([early, late])
    assert "<svg" in html and "<polyline" in html and "<script" not in html
