"""The HTML report with hostile scanned strings: escaped in the file, inert in a real browser."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from probes.dane.tlsa import DaneStatus
from probes.mtasts.records import Finding
from report.commands import run_report
from tests.unit.test_report_figures import as_lines, record, smtp, sts_result

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
HOSTILE = (SCRIPT, IMG)


def hostile_results(path: Path) -> None:
    records = []
    for i, evil in enumerate(HOSTILE):
        host = f"mx{i}.evil.test"
        bad = smtp(
            host,
            status="application-error",
            starttls="unknown",
            pkix=None,
            banner=evil,
            ehlo_name=evil,
            detail=evil,
        )
        expired = smtp(f"old{i}.evil.test", pkix="expired", banner=evil, detail=evil)
        records.append(
            record(
                f"d{i}.test",
                mx=((10, host, evil, (bad,)), (20, f"old{i}.evil.test", "evil.test", (expired,))),
                dnssec="secure",
                tlsa={host: ("3 1 1 " + "ab" * 32,)},
                dane={host: DaneStatus.MISMATCH},
                mta_sts=sts_result(
                    f"d{i}.test", findings=(Finding.ENFORCE_WOULD_FAIL,), mx=(evil,), provider=evil
                ),
            )
        )
        records.append(record(evil, status="invalid-input", reason=f"bad-label:{evil}"))
        records.append(record(f"c{i}.test", status="unknown-error", reason=f"{evil}: boom"))
    for i in range(20):
        records.append(
            record(
                f"g{i}.test",
                mx=((10, "mx.good.test", "good.test", (smtp("mx.good.test"),)),),
                tlsrpt=i % 3 == 0,
            )
        )
    path.write_bytes(b"".join(as_lines(*records)))


class Args:
    def __init__(self, results: Path, out: Path) -> None:
        self.results, self.out, self.format, self.top, self.cap = results, out, "html", 10, 20


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    results = tmp / "results.ndjson"
    hostile_results(results)
    out = tmp / "report.html"
    assert run_report(Args(results, out)) == 0  # type: ignore[arg-type]
    return out


def test_hostile_strings_are_escaped_in_the_file(report_html: Path) -> None:
    html = report_html.read_text()
    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html.replace("https://mta-sts.", "")  # only footnote text, never a fetch


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run_chromium(binary: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "HOME": str(profile)},
    )


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_rendered_in_headless_chromium(report_html: Path, tmp_path: Path) -> None:
    binary = _chromium()
    assert binary is not None
    url = report_html.resolve().as_uri()
    dom = _run_chromium(binary, tmp_path / "p1", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout.lower()
    assert text.count("<svg") >= 2  # adoption bars and funnel
    assert "<rect" in text and "<table" in text
    assert (
        "<script" not in text
        and "<img" not in text
        and "onerror=" not in text.replace("onerror=alert(1)&gt;", "")
    )
    assert "alert(1)" in text  # present, as text
    png = Path(os.environ.get("REPORT_SCREENSHOT", str(tmp_path / "report.png")))
    shot = _run_chromium(binary, tmp_path / "p2", f"--screenshot={png}", "--window-size=1200,2000", url)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert png.stat().st_size > 10_000
