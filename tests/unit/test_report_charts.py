"""Charts people read (issue #16): funnel labels meet WCAG AA contrast, and trend
charts show the top providers and the misconfiguration counts over time."""

from __future__ import annotations

import re

import pytest

from probes.dane.tlsa import DaneStatus
from probes.mtasts.records import Finding
from report.charts import FUNNEL_FILLS, FUNNEL_TEXT, PAGE_BACKGROUND, contrast_ratio, funnel_chart
from report.summary import summarise
from report.trend import render_trend_csv, render_trend_html, trend_row
from tests.unit.test_report_figures import as_dicts, record, smtp, sts_result

#: WCAG 2.x success criterion 1.4.3 (AA): normal-size text (the labels are 13 px).
AA_NORMAL_TEXT = 4.5


@pytest.mark.parametrize(
    ("foreground", "background", "ratio"),
    [("#000000", "#ffffff", 21.0), ("#ffffff", "#ffffff", 1.0), ("#777777", "#ffffff", 4.48)],
)
def test_contrast_ratio_follows_the_wcag_formula(foreground: str, background: str, ratio: float) -> None:
    assert contrast_ratio(foreground, background) == pytest.approx(ratio, abs=0.01)


def test_every_funnel_label_meets_wcag_aa_on_its_bar_and_on_the_page() -> None:
    steps = [(f"step {i}", 1000 - 100 * i) for i in range(len(FUNNEL_FILLS) + 1)]
    svg = funnel_chart("funnel", [*steps, ("narrow", 1)])
    fills = re.findall(r'<rect [^>]*fill="(#[0-9a-f]{6})"', svg)
    texts = re.findall(r'<text [^>]*fill="(#[0-9a-f]{6})"', svg)
    assert len(fills) == len(texts) == len(steps) + 1
    assert "fill-opacity" not in svg  # the ratios below hold for opaque colours only
    for bar, text in zip(fills, texts, strict=True):
        assert contrast_ratio(text, bar) >= AA_NORMAL_TEXT, (text, bar)
        # a narrow bar leaves its label on the page itself
        assert contrast_ratio(text, PAGE_BACKGROUND) >= AA_NORMAL_TEXT
    assert set(texts) == {FUNNEL_TEXT}


def _run(started: str, *, broken: int) -> dict[str, object]:
    """A run with google.com (2 domains, one without STARTTLS) and `broken` misconfigured domains."""
    google = (smtp("aspmx.l.google.com"),)
    plain = (smtp("mx.plain.example", starttls="no", pkix=None, address="192.0.2.9"),)
    records = [
        record("a.example", mx=((10, "aspmx.l.google.com", "google.com", google),), started=started),
        record("b.example", mx=((10, "mx.plain.example", "google.com", plain),), started=started),
    ]
    for i in range(broken):
        host = f"mx.bad{i}.example"
        records.append(
            record(
                f"bad{i}.example",
                mx=((10, host, "bad.example", (smtp(host, pkix="expired", address=f"192.0.2.{20 + i}"),)),),
                dnssec="secure",
                tlsa={host: ("3 1 1 " + "ab" * 32,)},
                dane={host: DaneStatus.MISMATCH},
                mta_sts=sts_result(f"bad{i}.example", mode="enforce", findings=(Finding.ENFORCE_WOULD_FAIL,)),
                started=started,
            )
        )
    return summarise(as_dicts(*records))


def test_trend_counts_misconfigurations_per_run() -> None:
    rows = [
        trend_row("r1.ndjson", _run("2025-01-01T00:00:00Z", broken=1)),
        trend_row("r2.ndjson", _run("2025-02-01T00:00:00Z", broken=3)),
    ]
    csv_lines = render_trend_csv(rows).splitlines()
    header = csv_lines[0].split(",")
    assert header[-1] == "finished" and "providers" not in header
    values = [dict(zip(header, line.split(","), strict=True)) for line in csv_lines[1:]]
    for column in ("enforce_would_fail", "dane_mismatch", "expired_certificates"):
        assert [v[column] for v in values] == ["1", "3"], column
    html = render_trend_html(rows)
    section = html.split('id="misconfigurations"')[1].split("<h2")[0]
    assert "MTA-STS enforce would fail" in section and "Expired MX certificates" in section
    assert section.count("<polyline") == 3


def test_trend_draws_a_line_per_top_provider_for_each_question() -> None:
    rows = [
        trend_row("r1.ndjson", _run("2025-01-01T00:00:00Z", broken=1)),
        trend_row("r2.ndjson", _run("2025-02-01T00:00:00Z", broken=3)),
    ]
    html = render_trend_html(rows)
    section = html.split('id="providers"')[1]
    assert section.count("<svg") == 4  # STARTTLS, valid certificate, DANE, MTA-STS
    assert "google.com" in section and "bad.example" in section
    starttls = section.split("<svg")[1]
    # google.com: one of two domains with STARTTLS in both runs -> a flat line at 50%
    google = rows[0]["providers"]["google.com"]
    assert (google["domains"], google["domains_starttls"]) == (2, 1)
    assert starttls.count("<polyline") == 2


def test_every_text_colour_of_the_html_report_meets_wcag_aa_on_its_backgrounds() -> None:
    from report.render_html import _CSS

    backgrounds = [PAGE_BACKGROUND, *re.findall(r"background:(#[0-9a-f]{6})", _CSS)]
    colours = re.findall(r"(?<![-\w])color:(#[0-9a-f]{6})", _CSS)
    assert "#1a202c" in colours and len(backgrounds) >= 2
    for colour in colours:
        for background in backgrounds:
            assert contrast_ratio(colour, background) >= AA_NORMAL_TEXT, (colour, background)
