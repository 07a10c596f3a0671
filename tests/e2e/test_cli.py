"""The command line run as a user would: the installed ``mxscan`` console script, from a
working directory that is not the repository."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pytest

from engine.retrypass import side_path
from mxscan.cli import _build_parser
from probes.domain import RunEnd, run_line
from probes.results import read_domain_records
from testbed.harness import Endpoint
from tests.e2e.worldscan import dns_scan_args, wait_for_domain_lines
from tests.unit.test_report_figures import as_lines, good, record

ROOT = Path(__file__).resolve().parents[2]
#: The console script ``pip install`` put beside this interpreter (``.venv/bin/mxscan``).
MXSCAN = str(Path(sys.executable).parent / "mxscan")


def mxscan(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="mxscan-cwd-") as elsewhere:
        return subprocess.run(
            [MXSCAN, *args],
            cwd=cwd or elsewhere,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )


def test_providers_lookup_names_the_study_providers() -> None:
    result = mxscan(
        "providers",
        "lookup",
        "alt1.aspmx.l.google.com",
        "contoso-com.mail.protection.outlook.com",
        "192.0.2.1",
    )
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "alt1.aspmx.l.google.com\tgoogle.com",
        "contoso-com.mail.protection.outlook.com\toutlook.com",
        "192.0.2.1\t-",
    ]


def test_providers_update_refuses_a_file_that_is_not_a_suffix_list(tmp_path: Path) -> None:
    bogus = tmp_path / "list.dat"
    bogus.write_text("hello\n")
    result = mxscan(
        "providers", "update", "--from", str(bogus), env={"XDG_CACHE_HOME": str(tmp_path / "cache")}
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (tmp_path / "cache" / "mxscan").exists() or not any((tmp_path / "cache" / "mxscan").iterdir())


def test_providers_update_stores_a_real_list(tmp_path: Path) -> None:
    import publicsuffixlist

    source = Path(publicsuffixlist.__file__).parent / "public_suffix_list.dat"
    cache = tmp_path / "cache"
    result = mxscan("providers", "update", "--from", str(source), env={"XDG_CACHE_HOME": str(cache)})
    assert result.returncode == 0, result.stderr
    assert (cache / "mxscan" / "public_suffix_list.dat").read_bytes() == source.read_bytes()


def test_schema_command_prints_the_committed_schema() -> None:
    result = mxscan("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads(
        (ROOT / "schema" / "domain-record.schema.json").read_text()
    )


def test_bad_limit_spec_is_a_clear_error(tmp_path: Path) -> None:
    listing = tmp_path / "d.txt"
    listing.write_text("example.test\n")
    result = mxscan("scan", str(listing), "--out", str(tmp_path / "o"), "--provider-limit", "google.com=lots")
    assert result.returncode == 2 and "'lots'" in result.stderr and "Traceback" not in result.stderr


# --- helpers: results files as a scan leaves them -------------------------------------------------

RUN_LINE = run_line(
    RunEnd(True, 0, "2024-11-04T00:00:00.000Z", "2024-11-04T01:00:00.000Z", "mxscan", "0.1.0")
)


def results_file(path: Path, *domains: str, crashed: tuple[str, ...] = (), finished: bool = True) -> bytes:
    """A results file holding ``domains`` (settled) and ``crashed`` (unknown-error); ``finished``
    ends it with a run line, as a scan that wrote every domain of its list does."""
    records = [good(d) for d in domains] + [record(d, status="unknown-error", reason="x") for d in crashed]
    data = b"".join(as_lines(*records)) + (RUN_LINE if finished else b"")
    path.write_bytes(data)
    return data


# --- issue #18 item 1: --retry-unknown removes nothing before its replacement is written ---------


def test_retry_unknown_with_the_resolver_down_changes_nothing_and_says_so(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("a.test\nb.test\nc.test\n")
    out = tmp_path / "r.ndjson"
    before = results_file(out, "a.test", crashed=("b.test", "c.test"))
    result = mxscan(
        "scan", str(listing), "--out", str(out), "--dns-only", "--retry-unknown", "--resolver", "127.0.0.9:9"
    )
    assert result.returncode == 2 and "not answering" in result.stderr, result.stderr
    assert "unchanged" in result.stderr and "Traceback" not in result.stderr
    assert out.read_bytes() == before
    assert not side_path(out).exists()


def test_fresh_with_the_resolver_down_keeps_the_old_results(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("a.test\nb.test\nc.test\n")
    out = tmp_path / "r.ndjson"
    before = results_file(out, "a.test", crashed=("b.test", "c.test"))
    result = mxscan(
        "scan", str(listing), "--out", str(out), "--dns-only", "--fresh", "--resolver", "127.0.0.9:9"
    )
    assert result.returncode == 2 and "not answering" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert out.read_bytes() == before


def _dns_scan(endpoint: Endpoint, listing: Path, out: Path, *extra: str) -> list[str]:
    return dns_scan_args(f"{endpoint.host}:{endpoint.port}", listing, out, *extra)


def test_a_retry_pass_killed_outright_loses_nothing_and_the_next_scan_merges_it(
    shared_resolver: Endpoint, tmp_path: Path
) -> None:
    fast = [
        f"{name}.scenario.test"
        for name in ("valid-cert", "no-starttls", "nxdomain", "null-mx", "expired-cert")
    ]
    listing = tmp_path / "list.txt"
    # the DNS timeout (4 s) holds the pass (one domain at a time) after the fast ones
    listing.write_text("\n".join([*fast, "timeout.scenario.test", "self-signed.scenario.test"]) + "\n")
    out = tmp_path / "r.ndjson"
    first = mxscan(*_dns_scan(shared_resolver, listing, out))
    assert first.returncode == 0, first.stderr
    # Crash records (as a probe bug leaves them) for the fast domains: what the retry redoes.
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    for line in lines:
        if line.get("domain") in (*fast, "self-signed.scenario.test"):
            line.update(status="unknown-error", reason="crash", measured_at="before")
    before = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    out.write_bytes(before)

    retry = subprocess.Popen(
        [MXSCAN, *_dns_scan(shared_resolver, listing, out, "--retry-unknown")], cwd=tmp_path
    )
    try:
        wait_for_domain_lines(retry, side_path(out), len(fast))  # kill point by progress
        os.kill(retry.pid, signal.SIGKILL)
        retry.wait(timeout=30)
    finally:
        if retry.poll() is None:
            retry.kill()
    assert out.read_bytes() == before, "nothing is removed before the pass ends"
    assert side_path(out).exists()

    plain = mxscan(*_dns_scan(shared_resolver, listing, out))
    assert plain.returncode == 0 and "merged an interrupted --retry-unknown pass" in plain.stderr
    after = {r["domain"]: r for r in read_domain_records(out)}
    assert sorted(after) == sorted(listing.read_text().split())  # each domain exactly once
    assert all(after[d]["status"] == "success" and after[d]["measured_at"] != "before" for d in fast)
    assert after["self-signed.scenario.test"]["measured_at"] == "before"  # not reached: kept as it was
    assert out.read_bytes().endswith(b"\n") and orjson.loads(out.read_bytes().splitlines()[-1])["run"]
    assert not side_path(out).exists()

    again = mxscan(*_dns_scan(shared_resolver, listing, out, "--retry-unknown"))
    assert again.returncode == 0 and "retrying 2 domains" in again.stderr, again.stderr
    statuses = {r["domain"]: r["status"] for r in read_domain_records(out)}
    assert statuses["self-signed.scenario.test"] == "success"


# --- issue #18 item 4: diff and trend refuse an unfinished results file ---------------------------


def test_diff_and_trend_refuse_an_unfinished_results_file_or_flag_it_when_allowed(tmp_path: Path) -> None:
    old, new = tmp_path / "2024-11-04.ndjson", tmp_path / "2024-11-11.ndjson"
    results_file(old, "a.test", "b.test")
    results_file(new, "a.test", finished=False)  # killed: b.test not measured yet
    for command in (["diff", str(old), str(new)], ["trend", str(old), str(new)]):
        refused = mxscan(*command)
        assert refused.returncode == 2, refused.stderr
        assert (
            f"{new}: the scan has not finished" in refused.stderr and "--allow-unfinished" in refused.stderr
        )
        assert str(old) not in refused.stderr and not refused.stdout
    diff = mxscan("diff", str(old), str(new), "--allow-unfinished")
    assert diff.returncode == 0 and f"WARNING: {new} is an unfinished scan" in diff.stdout
    trend = mxscan("trend", str(old), str(new), "--allow-unfinished")
    rows = {row.split(",")[1]: row.split(",")[-1] for row in trend.stdout.splitlines()[1:]}
    assert trend.returncode == 0 and rows == {str(old): "True", str(new): "False"}
    results_file(new, "a.test", "b.test")  # finished now
    assert mxscan("diff", str(old), str(new)).returncode == 0
    assert mxscan("trend", str(old), str(new)).returncode == 0


# --- issue #18 item 5: --out into a directory that does not exist ---------------------------------


def test_outputs_into_missing_directories_are_created(tmp_path: Path) -> None:
    results = tmp_path / "2024-11-04.ndjson"
    results_file(results, "a.test")
    commands = {
        "reports/x/report.html": [
            "report",
            str(results),
            "--format",
            "html",
            "--out",
            "reports/x/report.html",
        ],
        "reports/y/diff.txt": ["diff", str(results), str(results), "--out", "reports/y/diff.txt"],
        "reports/z/trend.csv": ["trend", str(results), "--csv", "reports/z/trend.csv", "--html", "t/t.html"],
        "schema/out/s.json": ["schema", "--out", "schema/out/s.json"],
    }
    for target, command in commands.items():
        result = mxscan(*command, cwd=tmp_path)  # relative paths, as in the recipe
        assert result.returncode == 0 and (tmp_path / target).stat().st_size > 0, result.stderr
    assert (tmp_path / "t" / "t.html").exists()


def test_outputs_that_cannot_be_written_are_a_clear_error(tmp_path: Path) -> None:
    results = tmp_path / "r.ndjson"
    results_file(results, "a.test")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for command in (
        ["report", str(results), "--out", f"{blocker}/r.txt"],
        ["diff", str(results), str(results), "--out", f"{blocker}/d.txt"],
        ["trend", str(results), "--csv", f"{blocker}/t.csv"],
        ["schema", "--out", f"{blocker}/s.json"],
        ["report", str(results), "--out", str(tmp_path)],  # a directory
    ):
        result = mxscan(*command)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (command, result.stderr)
        assert str(blocker) in result.stderr or str(tmp_path) in result.stderr


def test_scan_summary_json_into_an_impossible_place_is_refused_before_scanning(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("a.test\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = mxscan(
        *("scan", str(listing), "--out", str(tmp_path / "r.ndjson"), "--dns-only"),
        *("--resolver", "127.0.0.9:9", "--summary-json", f"{blocker}/s.json"),
    )
    assert (
        result.returncode == 2 and "--summary-json" in result.stderr and "not answering" not in result.stderr
    )


# --- issue #18 item 8: every numeric option is range-checked, in the user's words -----------------

BAD_VALUES = [
    ("--smtp-port", "70000", "--smtp-port must be a port number 1-65535, got 70000"),
    ("--smtp-port", "0", "--smtp-port must be a port number 1-65535, got 0"),
    ("--https-port", "-443", "--https-port must be a port number 1-65535, got -443"),
    ("--smtp-retries", "-1", "--smtp-retries must be a whole number 0-10, got -1"),
    ("--max-parked", "-5", "--max-parked must be a whole number >= 0, got -5"),
    ("--concurrency", "0", "--concurrency must be a whole number >= 1, got 0"),
    ("--concurrency", "many", "--concurrency must be a whole number >= 1, got many"),
    ("--dns-in-flight", "1.5", "--dns-in-flight must be a whole number >= 1, got 1.5"),
    ("--dns-attempts", "0", "--dns-attempts must be a whole number 1-10, got 0"),
    ("--smtp-in-flight", "-2", "--smtp-in-flight must be a whole number >= 1, got -2"),
    ("--per-ip-connections", "0", "--per-ip-connections must be a whole number >= 1, got 0"),
    ("--dns-timeout", "0", "--dns-timeout must be a number of seconds > 0, got 0"),
    ("--smtp-timeout", "nan", "--smtp-timeout must be a number of seconds > 0, got nan"),
    ("--smtp-connect-timeout", "inf", "--smtp-connect-timeout must be a number of seconds > 0, got inf"),
    ("--smtp-host-timeout", "-90", "--smtp-host-timeout must be a number of seconds > 0, got -90"),
    ("--smtp-retry-delay", "soon", "--smtp-retry-delay must be a number of seconds > 0, got soon"),
    ("--grace", "-1", "--grace must be a number of seconds > 0, got -1"),
    ("--resolver", "127.0.0.1:70000", "--resolver must be HOST[:PORT] with a port 1-65535"),
]


@pytest.mark.parametrize(
    ("option", "value", "message"), BAD_VALUES, ids=[f"{o}={v}" for o, v, _ in BAD_VALUES]
)
def test_a_bad_scan_option_value_is_refused_in_the_users_words(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("a.test\n")
    result = mxscan(
        "scan", str(listing), "--out", str(tmp_path / "r.ndjson"), "--dns-only", f"{option}={value}"
    )
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "invalid" not in result.stderr and "_int" not in result.stderr
    assert not (tmp_path / "r.ndjson").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--top", "-1", "--top must be a whole number >= 1, got -1"),
        ("--cap", "x", "--cap must be a whole number >= 0"),
    ],
)
def test_a_bad_report_option_value_is_refused_in_the_users_words(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    results = tmp_path / "r.ndjson"
    results_file(results, "a.test")
    result = mxscan("report", str(results), option, value)
    assert result.returncode == 2 and message in result.stderr, result.stderr


# --- issue #18 item 9: every command answers --help and is in the README ---------------------------


def _commands() -> list[tuple[str, ...]]:
    """Every command and subcommand of the parser (the test world's are its own engineer's)."""
    found: list[tuple[str, ...]] = []

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if name != "testbed":
                        found.append((*path, name))
                        walk(sub, (*path, name))

    walk(_build_parser(), ())
    return found


def test_every_command_answers_help_and_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = _commands()
    assert {"scan", "report", "diff", "trend", "schema", "providers", ("providers", "update")} <= {
        c[0] if len(c) == 1 else c for c in commands
    }
    for command in commands:
        result = mxscan(*command, "--help")
        assert result.returncode == 0 and result.stdout.startswith("usage: mxscan " + " ".join(command))
        assert f"mxscan {' '.join(command)}" in readme, f"README does not show `mxscan {' '.join(command)}`"
    assert "python -c" not in readme, "every how-to uses the mxscan command, which works outside the venv"
