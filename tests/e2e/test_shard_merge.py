"""End to end: ``mxscan scan --shard K/N`` (N = 3) of the scenario world and ``mxscan merge``
of the three files equal one unsharded scan of the same world, per domain (timestamps,
timings and the scan's own metadata aside); the merged file is finished and read by report,
diff, trend and export; merge refuses what is not one whole scan (unfinished or missing
shards, files of another scan, a domain in two files, a file being written)."""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.checkpoint import finished
from probes.results import read_domain_records
from scaleout.merge import MergeError, merge_shards
from scaleout.shard import shard_of
from testbed.harness import RunningWorld
from tests.e2e.worldscan import world_scan_argv

ROOT = Path(__file__).resolve().parents[2]
#: Fields that differ between two runs by nature (when, how long, which run).
VOLATILE = frozenset({"measured_at", "duration_ms", "phase_ms", "scan", "started", "ended"})


def _scan(shared_world: RunningWorld, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    argv = world_scan_argv(shared_world.endpoints, shared_world.state_dir / "domains.txt", out, *extra)
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait(scan: subprocess.Popen[bytes]) -> None:
    _, err = scan.communicate(timeout=240)
    assert scan.returncode == 0, err.decode()[-2000:]


@pytest.fixture(scope="module")
def scans(
    shared_world: RunningWorld, shared_scan: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The unsharded scan (the session's, tests/worlds.py: read only), then the three shards
    (one of them gzip) side by side, as three machines would run them, and their merge."""
    where = tmp_path_factory.mktemp("shards")
    whole = shared_scan
    shards = [where / "s1.ndjson", where / "s2.ndjson.gz", where / "s3.ndjson"]
    running = [_scan(shared_world, path, "--shard", f"{k}/3") for k, path in enumerate(shards, start=1)]
    for scan in running:
        _wait(scan)
    merged = where / "merged.ndjson"
    run = subprocess.run(
        [sys.executable, "-m", "mxscan", "merge", str(merged), *map(str, shards)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "merged 3 files" in run.stdout and "(finished)" in run.stdout
    return {"whole": whole, "merged": merged, **{f"s{k}": path for k, path in enumerate(shards, start=1)}}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _stable(item) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [_stable(item) for item in value]
    return value


def _comparable(path: Path) -> dict[str, Any]:
    records: dict[str, Any] = {}
    for record in read_domain_records(path):
        assert record["domain"] not in records, f"{record['domain']} written twice"
        records[record["domain"]] = _stable(record)
    return records


def _run_line(path: Path) -> dict[str, Any]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        return orjson.loads(stream.read().splitlines()[-1])["run"]


def test_three_shards_merged_equal_one_unsharded_scan(scans: dict[str, Path]) -> None:
    whole, merged = _comparable(scans["whole"]), _comparable(scans["merged"])
    assert set(merged) == set(whole)
    different = [domain for domain in whole if merged[domain] != whole[domain]]
    assert not different, (different[:5], [(merged[d], whole[d]) for d in different[:1]])
    assert finished(scans["merged"])
    assert _run_line(scans["merged"])["domains"] == len(whole)
    assert _run_line(scans["merged"])["shard"] is None


def test_each_shard_holds_its_domains_and_its_run_line_names_the_scan(scans: dict[str, Path]) -> None:
    runs = [_run_line(scans[f"s{k}"]) for k in (1, 2, 3)]
    assert [run["shard"]["index"] for run in runs] == [1, 2, 3]
    assert {(run["shard"]["count"], run["shard"]["list"], run["shard"]["options"]) for run in runs} == {
        (3, runs[0]["shard"]["list"], runs[0]["shard"]["options"])
    }
    sizes = []
    for k in (1, 2, 3):
        domains = [record["domain"] for record in read_domain_records(scans[f"s{k}"])]
        assert domains and {shard_of(domain, 3) for domain in domains} == {k}
        sizes.append(len(domains))
    assert sum(sizes) == len(_comparable(scans["whole"]))


def test_the_merged_file_is_read_by_report_diff_trend_and_export(scans: dict[str, Path]) -> None:
    merged, whole = str(scans["merged"]), str(scans["whole"])
    for argv in (
        ["report", merged],
        ["diff", whole, merged, "--format", "ndjson"],
        ["trend", whole, merged],
        ["export", merged, "--level", "address"],
    ):
        run = subprocess.run(
            [sys.executable, "-m", "mxscan", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, (argv, run.stderr[-2000:])
        assert run.stdout.strip(), argv
    diff = subprocess.run(
        [sys.executable, "-m", "mxscan", "diff", whole, merged, "--format", "ndjson"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    (line,) = diff.stdout.splitlines()  # no change lines: the summary alone
    summary = orjson.loads(line)["summary"]
    assert summary["changes"] == {} and summary["unchanged"] == summary["old_domains"] > 0


# --- refusals, on small hand-made shard files --------------------------------------------


def _line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record) + b"\n"


def _domain(name: str) -> dict[str, Any]:
    return {"schema_version": 2, "domain": name, "status": "success", "mx_transport": []}


def _shard_file(
    path: Path,
    k: int,
    names: list[str],
    *,
    finish: bool = True,
    count: int = 3,
    lst: str = "l",
    opts: str = "o",
) -> Path:
    lines = [_line(_domain(name)) for name in names if shard_of(name, count) == k]
    if finish:
        shard = {"index": k, "count": count, "names": len(names), "list": lst, "options": opts}
        run = {"finished": True, "domains": len(lines), "started": "2026-01-01T00:00:00.000Z", "shard": shard}
        lines.append(_line({"schema_version": 2, "run": run}))
    path.write_bytes(b"".join(lines))
    return path


NAMES = [f"d{i}.example" for i in range(60)]


def _three(where: Path, **kwargs: Any) -> list[Path]:
    return [_shard_file(where / f"s{k}.ndjson", k, NAMES, **kwargs) for k in (1, 2, 3)]


def test_merge_of_hand_made_shards_holds_each_domain_once(tmp_path: Path) -> None:
    merged = merge_shards(tmp_path / "m.ndjson.gz", _three(tmp_path))
    assert (merged.domains, merged.files, merged.finished) == (60, 3, True)
    assert sorted(r["domain"] for r in read_domain_records(tmp_path / "m.ndjson.gz")) == sorted(NAMES)
    assert finished(tmp_path / "m.ndjson.gz")
    assert not (tmp_path / "m.ndjson.gz.merge-tmp").exists()


def test_merge_refuses_an_unfinished_shard_unless_allowed(tmp_path: Path) -> None:
    files = _three(tmp_path)
    _shard_file(files[1], 2, NAMES, finish=False)
    with pytest.raises(MergeError, match=r"s2.ndjson is unfinished .*--allow-unfinished"):
        merge_shards(tmp_path / "m.ndjson", files)
    assert not (tmp_path / "m.ndjson").exists()
    merged = merge_shards(tmp_path / "m.ndjson", files, allow_unfinished=True)
    assert (merged.domains, merged.finished) == (60, False)
    assert not finished(tmp_path / "m.ndjson")


def test_merge_refuses_a_missing_shard_unless_allowed(tmp_path: Path) -> None:
    files = _three(tmp_path)
    with pytest.raises(MergeError, match=r"shard 3/3 is missing"):
        merge_shards(tmp_path / "m.ndjson", files[:2])
    merged = merge_shards(tmp_path / "m.ndjson", files[:2], allow_unfinished=True)
    assert not merged.finished and merged.domains == sum(shard_of(n, 3) != 3 for n in NAMES)


@pytest.mark.parametrize(
    ("change", "what"),
    [({"lst": "other"}, "lists"), ({"opts": "other"}, "options"), ({"count": 4}, "shard counts")],
)
def test_merge_refuses_files_of_different_scans(tmp_path: Path, change: dict[str, Any], what: str) -> None:
    files = _three(tmp_path)
    (tmp_path / "x").mkdir()
    stranger = _shard_file(tmp_path / "x" / "s3.ndjson", 3, NAMES, **change)
    with pytest.raises(MergeError, match=f"are shards of different scans: different {what}"):
        merge_shards(tmp_path / "m.ndjson", [*files[:2], stranger])
    assert not (tmp_path / "m.ndjson").exists()


def test_merge_refuses_a_domain_in_two_files_naming_it(tmp_path: Path) -> None:
    files = _three(tmp_path)
    intruder = next(name for name in NAMES if shard_of(name, 3) == 1)
    # Shard 2's file also holds a domain of shard 1 (a file of another split, or edited).
    with files[1].open("r+b") as stream:
        body = stream.read()
        stream.seek(0)
        stream.write(_line(_domain(intruder)) + body)
    with pytest.raises(MergeError, match=f"{intruder} is in .*s2.ndjson and in .*s1.ndjson"):
        merge_shards(tmp_path / "m.ndjson", files)


def test_merge_refuses_a_domain_of_another_shard(tmp_path: Path) -> None:
    files = _three(tmp_path)
    stray = next(name for name in NAMES if shard_of(name, 3) == 3)
    _shard_file(files[0], 1, NAMES)
    content = files[0].read_bytes()
    files[0].write_bytes(_line(_domain(stray)) + content)
    with pytest.raises(MergeError, match=f"{stray} in .*s1.ndjson is of shard 3/3, not 1/3"):
        merge_shards(tmp_path / "m.ndjson", [files[0], files[1]], allow_unfinished=True)


def test_merge_refuses_one_shard_twice_a_whole_list_file_and_an_existing_out(tmp_path: Path) -> None:
    files = _three(tmp_path)
    (tmp_path / "copy").mkdir()
    again = tmp_path / "copy" / "s1.ndjson"
    again.write_bytes(files[0].read_bytes())
    with pytest.raises(MergeError, match=r"is in .*copy/s1.ndjson and in .*s1.ndjson"):
        merge_shards(tmp_path / "m.ndjson", [*files, again])
    with pytest.raises(MergeError, match="is given twice"):
        merge_shards(tmp_path / "m.ndjson", [files[0], files[0]])
    whole = tmp_path / "whole.ndjson"
    run = {"finished": True, "domains": 1, "started": "x"}
    whole.write_bytes(_line(_domain("a.example")) + _line({"schema_version": 2, "run": run}))
    with pytest.raises(MergeError, match=r"whole.ndjson is not a shard file"):
        merge_shards(tmp_path / "m.ndjson", [*files, whole])
    (tmp_path / "m.ndjson").write_bytes(b"")
    with pytest.raises(MergeError, match=r"m.ndjson exists"):
        merge_shards(tmp_path / "m.ndjson", files)


def test_merge_refuses_a_file_a_scan_is_writing(tmp_path: Path) -> None:
    files = _three(tmp_path)
    fd = os.open(files[2], os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as engine.checkpoint.ResultStore holds it
        with pytest.raises(MergeError, match=r"s3.ndjson: in use by a running scan"):
            merge_shards(tmp_path / "m.ndjson", files)
    finally:
        os.close(fd)


def test_merge_command_exits_2_with_the_reason(tmp_path: Path) -> None:
    files = _three(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "mxscan", "merge", str(tmp_path / "m.ndjson"), *map(str, files[:2])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "shard 3/3 is missing" in run.stderr


def test_a_retry_pass_on_a_shard_file_keeps_the_shard_on_its_run_line(tmp_path: Path) -> None:
    """``--retry-unknown`` rewrites the run line when it merges its side file; a shard's file
    must stay mergeable (before: the new run line had no shard, and merge refused the file)."""
    from engine.retrypass import side_path
    from mxscan import __version__
    from probes.rescan import RetryRun

    files = _three(tmp_path)
    retried = next(name for name in NAMES if shard_of(name, 3) == 2)
    side = side_path(files[1])
    _shard_file(side, 2, [retried], finish=False)
    with RetryRun(files[1], __version__) as retry:
        merged = retry.merge()
    assert merged is not None and merged.finished
    assert _run_line(files[1])["shard"]["index"] == 2
    assert merge_shards(tmp_path / "m.ndjson", files).finished


#: (file of the module's scans, cut its run line, --shard of the resuming scan or None,
#: what the file holds, how the scan was started, how to resume it).
MISMATCHED = [
    ("s1", False, "2/3", "shard 1/3 of a list", "with --shard 2/3", "with --shard 1/3"),
    ("s2", False, "2/4", "shard 2/3 of a list", "with --shard 2/4", "with --shard 2/3"),
    ("s1", False, None, "shard 1/3 of a list", "without --shard", "with --shard 1/3"),
    ("s3", True, None, "shard 3/3 of a list", "without --shard", "with --shard 3/3"),
    ("whole", False, "1/3", "a scan of the whole list", "with --shard 1/3", "without --shard"),
    ("whole", True, "3/3", "a scan of the whole list", "with --shard 3/3", "without --shard"),
]


@pytest.mark.parametrize(
    ("source", "unfinished", "shard", "holds", "started", "again"),
    MISMATCHED,
    ids=[f"{s}{'-unfinished' if u else ''}-as-{k or 'whole'}" for s, u, k, *_ in MISMATCHED],
)
def test_a_results_file_is_resumed_only_by_a_scan_of_its_own_shard(
    shared_world: RunningWorld,
    scans: dict[str, Path],
    tmp_path: Path,
    source: str,
    unfinished: bool,
    shard: str | None,
    holds: str,
    started: str,
    again: str,
) -> None:
    """A shard's file resumed with another --shard or none (finished or killed before its run
    line), or a whole list's file resumed with --shard, is refused at scan start (exit 2), the
    file untouched: resumed, it would mix two scans that mxscan merge can no longer tell apart."""
    out = tmp_path / scans[source].name
    opener = gzip.open if out.suffix == ".gz" else open
    with opener(scans[source], "rb") as original:
        lines = original.read().splitlines(keepends=True)
    with opener(out, "wb") as copy:
        copy.write(b"".join(lines[:-1] if unfinished else lines))
    before = out.read_bytes()
    extra = () if shard is None else ("--shard", shard)
    scan = _scan(shared_world, out, *extra)
    _, err = scan.communicate(timeout=60)
    expected = (
        f"mxscan: {out} holds {holds}; this scan was started {started}. Resume it {again}, "
        "or give another --out (or --fresh to start it over)\n"
    )
    assert (scan.returncode, err.decode()) == (2, expected)
    assert out.read_bytes() == before


def test_a_cluster_scan_does_not_resume_a_shards_file(
    shared_world: RunningWorld, scans: dict[str, Path], tmp_path: Path
) -> None:
    """A --cluster scan measures the whole list: a shard's file (here killed before its run
    line) is refused before Ray starts, as a whole-list scan on one machine refuses it."""
    pytest.importorskip("ray")
    out = tmp_path / scans["s1"].name
    with open(scans["s1"], "rb") as original:
        out.write_bytes(b"".join(original.read().splitlines(keepends=True)[:-1]))
    before = out.read_bytes()
    # in a network namespace of its own: were the file not refused, Ray would start, and Ray
    # binds to the machine's interface address (never outside a namespace in our tests)
    argv = world_scan_argv(
        shared_world.endpoints, shared_world.state_dir / "domains.txt", out, "--cluster", "local:1"
    )
    netns = [
        shutil.which("unshare") or "unshare",
        "-n",
        "--",
        sys.executable,
        str(ROOT / "tests/cluster/netns.py"),
    ]
    scan = subprocess.Popen([*netns, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = scan.communicate(timeout=60)
    expected = (
        f"mxscan: {out} holds shard 1/3 of a list; this scan was started without --shard. "
        "Resume it with --shard 1/3, or give another --out (or --fresh to start it over)\n"
    )
    assert (scan.returncode, err.decode()) == (2, expected)
    assert out.read_bytes() == before
