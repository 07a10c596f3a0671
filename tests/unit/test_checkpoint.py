"""The results file as checkpoint: resume, torn tails, refusal, batching, kill -9."""

from __future__ import annotations

import gzip
import os
import random
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.checkpoint import ResultStore, StoreError, finished, read_records

REPO = Path(__file__).resolve().parents[2]


def line(key: str, **extra: object) -> bytes:
    return orjson.dumps({"schema_version": 1, "domain": key, **extra}) + b"\n"


def write_file(path: Path, *keys: str, tail: bytes = b"") -> bytes:
    data = b"".join(line(k) for k in keys) + tail
    path.write_bytes(data)
    return data


def file_text(path: Path) -> bytes:
    """The file's bytes, decompressed as far as they go when it is gzip (a torn member too)."""
    data = path.read_bytes() if path.is_file() else b""
    out = b""
    while data[:2] == b"\x1f\x8b":
        member = zlib.decompressobj(31)
        try:
            out += member.decompress(data)
        except zlib.error:
            break
        data = member.unused_data
    return out or data


def reopen(path: Path, **kwargs: object) -> tuple[ResultStore, frozenset[str]]:
    """``open()``'s keys as a set: the store keeps digests, so every key the file held before
    opening is asked, and the count shows none beyond them."""
    field = str(kwargs.get("key_field", "domain"))
    universe = {m.decode() for m in re.findall(rb'"%s":"([^"\\]*)"' % field.encode(), file_text(path))}
    store = ResultStore(path, **kwargs)  # type: ignore[arg-type]
    done = store.open()
    keys = frozenset(k for k in universe if k in done)
    assert len(keys) == len(done)
    return store, keys


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- open / resume ------------------------------------------------------------------------------


def test_absent_file_is_created_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    store, keys = reopen(path)
    assert keys == frozenset() and path.exists()
    store.append(line("a.com"))
    store.append(line("b.com"))
    store.close()
    store.close()  # idempotent
    assert [r["domain"] for r in read_records(path)] == ["a.com", "b.com"]
    again, keys = reopen(path)
    assert keys == {"a.com", "b.com"} and again.resumed == 2 and not again.dropped_torn_tail
    again.close()


