"""End to end: scan, kill -9 at random points, resume, and compare with an
uninterrupted run of the same list against the same test world."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import orjson
import pytest

from engine.checkpoint import finished
from mxscan.schema import schema
from probes.results import read_domain_records
from testbed.control import NetOptions, WorldSpec
from testbed.harness import Endpoint, running_dns
from tests.e2e.worldscan import domain_lines, wait_for_domain_lines

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = 3000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Endpoint, Path]]:
    """A scale world behind an Internet-like resolver (20 ms ± 10 ms per answer), so a
    scan takes long enough for kills and signals to land in the middle of it.  Private (not
    the session's scenario world): another spec and a slow resolver."""
    spec = WorldSpec("scale", domains=DOMAINS, seed=7)
    directory = tmp_path_factory.mktemp("resume")
    names = directory / "domains.txt"
    names.write_text("".join(f"{d.name}\n" for d in spec.build().domains))
    with running_dns(spec, net=NetOptions(rtt=0.02, jitter=0.01)) as endpoint:
        yield endpoint, names


def _scan_argv(endpoint: Endpoint, names: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mxscan",
        "scan",
        str(names),
        "--out",
        str(out),
        "--resolver",
        f"{endpoint.host}:{endpoint.port}",
        "--dns-only",
        "--preflight-bogus",
        "dnssec-failed.test",
        # Far above scheduling noise on a loaded machine (the world answers in 20 ms ± 10 ms and
        # has no unresponsive names): a timeout must never decide a record of a run compared.
        "--dns-timeout",
        "5",
        "--concurrency",
        "48",
        "--progress",
        "off",
        *extra,
    ]


def _comparable(path: Path) -> dict[str, dict[str, object]]:
    """domain -> record without the fields that differ between runs by nature."""
    records: dict[str, dict[str, object]] = {}
    for record in read_domain_records(path):
        for volatile in ("measured_at", "duration_ms", "scan"):
            record.pop(volatile)
        assert record["domain"] not in records, f"{record['domain']} written twice"
        records[record["domain"]] = record
    return records


@pytest.fixture(scope="module")
def uninterrupted(
    world: tuple[Endpoint, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, object]]:
    """The records of an uninterrupted run, once for every kind of results file compared."""
    endpoint, names = world
    reference = tmp_path_factory.mktemp("reference") / "reference.ndjson"
    subprocess.run(_scan_argv(endpoint, names, reference), check=True, cwd=ROOT, timeout=300)
    expected = _comparable(reference)
    assert len(expected) == DOMAINS
    validator = jsonschema.Draft202012Validator(schema())
    for line in reference.read_bytes().splitlines():
        validator.validate(orjson.loads(line))  # every real record fits the published schema
    return expected


@pytest.mark.parametrize("name", ["killed.ndjson", "killed.ndjson.gz"])
def test_kill_9_at_random_points_then_resume_equals_an_uninterrupted_run(
    world: tuple[Endpoint, Path], uninterrupted: dict[str, dict[str, object]], tmp_path: Path, name: str
) -> None:
    """Plain and compressed results files alike (``*.gz``: a gzip member per flush, a torn last
    member cut on resume)."""
    endpoint, names = world
    expected = uninterrupted
    out = tmp_path / name
    rng = random.Random(20261129)
    # Each run is killed once it has added a random number of records (at least one flush of
    # new lines, never the whole list): four kills land inside the scan on any machine speed.
    for _ in range(4):
        target = domain_lines(out) + rng.randint(1, DOMAINS // 8)
        proc = subprocess.Popen(_scan_argv(endpoint, names, out), cwd=ROOT, text=True)
        try:
            wait_for_domain_lines(proc, out, target)
        finally:
            proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, "the scan must still have been running when killed"
    lines = domain_lines(out)
    assert 0 < lines < DOMAINS
    assert name.endswith(".gz") == (out.read_bytes()[:2] == b"\x1f\x8b")
    result = subprocess.run(_scan_argv(endpoint, names, out), cwd=ROOT, timeout=300)
    assert result.returncode == 0
    assert _comparable(out) == expected
    assert finished(out)


def test_sigterm_stops_gracefully_and_says_how_to_resume(
    world: tuple[Endpoint, Path], tmp_path: Path
) -> None:
    endpoint, names = world
    out = tmp_path / "stopped.ndjson"
    proc = subprocess.Popen(
        _scan_argv(endpoint, names, out, "--concurrency", "8"), cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_domain_lines(proc, out, 1)  # stopped once it has written something, not after N seconds
    finally:
        proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Re-run the same command to resume" in stderr
    written = sum(1 for _ in read_domain_records(out))
    assert 0 < written < DOMAINS
    finished = subprocess.run(_scan_argv(endpoint, names, out), cwd=ROOT, timeout=300)
    assert finished.returncode == 0 and len(_comparable(out)) == DOMAINS


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mxscan", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"# only a comment\n\n", "empty"), (b"\x00\x01\x02binary\xff" * 10, "binary")],
    ids=["empty-file", "comments-only", "binary-file"],
)
def test_unusable_domain_list_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    source = tmp_path / "list.txt"
    source.write_bytes(content)
    result = _run("scan", str(source), "--out", str(tmp_path / "r.ndjson"), "--dns-only")
    assert result.returncode == 2
    assert message in result.stderr.lower() and "Traceback" not in result.stderr


def test_resolver_down_is_a_clear_error_within_seconds(tmp_path: Path) -> None:
    source = tmp_path / "list.txt"
    source.write_text("example.test\n")
    began = time.monotonic()
    result = _run(
        "scan", str(source), "--out", str(tmp_path / "r.ndjson"), "--dns-only", "--resolver", "127.0.0.9:9"
    )
    assert result.returncode == 2 and "not answering" in result.stderr
    assert time.monotonic() - began < 15


def test_foreign_results_file_is_refused_without_fresh(world: tuple[Endpoint, Path], tmp_path: Path) -> None:
    endpoint, names = world
    out = tmp_path / "notes.ndjson"
    out.write_text("my precious notes\n")
    result = subprocess.run(
        _scan_argv(endpoint, names, out), cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "--fresh" in result.stderr
    assert out.read_text() == "my precious notes\n"


def test_invalid_lines_become_records(world: tuple[Endpoint, Path], tmp_path: Path) -> None:
    endpoint, _ = world
    source = tmp_path / "mixed.txt"
    source.write_text(
        "valid-cert.scenario.test\nnot a domain\n_under.score.test\nVALID-CERT.scenario.test.\n"
    )
    out = tmp_path / "mixed.ndjson"
    contact = "https://scanner.mxscan.test/opt-out"
    result = subprocess.run(_scan_argv(endpoint, source, out, "--contact", contact), cwd=ROOT, timeout=60)
    assert result.returncode == 0
    records = list(read_domain_records(out))
    assert {r["scan"]["contact"] for r in records} == {contact}
    by_status = sorted((r["status"], r["domain"]) for r in records)
    assert by_status == [
        ("invalid-input", "_under.score.test"),
        ("invalid-input", "not a domain"),
        ("success", "valid-cert.scenario.test"),
    ]
    assert all(r["reason"] for r in records if r["status"] == "invalid-input")


def test_no_ehlo_name_refuses_smtp_scan(tmp_path: Path) -> None:
    source = tmp_path / "list.txt"
    source.write_text("example.test\n")
    env_free = {k: v for k, v in os.environ.items() if k != "MXSCAN_EHLO_NAME"}
    result = subprocess.run(
        [sys.executable, "-m", "mxscan", "scan", str(source), "--out", str(tmp_path / "r.ndjson")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env_free,
        timeout=60,
    )
    assert result.returncode == 2 and "--ehlo-name" in result.stderr


def test_retry_unknown_reprobes_only_unknown_domains_in_place(
    shared_resolver: Endpoint, tmp_path: Path
) -> None:
    source = tmp_path / "list.txt"
    source.write_text("timeout.scenario.test\nvalid-cert.scenario.test\nnxdomain.scenario.test\n")
    out = tmp_path / "r.ndjson"
    first = subprocess.run(_scan_argv(shared_resolver, source, out), cwd=ROOT, timeout=60)
    assert first.returncode == 0
    before = {r["domain"]: r for r in read_domain_records(out)}
    assert before["timeout.scenario.test"]["dns"]["mx"]["outcome"] == "timeout"
    again = subprocess.run(
        _scan_argv(shared_resolver, source, out, "--retry-unknown"),
        cwd=ROOT,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0 and "retrying 1 domains" in again.stderr
    after = {r["domain"]: r for r in read_domain_records(out)}
    assert sorted(after) == sorted(before)  # each domain exactly once
    assert after["timeout.scenario.test"]["measured_at"] != before["timeout.scenario.test"]["measured_at"]
    for settled in ("valid-cert.scenario.test", "nxdomain.scenario.test"):
        assert after[settled] == before[settled]
