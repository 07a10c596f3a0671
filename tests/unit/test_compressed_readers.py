"""Every reader takes compressed results files (issue #17 item 6): references resolved by
``read_domain_records``, ``finished``, and ``--retry-unknown``'s plan and merge, which keeps
a ``.gz`` file compressed in members with its run line alone in the last one."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from engine.checkpoint import ResultStore, finished
from engine.retrypass import side_path
from mxscan import __version__
from probes.rescan import RetryRun
from probes.results import read_domain_records
from tests.unit.test_retry import crashed, host, run_line, settled


def write_gz(path: Path, *lines: bytes, flush_lines: int = 2) -> None:
    store = ResultStore(path, flush_lines=flush_lines, flush_interval=1e9)
    store.open()
    for line in lines[:-1]:
        store.append(line)
    store.append_alone(lines[-1])
    store.close()


def members(path: Path) -> list[bytes]:
    data, out = path.read_bytes(), []
    while data:
        member = zlib.decompressobj(31)
        out.append(member.decompress(data))
        assert member.eof
        data = member.unused_data
    return out


def test_references_resolve_in_a_compressed_file(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson.gz"
    write_gz(path, host("smtp:mx@1:25", "success"), settled("a.test", ref="smtp:mx@1:25"), run_line(1))
    (record,) = read_domain_records(path)
    assert record["mx_transport"][0]["addresses"] == [{"status": "success", "detail": ""}]
    assert finished(path)


def test_a_compressed_file_is_read_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "renamed.ndjson"
    path.write_bytes(gzip.compress(settled("a.test"), mtime=0) + gzip.compress(settled("b.test"), mtime=0))
    assert [r["domain"] for r in read_domain_records(path)] == ["a.test", "b.test"]
    assert not finished(path)
    with path.open("ab") as out:
        out.write(gzip.compress(run_line(2), mtime=0))
    assert finished(path)


def test_retry_plans_and_merges_a_compressed_file_keeping_it_compressed(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson.gz"
    write_gz(path, settled("a.test"), crashed("b.test"), crashed("c.test"), run_line(3))
    side_path(path).write_bytes(
        host("smtp:mx@1:25", "success") + settled("b.test", ref="smtp:mx@1:25", measured="new")
    )
    with RetryRun(path, __version__) as retry:
        merged = retry.merge()
        kept, redo = retry.plan()
    assert merged is not None and (merged.replaced, merged.added) == (1, 0) and merged.finished
    assert path.read_bytes()[:2] == b"\x1f\x8b" and finished(path)
    assert members(path)[-1].count(b"\n") == 1  # the run line stands alone
    assert {r["domain"]: r["measured_at"] for r in read_domain_records(path)} == {
        "a.test": "old",
        "c.test": "old",
        "b.test": "new",
    }
    assert [d for d in ("a.test", "b.test", "c.test") if d in kept] == ["a.test", "b.test"] and redo == 1