def test_fresh_truncates(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    write_file(path, "a.com", "b.com")
    store, keys = reopen(path, fresh=True)
    assert keys == frozenset() and path.stat().st_size == 0
    store.close()


def test_fresh_overwrites_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    path.write_text("hello\nworld\n")
    reopen(path, fresh=True)[0].close()
    assert path.read_bytes() == b""


TORN_TAILS = [
    ("partial-object", b'{"schema_version":1,"dom'),
    ("complete-object-no-newline", b'{"schema_version":1,"domain":"z.com"}'),
    ("unparsable-with-newline", b'{"schema_version":1,"domain":\n'),
    ("single-brace", b"{"),
    ("nul-filler", b"\x00\x00\x00\x00"),
    ("blank-line", b"\n"),
]


@pytest.mark.parametrize("tail", [c[1] for c in TORN_TAILS], ids=[c[0] for c in TORN_TAILS])
def test_torn_tail_is_cut_off_and_writing_continues(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "out.ndjson"
    good = write_file(path, "a.com", "b.com", tail=tail)[: -len(tail)]
    store, keys = reopen(path)
    assert keys == {"a.com", "b.com"} and store.dropped_torn_tail and store.resumed == 2
    assert path.read_bytes() == good
    store.append(line("c.com"))
    store.close()
    assert [r["domain"] for r in read_records(path)] == ["a.com", "b.com", "c.com"]


def test_read_records_skips_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    write_file(path, "a.com", tail=b'{"schema_version":1,"do')
    assert [r["domain"] for r in read_records(path)] == ["a.com"]


REFUSED = [
    ("corrupt-middle", [line("a.com"), b"{garbage\n", line("b.com")], "corrupt line 2"),
    ("corrupt-middle-nul", [line("a.com"), b"\x00\x00\n", line("b.com")], "corrupt line 2"),
    ("foreign-text", [b"hello world\n", b"second\n"], "not an mxscan results file"),
    ("foreign-one-line-no-newline", [b"just some text"], "not an mxscan results file"),
    ("json-without-key", [b'{"schema_version":1,"name":"a"}\n'], "not an mxscan results file"),
    ("json-without-schema-version", [b'{"domain":"a.com"}\n'], "not an mxscan results file"),
    ("json-array", [b"[1,2]\n"], "not an mxscan results file"),
    ("non-string-key", [b'{"schema_version":1,"domain":7}\n'], "not an mxscan results file"),
    ("foreign-after-ours", [line("a.com"), b"plain text tail"], "corrupt line 2"),
]


@pytest.mark.parametrize(("lines", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_files_that_cannot_be_resumed_are_refused_untouched(
    tmp_path: Path, lines: list[bytes], message: str
) -> None:
    path = tmp_path / "out.ndjson"
    data = b"".join(lines)
    path.write_bytes(data)
    with pytest.raises(StoreError, match=message):
        reopen(path)
    assert path.read_bytes() == data


def test_read_records_refuses_middle_corruption(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    path.write_bytes(line("a.com") + b"{bad\n" + line("b.com"))
    with pytest.raises(StoreError, match="corrupt line 2"):
        list(read_records(path))


def test_duplicate_keys_are_counted_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    write_file(path, "a.com", "b.com", "a.com")
    store, keys = reopen(path)
    assert keys == {"a.com", "b.com"} and store.resumed == 3 and store.duplicate_keys == 1
    store.close()


def test_custom_key_field(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    path.write_bytes(b'{"schema_version":1,"host":"mx.a.com"}\n')
    store, keys = reopen(path, key_field="host")
    assert keys == {"mx.a.com"}
    store.close()


def test_second_writer_is_refused_while_the_first_is_open(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    first, _ = reopen(path)
    with pytest.raises(StoreError, match="in use"):
        reopen(path)
    first.close()
    reopen(path)[0].close()


def test_unwritable_path_and_non_regular_file_are_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open"):
        reopen(tmp_path / "no-such-dir" / "out.ndjson")
    with pytest.raises(StoreError):
        reopen(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(StoreError, match="not a regular file"):
        # O_RDWR on a FIFO does not block, so this reaches the regular-file check.
        reopen(fifo)


def test_append_requires_exactly_one_trailing_newline(tmp_path: Path) -> None:
    store, _ = reopen(tmp_path / "out.ndjson")
    for bad in (b'{"a":1}', b'{"a":1}\n{"b":2}\n', b""):
        with pytest.raises(ValueError):
            store.append(bad)
    store.close()
    with pytest.raises(StoreError, match="not open"):
        store.append(line("a.com"))


# --- batching -----------------------------------------------------------------------------------


def test_flush_by_line_count_and_by_interval(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    clock = FakeClock()
    store = ResultStore(path, flush_lines=3, flush_interval=1.0, clock=clock)
    store.open()
    store.append(line("a"))
    store.append(line("b"))
    assert path.stat().st_size == 0  # buffered: neither 3 lines nor 1 s yet
    store.append(line("c"))
    assert len(path.read_bytes().splitlines()) == 3  # flush_lines reached
    store.append(line("d"))
    clock.now += 0.9
    store.append(line("e"))
    assert len(path.read_bytes().splitlines()) == 3
    clock.now += 0.2
    store.append(line("f"))  # 1.1 s since the last flush
    assert len(path.read_bytes().splitlines()) == 6
    store.append(line("g"))
    store.flush()
    assert len(path.read_bytes().splitlines()) == 7
    store.append(line("h"))
    store.close()
    assert [r["domain"] for r in read_records(path)] == list("abcdefgh")
    assert store.appended == 8


def test_each_flush_is_one_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    store = ResultStore(tmp_path / "out.ndjson", flush_lines=100, flush_interval=1e9)
    store.open()
    monkeypatch.setattr(os, "write", counting_write)
    for i in range(250):
        store.append(line(f"d{i}.com"))
    store.close()
    monkeypatch.undo()
    assert len(writes) == 3 and sum(writes) == (tmp_path / "out.ndjson").stat().st_size


# --- kill -9 ------------------------------------------------------------------------------------

CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import orjson
from engine.checkpoint import ResultStore
store = ResultStore(sys.argv[2], flush_lines=int(sys.argv[3]), flush_interval=0.0)
done = store.open()
sys.stdout.write("opened\\n"); sys.stdout.flush()
pad = "x" * int(sys.argv[5])
for i in range(int(sys.argv[4])):
    key = f"d{i}.example"
    if key not in done:
        store.append(orjson.dumps({"schema_version": 1, "domain": key, "pad": pad}) + b"\\n")
store.close()
"""


def run_child(path: Path, flush_lines: int, count: int, pad: int = 500) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(REPO), str(path), str(flush_lines), str(count), str(pad)],
        stdout=subprocess.PIPE,
    )


def test_sigkill_at_random_moments_never_loses_or_duplicates(tmp_path: Path) -> None:
    # Large records (16 KB) make multi-page writes that a SIGKILL can cut short,
    # so most runs of this test see real torn tails; whether a given kill tears
    # a line depends on timing, so that is not asserted.
    path = tmp_path / "out.ndjson"
    rng = random.Random(20240607)
    count = 200_000
    previous: frozenset[str] = frozenset()
    for _ in range(6):
        child = run_child(path, rng.choice([1, 3, 17]), count, pad=rng.choice([200, 16_000]))
        assert child.stdout is not None
        assert child.stdout.readline() == b"opened\n"
        time.sleep(rng.uniform(0.005, 0.06))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        store, keys = reopen(path)
        store.close()
        assert store.duplicate_keys == 0
        assert keys >= previous
        # Keys were written in order, so what survived is exactly a prefix.
        assert keys == {f"d{i}.example" for i in range(len(keys))}
        records = list(read_records(path))
        assert len(records) == len(keys) == store.resumed
        assert path.read_bytes().endswith(b"\n") or not keys
        previous = keys
    assert len(previous) < count  # the kills really interrupted the work
    final = len(previous) + 1000
    child = run_child(path, 64, final)
    child.communicate()
    store, keys = reopen(path)
    store.close()
    assert keys == {f"d{i}.example" for i in range(final)} and store.duplicate_keys == 0


# --- fuzz: any tail gives a resume or the one documented error ----------------------------------


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.sampled_from(["a.com", "b.com", "c.com"]), max_size=4),
    st.one_of(
        st.binary(max_size=200),
        st.lists(
            st.sampled_from([b"{", b"}", b'"domain":', b'"x"', b"\n", b"\x00", b",", b'"schema_version":1'])
        ).map(b"".join),
    ),
)
def test_any_appended_bytes_resume_or_raise_store_error(tmp_path: Path, keys: list[str], tail: bytes) -> None:
    path = tmp_path / "fuzz.ndjson"
    prefix = write_file(path, *keys, tail=tail)[: len(prefix_of(keys))]
    try:
        store, resumed = reopen(path)
    except StoreError:
        assert path.read_bytes() == prefix + tail  # refused: untouched
        return
    store.close()
    after = path.read_bytes()
    assert after.startswith(prefix) and (after == b"" or after.endswith(b"\n"))
    assert resumed >= set(keys)
    parsed = [orjson.loads(raw) for raw in after.splitlines()]
    assert resumed == {p["domain"] for p in parsed}


def prefix_of(keys: list[str]) -> bytes:
    return b"".join(line(k) for k in keys)


# --- finished or not: the run line ---------------------------------------------------------------


def marker(finished: bool = True) -> bytes:
    return orjson.dumps({"schema_version": 2, "run": {"finished": finished, "domains": 1}}) + b"\n"


def host(ref: str) -> bytes:
    return orjson.dumps({"schema_version": 2, "ref": ref, "smtp": {}}) + b"\n"


def test_a_file_is_finished_exactly_while_a_run_line_ends_it(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    path.write_bytes(line("a.com") + marker())
    store, keys = reopen(path)
    assert keys == {"a.com"} and store.finished and store.markers == 1 and store.resumed == 1
    assert finished(path)
    store.append(line("b.com"))  # a resume with a longer list: unfinished until its own run line
    store.close()
    assert not finished(path)
    again, keys = reopen(path)
    assert keys == {"a.com", "b.com"} and not again.finished
    again.append(marker())
    again.close()
    assert finished(path)
    assert [r.get("domain") for r in read_records(path)] == ["a.com", None, "b.com", None]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", False),
        (line("a.com"), False),  # killed, stopped, or written before run lines existed
        (line("a.com") + marker(finished=False), False),
        (line("a.com") + marker() + host("smtp:x@1:25"), False),
        (line("a.com") + marker() + b'{"schema_version":2,"dom', False),  # torn tail after it
        (line("a.com") + marker() + b"\x00" * 10, False),
        (line("a.com", pad="x" * 100_000) + marker(), True),  # a long line before it
        (marker(), True),
        (b"not json\n", False),
    ],
    ids=["empty", "no-run-line", "not-finished", "host-after", "torn-after", "nul-after", "long-before",
         "only", "foreign"],
)  # fmt: skip
def test_finished_reads_the_last_line_only(tmp_path: Path, content: bytes, expected: bool) -> None:
    path = tmp_path / "out.ndjson"
    path.write_bytes(content)
    assert finished(path) is expected


def test_finished_of_a_missing_file_or_an_over_long_last_line_is_false(tmp_path: Path) -> None:
    assert not finished(tmp_path / "absent.ndjson")
    path = tmp_path / "long.ndjson"
    path.write_bytes(line("a.com", pad="x" * 200_000))
    assert not finished(path)


def test_a_run_line_is_neither_a_domain_nor_a_refusal_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    path.write_bytes(line("a.com") + marker() + line("b.com") + marker())
    store, keys = reopen(path)
    assert keys == {"a.com", "b.com"} and store.markers == 2 and store.finished and store.duplicate_keys == 0
    store.close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["domain", "host", "run", "open-run"]), max_size=8))
def test_finished_agrees_with_the_store_and_the_last_line(tmp_path: Path, kinds: list[str]) -> None:
    path = tmp_path / "prop.ndjson"
    make = {"domain": lambda i: line(f"d{i}.com"), "host": lambda i: host(f"smtp:h{i}@1:25"),
            "run": lambda i: marker(), "open-run": lambda i: marker(finished=False)}  # fmt: skip
    path.write_bytes(b"".join(make[kind](i) for i, kind in enumerate(kinds)))
    expected = bool(kinds) and kinds[-1] == "run"
    assert finished(path) is expected
    store, _ = reopen(path)
    assert store.finished is expected
    store.close()


# --- compressed results (``*.gz``: one gzip member per flush, engine.compressed) ---------------


def members_of(path: Path) -> list[bytes]:
    data, out = path.read_bytes(), []
    while data:
        member = zlib.decompressobj(31)
        out.append(member.decompress(data))
        assert member.eof
        data = member.unused_data
    return out


def test_compressed_store_writes_one_gzip_member_per_flush_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson.gz"
    store = ResultStore(path, flush_lines=2, flush_interval=1e9)
    store.open()
    for key in "abcde":
        store.append(line(key))
    store.close()
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert [len(m.splitlines()) for m in members_of(path)] == [2, 2, 1]
    assert [r["domain"] for r in read_records(path)] == list("abcde")
    again, keys = reopen(path)
    again.close()
    assert keys == set("abcde") and not again.dropped_torn_tail


def test_compressed_torn_last_member_is_cut_and_its_domains_measured_again(tmp_path: Path) -> None:
    """A kill inside a flush leaves a prefix of one member: it is dropped whole, even the
    complete lines it already holds (they were never committed)."""
    path = tmp_path / "out.ndjson.gz"
    store = ResultStore(path, flush_lines=2, flush_interval=1e9)
    store.open()
    for key in ("a", "b", "c", "d"):
        store.append(line(key, pad="y" * 3000))
    store.close()
    good = path.read_bytes()
    torn = gzip.compress(line("e") + line("f", pad=os.urandom(4000).hex()), mtime=0)
    path.write_bytes(good + torn[: len(torn) - 40])  # the whole of "e" decodes from this prefix
    assert [r["domain"] for r in read_records(path)] == ["a", "b", "c", "d"]  # readers: as resume
    store, keys = reopen(path)
    assert keys == {"a", "b", "c", "d"} and store.dropped_torn_tail and store.resumed == 4
    store.append(line("e"))
    store.close()
    assert path.read_bytes().startswith(good)
    assert [r["domain"] for r in read_records(path)] == ["a", "b", "c", "d", "e"]


def test_compressed_nul_filler_after_the_last_member_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson.gz"
    good = gzip.compress(line("a"), mtime=0)
    path.write_bytes(good + b"\x00" * 4096)
    store, keys = reopen(path)
    store.close()
    assert keys == {"a"} and store.dropped_torn_tail and path.read_bytes() == good


def test_compressed_damaged_member_before_the_end_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson.gz"
    first = bytearray(gzip.compress(line("a") * 50, mtime=0))
    first[20] ^= 0xFF
    data = bytes(first) + gzip.compress(line("b"), mtime=0)
    path.write_bytes(data)
    with pytest.raises(StoreError, match="gzip"):
        reopen(path)
    with pytest.raises(StoreError, match="gzip"):
        list(read_records(path))
    assert path.read_bytes() == data


def test_plain_ndjson_named_gz_is_refused_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson.gz"
    data = line("a") + line("b")
    path.write_bytes(data)
    with pytest.raises(StoreError):
        reopen(path)
    assert path.read_bytes() == data


def test_compressed_finished_reads_the_run_line_member(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson.gz"
    store = ResultStore(path)
    store.open()
    store.append(line("a"))
    store.append_alone(orjson.dumps({"schema_version": 2, "run": {"finished": True}}) + b"\n")
    store.close()
    assert finished(path) and len(members_of(path)) == 2
    with path.open("ab") as out:
        out.write(gzip.compress(line("b"), mtime=0)[:30])  # a later, torn flush
    assert not finished(path)


COUNTING_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import orjson
from engine.checkpoint import ResultStore
store = ResultStore(sys.argv[2], flush_lines=int(sys.argv[3]), flush_interval=1e9)
done = store.open()
pad = "x" * int(sys.argv[5])
written = 0
for i in range(int(sys.argv[4])):
    key = f"d{i}.example"
    if key not in done:
        store.append(orjson.dumps({"schema_version": 1, "domain": key, "pad": pad}) + b"\\n")
        written += 1
        if written % int(sys.argv[3]) == 0:
            sys.stdout.write(f"{written}\\n"); sys.stdout.flush()
store.close()
"""


@pytest.mark.parametrize("name", ["out.ndjson", "out.ndjson.gz"])
def test_sigkill_after_random_progress_never_loses_or_duplicates(tmp_path: Path, name: str) -> None:
    """kill -9 once the writer reports N records flushed (N random, chosen by progress, not by
    wall clock), for plain and compressed files: after each resume the keys are exactly a
    prefix, none twice, and a last run completes the list."""
    path = tmp_path / name
    rng = random.Random(20261207)
    count = 100_000
    previous: frozenset[str] = frozenset()
    for _ in range(5):
        flush = rng.choice([1, 7, 64])
        argv = [sys.executable, "-c", COUNTING_CHILD, str(REPO), str(path), str(flush), str(count)]
        child = subprocess.Popen([*argv, str(rng.choice([200, 16_000]))], stdout=subprocess.PIPE)
        assert child.stdout is not None
        target = rng.randrange(1, 400)
        while int(child.stdout.readline() or count) < target:
            pass
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        store, keys = reopen(path)
        store.close()
        assert store.duplicate_keys == 0 and keys >= previous
        assert keys == {f"d{i}.example" for i in range(len(keys))}
        assert len(list(read_records(path))) == len(keys) == store.resumed
        previous = keys
    assert len(previous) < count
    final = len(previous) + 500
    subprocess.run(
        [sys.executable, "-c", COUNTING_CHILD, str(REPO), str(path), "64", str(final), "10"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    store, keys = reopen(path)
    store.close()
    assert keys == {f"d{i}.example" for i in range(final)} and store.duplicate_keys == 0


def test_fresh_keeping_the_old_contents_until_written_loses_nothing_when_nothing_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.ndjson"
    write_file(path, "a.com", "b.com")
    before = path.read_bytes()
    store = ResultStore(path, fresh=True, keep_until_written=True)
    assert len(store.open()) == 0
    store.close()
    assert path.read_bytes() == before


def test_fresh_keeping_the_old_contents_until_written_replaces_them_at_the_first_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.ndjson"
    write_file(path, "a.com", "b.com")
    store = ResultStore(path, fresh=True, keep_until_written=True)
    store.open()
    store.append(line("c.com"))
    store.close()
    assert [r["domain"] for r in read_records(path)] == ["c.com"]
