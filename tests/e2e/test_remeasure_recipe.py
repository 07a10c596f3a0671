"""The README's scheduled re-measurement recipe (``contrib/remeasure.sh`` and the systemd
units beside it), run as cron runs it: ``cd DATA && ./remeasure.sh`` with cron's PATH
(/usr/bin:/bin), the installed ``mxscan`` given by absolute path, the date faked through
MXSCAN_TODAY, against a tier (a) test world on ephemeral ports (issue #18 items 3, 4, 5).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from engine.checkpoint import finished
from probes.results import read_domain_records
from testbed.control import NetOptions, WorldSpec
from testbed.harness import RunningWorld, running_world
from tests.e2e.worldscan import domain_lines, wait_for_domain_lines, world_scan_argv

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
#: The console script ``pip install`` put beside this interpreter (``.venv/bin/mxscan``).
MXSCAN = Path(sys.executable).parent / "mxscan"
FIRST, SECOND = "2026-11-02", "2026-11-09"


@pytest.fixture(scope="module")
def world() -> Iterator[RunningWorld]:
    """A small scale world behind a resolver with a 30 ms round trip: a scan of it takes a few
    seconds, so a kill chosen by progress lands in the middle of one.  Private (not the
    session's scenario world): another spec and a slow resolver."""
    with running_world(WorldSpec("scale", domains=24, seed=5), net=NetOptions(rtt=0.03)) as running:
        yield running


def _cron_env(world: RunningWorld, data: Path, today: str) -> dict[str, str]:
    options = world_scan_argv(world.endpoints, Path("unused"), Path("unused"))[7:]
    return {
        "PATH": "/usr/bin:/bin",  # cron's
        "HOME": str(data),
        "LANG": "C.UTF-8",
        "MXSCAN": str(MXSCAN),
        "MXSCAN_LIST": "domains.txt",
        "MXSCAN_OPTIONS": " ".join([*options, "--concurrency", "1"]),
        "MXSCAN_TODAY": today,
    }


def _run_line(path: Path) -> dict[str, object]:
    run: dict[str, object] = orjson.loads(path.read_bytes().splitlines()[-1])["run"]
    return run


def test_a_run_cut_short_is_finished_by_the_next_run_and_diff_and_trend_see_only_finished_files(
    world: RunningWorld, tmp_path: Path
) -> None:
    data = tmp_path / "srv-mxscan"
    data.mkdir()
    shutil.copy2(CONTRIB / "remeasure.sh", data / "remeasure.sh")
    names = (world.state_dir / "domains.txt").read_text().split()
    (data / "domains.txt").write_text("\n".join(names) + "\n")
    first, second = data / "runs" / f"{FIRST}.ndjson", data / "runs" / f"{SECOND}.ndjson"

    # First run: killed (the whole job, as a reboot would) once 6 domains are written.
    with (tmp_path / "first.log").open("wb") as log:
        job = subprocess.Popen(
            ["./remeasure.sh"],
            cwd=data,
            env=_cron_env(world, data, FIRST),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the script, the scan, the probe process
        )
        try:
            wait_for_domain_lines(job, first, 6)
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(timeout=30)
        finally:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait()
    assert 6 <= domain_lines(first) < len(names) and not finished(first)
    assert not (data / "reports" / f"{FIRST}.html").exists()
    refused = subprocess.run(
        [str(MXSCAN), "trend", str(first)], cwd=data, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "has not finished" in refused.stderr

    # Second run, a week later: finishes the first run, then measures its own.
    second_run = subprocess.run(
        ["./remeasure.sh"],
        cwd=data,
        env=_cron_env(world, data, SECOND),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second_run.returncode == 0, second_run.stderr[-3000:]
    assert f"finishing the run of {FIRST} first" in second_run.stderr
    for run in (first, second):
        assert finished(run)
        domains = [r["domain"] for r in read_domain_records(run)]
        assert sorted(domains) == sorted(names)  # every domain, exactly once
    # The first file was finished before the second run started.
    second_started = min(r["scan"]["started"] for r in read_domain_records(second))
    assert str(_run_line(first)["ended"]) <= second_started
    reports = data / "reports"
    assert (reports / f"{FIRST}.html").exists() and (reports / f"{SECOND}.html").exists()
    diff = (reports / f"{SECOND}.diff.txt").read_text()
    assert diff.startswith(f"mxscan diff: runs/{FIRST}.ndjson -> runs/{SECOND}.ndjson")
    assert "unfinished" not in diff
    trend = (reports / "trend.csv").read_text().splitlines()
    rows = [dict(zip(trend[0].split(","), row.split(","), strict=True)) for row in trend[1:]]
    # (rows are dated by when their domains were measured, not by the faked MXSCAN_TODAY)
    assert sorted((r["file"], r["scanned"], r["finished"]) for r in rows) == [
        (f"runs/{FIRST}.ndjson", str(len(names)), "True"),
        (f"runs/{SECOND}.ndjson", str(len(names)), "True"),
    ]


def test_the_readme_shows_the_recipe_that_the_test_runs_and_how_cron_finds_mxscan() -> None:
    readme = (ROOT / "README.md").read_text()
    assert (CONTRIB / "remeasure.sh").read_text() in readme, "README's recipe and contrib/remeasure.sh differ"
    assert os.access(CONTRIB / "remeasure.sh", os.X_OK)
    cron = next(line for line in readme.splitlines() if line.startswith("0 2 * * 1"))
    assert "MXSCAN=/" in cron and "./remeasure.sh" in cron  # an absolute path: cron's PATH lacks .venv
    assert ". .venv/bin/activate" in readme and "pip install" in readme


def test_the_systemd_units_run_the_recipe_weekly_and_verify() -> None:
    service = (CONTRIB / "mxscan-remeasure.service").read_text()
    timer = (CONTRIB / "mxscan-remeasure.timer").read_text()
    assert "Type=oneshot" in service and "remeasure.sh" in service and "Environment=MXSCAN=/" in service
    assert "Persistent=true" in timer and "OnCalendar=Mon" in timer
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the units' syntax is not checked")
    result = subprocess.run(
        [
            analyze,
            "verify",
            str(CONTRIB / "mxscan-remeasure.timer"),
            str(CONTRIB / "mxscan-remeasure.service"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
