"""The checkpoint at its boundaries: an empty file, a torn first line or first gzip member, a
torn member holding complete lines (duplicates, side records, a run line), and a compressed
file cut at any byte, which must resume exactly as the plain file of its committed lines
(the plain store is the oracle for the compressed one)."""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import resource
import signal
import tempfile
import tracemalloc
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.checkpoint import (
    MAX_LINE_BYTES,
    DigestSet,
    ResultStore,
    StoreError,
    finished,
    is_marker,
    read_records,
)


def dom(key: str) -> bytes:
    return orjson.dumps({"schema_version": 2, "domain": key}) + b"\n"


def side(ref: str) -> bytes:
    return orjson.dumps({"schema_version": 2, "ref": ref, "smtp": {}}) + b"\n"


def run(done: bool) -> bytes:
    return orjson.dumps({"schema_version": 2, "run": {"finished": done}}) + b"\n"


def member(*lines: bytes) -> bytes:
    return gzip.compress(b"".join(lines), mtime=0)


def opened(path: Path) -> tuple[ResultStore, set[str]]:
    """The store after ``open()`` and the keys it holds, asked for every key in the tests."""
    store = ResultStore(path)
    done = store.open()
    keys = {k for k in (*"abcdefgh", "x.com") if k in done}
    assert len(keys) == len(done)
    return store, keys


def counts(store: ResultStore) -> tuple[int, int, int, int, bool]:
    return (store.resumed, store.side_records, store.duplicate_keys, store.markers, store.finished)


@pytest.mark.parametrize("name", ["out.ndjson", "out.ndjson.gz"])
def test_an_empty_file_resumes_empty_untouched_and_unfinished(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    store, keys = opened(path)
    assert keys == set() and counts(store) == (0, 0, 0, 0, False) and not store.dropped_torn_tail
    store.close()
    assert path.read_bytes() == b"" and list(read_records(path)) == [] and not finished(path)


def test_a_torn_first_gzip_member_resumes_empty_at_every_cut(tmp_path: Path) -> None:
    """A kill during the first flush of a compressed file, wherever the write stopped: nothing
    was committed, so the file is cut to nothing and every key is measured again."""
    whole = member(dom("a"), dom("b"))
    path = tmp_path / "out.ndjson.gz"
    for cut in range(1, len(whole)):
        path.write_bytes(whole[:cut])
        store, keys = opened(path)
        assert (keys, store.dropped_torn_tail, store.resumed) == (set(), True, 0), cut
        store.close()
        assert path.read_bytes() == b"", cut


def test_a_complete_first_line_without_its_newline_is_measured_again(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    path.write_bytes(dom("a")[:-1])
    store, keys = opened(path)
    store.close()
    assert keys == set() and store.dropped_torn_tail and path.read_bytes() == b""


def test_a_finished_file_whose_next_line_is_torn_is_finished_again_once_cut(tmp_path: Path) -> None:
    """The run line is the last line left once the torn one is cut: nothing needs marking."""
    for name, data in (
        ("out.ndjson", dom("a") + run(True) + dom("b")[:9]),
        ("out.ndjson.gz", member(dom("a")) + member(run(True)) + member(dom("b"))[:-4]),
    ):
        path = tmp_path / name
        path.write_bytes(data)
        assert not finished(path)
        store, keys = opened(path)
        store.close()
        assert keys == {"a"} and store.finished and store.dropped_torn_tail and finished(path), name


def test_a_torn_members_lines_are_taken_back_with_their_counts(tmp_path: Path) -> None:
    """Bug: the complete lines of a torn gzip member took back their keys and the resumed count,
    but still counted as duplicates, side records and markers, and the file counted as
    unfinished, though once they are cut the file is the committed lines alone."""
    path = tmp_path / "out.ndjson.gz"
    torn = member(dom("a"), side("h1"), run(True), dom("b"), dom("c") * 40)
    path.write_bytes(member(dom("a"), run(True)) + torn[:-8])
    store, keys = opened(path)
    store.close()
    assert keys == {"a"} and counts(store) == (1, 0, 0, 1, True) and store.dropped_torn_tail
    assert [r.get("domain") for r in read_records(path)] == ["a", None]


def test_duplicate_keys_in_a_compressed_file_are_counted_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson.gz"
    path.write_bytes(member(dom("a"), dom("b")) + member(dom("a")))
    store, keys = opened(path)
    store.close()
    assert keys == {"a", "b"} and counts(store)[:3] == (3, 0, 1) and not store.dropped_torn_tail


def test_a_torn_line_inside_a_complete_member_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson.gz"
    data = member(dom("a") + b'{"schema_version":2,"dom')
    path.write_bytes(data)
    with pytest.raises(StoreError) as caught:
        opened(path)
    assert str(caught.value) == (
        f"{path}: a torn line inside a complete gzip member cannot come from a kill; "
        "refusing to resume (use --fresh to start over)"
    )
    assert path.read_bytes() == data


LINE = st.one_of(
    st.sampled_from("abcd").map(dom),
    st.sampled_from(["h1", "h2"]).map(side),
    st.booleans().map(run),
)


@given(st.lists(st.lists(LINE, min_size=1, max_size=4), min_size=1, max_size=4), st.data())
def test_a_compressed_file_cut_anywhere_resumes_as_the_plain_file_of_its_committed_lines(
    flushes: list[list[bytes]], data: st.DataObject
) -> None:
    frames = [member(*lines) for lines in flushes]
    whole = b"".join(frames)
    cut = data.draw(st.integers(min_value=0, max_value=len(whole)), label="cut")
    committed, end = b"", 0
    for frame, lines in zip(frames, flushes, strict=True):
        if end + len(frame) > cut:
            break
        end += len(frame)
        committed += b"".join(lines)
    with tempfile.TemporaryDirectory() as tmp:
        gz, plain = Path(tmp, "out.ndjson.gz"), Path(tmp, "out.ndjson")
        gz.write_bytes(whole[:cut])
        plain.write_bytes(committed)
        (zipped, zipped_keys), (flat, flat_keys) = opened(gz), opened(plain)
        zipped.close()
        flat.close()
        assert (zipped_keys, counts(zipped)) == (flat_keys, counts(flat))
        assert zipped.dropped_torn_tail == (cut > end) and gz.read_bytes() == whole[:end]
        assert finished(gz) == finished(plain) == flat.finished


def _home(key: str) -> int:
    """The slot a key's digest starts probing from in a fresh (1024-slot) DigestSet."""
    return (int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") or 1) & 1023


def _colliding_keys(homes: tuple[int, ...], per_home: int) -> list[str]:
    found: dict[int, list[str]] = {home: [] for home in homes}
    i = 0
    while any(len(keys) < per_home for keys in found.values()):
        key = f"k{i}"
        if len(found.get(_home(key), [per_home] * per_home)) < per_home:
            found[_home(key)].append(key)
        i += 1
    return [key for keys in found.values() for key in keys]


#: Keys whose probe chains run into each other and wrap around the table's end (slot 1023 to 0).
CROWDED = _colliding_keys((1021, 1022, 1023, 0, 1), 4)


@given(st.permutations(CROWDED), st.data())
def test_a_digest_set_of_colliding_keys_stays_a_set_under_discards(
    added: list[str], data: st.DataObject
) -> None:
    """Deleting from the middle of a probe chain (and one that wraps around the table's end)
    must leave every other key findable: the set of a resume that takes back a torn member."""
    digests = DigestSet(added)
    assert not digests.add(added[0]) and len(digests) == len(CROWDED)
    left = set(added)
    for key in data.draw(st.lists(st.sampled_from(CROWDED), max_size=len(CROWDED)), label="discarded"):
        digests.discard(key)
        left.discard(key)
        assert len(digests) == len(left) and {k for k in CROWDED if k in digests} == left


def test_a_digest_set_grows_past_half_full_and_keeps_every_key() -> None:
    keys = [f"d{i}.example" for i in range(1500)]
    digests = DigestSet(keys[:512])
    assert digests.nbytes() == 8 * 1024  # at most half full: 512 of 1024 slots
    digests.add(keys[512])
    assert digests.nbytes() == 16 * 1024
    for key in keys[513:]:
        digests.add(key)
    assert len(digests) == 1500 and all(key in digests for key in keys) and "d1500.example" not in digests
    assert 7 not in digests  # only strings are keys


def padded_run(size: int) -> bytes:
    """A finished run line of exactly ``size`` bytes (newline included)."""
    bare = len(orjson.dumps({"schema_version": 2, "run": {"finished": True}, "pad": ""})) + 1
    return orjson.dumps({"schema_version": 2, "run": {"finished": True}, "pad": "x" * (size - bare)}) + b"\n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (dom("a") + padded_run(65535), True),  # with the newline before it: the last 64 KiB
        (dom("a") + padded_run(65536), False),  # its start lies before the last 64 KiB
        (padded_run(65536), True),  # the whole file is the line
        (padded_run(65537), False),
        (dom("a") + run(True) + b"\n", False),  # a blank line after it
    ],
    ids=["64k-1-after-a-line", "64k-after-a-line", "64k-alone", "64k+1-alone", "blank-line-after"],
)
def test_finished_reads_a_run_line_of_up_to_64_kib_that_ends_the_file(
    tmp_path: Path, content: bytes, expected: bool
) -> None:
    assert len(padded_run(65536)) == 65536
    path = tmp_path / "out.ndjson"
    path.write_bytes(content)
    assert finished(path) is expected


@pytest.mark.parametrize("tail", [b"X", b"XX", b"tail", b" {", b"\x00x\x00", b"}"])
def test_a_last_line_that_cannot_be_the_start_of_ours_is_refused_untouched(
    tmp_path: Path, tail: bytes
) -> None:
    """Only a line starting with ``{`` (or NUL filler) can be a torn write of ours."""
    path = tmp_path / "out.ndjson"
    data = dom("a") + tail
    path.write_bytes(data)
    with pytest.raises(StoreError, match="corrupt line 2"):
        opened(path)
    assert path.read_bytes() == data


def test_a_flush_is_due_exactly_at_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    now = [10.0]
    store = ResultStore(path, flush_lines=100, flush_interval=2.0, clock=lambda: now[0])
    store.open()
    store.append(dom("a"))
    assert path.read_bytes() == b""
    now[0] += 2.0
    store.append(dom("b"))
    assert path.read_bytes() == dom("a") + dom("b")
    store.close()


@pytest.mark.parametrize("bad", [b'{"a":1}', b'{"a":1}\n{"b":2}\n', b"", b"\n\n"])
def test_append_refuses_anything_but_one_line_and_says_so(tmp_path: Path, bad: bytes) -> None:
    store = ResultStore(tmp_path / "out.ndjson")
    store.open()
    with pytest.raises(ValueError, match=r"^append\(\) takes exactly one line ending in b'\\n'$"):
        store.append(bad)
    store.close()


def test_read_records_skips_a_complete_last_line_without_its_newline(tmp_path: Path) -> None:
    """As a resume does: the line was being written when the writer stopped."""
    path = tmp_path / "out.ndjson"
    path.write_bytes(dom("a") + dom("b")[:-1])
    assert [r["domain"] for r in read_records(path)] == ["a"]


def test_read_records_errors_name_the_file_the_line_and_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "absent.ndjson"
    with pytest.raises(StoreError) as caught:
        list(read_records(missing))
    assert str(caught.value) == f"{missing}: cannot read (No such file or directory)"
    corrupt = tmp_path / "corrupt.ndjson"
    corrupt.write_bytes(dom("a") + b"{x\n" + dom("b"))
    with pytest.raises(StoreError) as caught:
        list(read_records(corrupt))
    assert str(caught.value) == f"{corrupt}: corrupt line 2 (not JSON)"
    foreign = tmp_path / "foreign.ndjson"
    foreign.write_bytes(dom("a") + b"[1]\n")
    with pytest.raises(StoreError) as caught:
        list(read_records(foreign))
    assert str(caught.value) == f"{foreign}: line 2: not an mxscan results file (use --fresh to overwrite)"


def test_a_line_with_its_key_is_never_a_run_line(tmp_path: Path) -> None:
    """A target's line never has ``run``; one that does is a target all the same, whatever the
    key field, so neither ``finished`` nor a resume takes it for the end of a run."""
    path = tmp_path / "out.ndjson"
    path.write_bytes(orjson.dumps({"schema_version": 2, "domain": "a", "run": {"finished": True}}) + b"\n")
    assert not finished(path)
    store, keys = opened(path)
    store.close()
    assert keys == {"a"} and counts(store) == (1, 0, 0, 0, False)
    hosts = tmp_path / "hosts.ndjson"
    hosts.write_bytes(
        b"".join(
            orjson.dumps({"schema_version": 2, "host": "x.com", **extra}) + b"\n"
            for extra in ({"run": {"finished": True}}, {}, {"run": {"finished": True}})
        )
    )
    store = ResultStore(hosts, key_field="host")
    done = store.open()
    store.close()
    assert "x.com" in done and counts(store) == (3, 0, 2, 0, False)


def test_a_digest_set_that_many_keys_pass_through_stays_small_and_usable() -> None:
    """A discard leaves no trace: thousands of keys added and taken back through a set that
    holds 300 at a time never grow it, and never fill it (a full table would probe forever)."""
    digests = DigestSet()
    for i in range(6000):
        digests.add(f"k{i}")
        if i >= 300:
            digests.discard(f"k{i - 300}")
    assert len(digests) == 300 and digests.nbytes() == 8 * 1024
    assert all(f"k{i}" in digests for i in range(5700, 6000)) and "k5699" not in digests


def padded(key: str, size: int) -> bytes:
    """A record line of exactly ``size`` bytes (newline included), padded with JSON
    whitespace (parsed ~2x faster than a long string)."""
    head = b'{"schema_version":2,"domain":"' + key.encode() + b'"'
    return head + b" " * (size - len(head) - 2) + b"}\n"


def test_lines_of_exactly_the_line_cap_resume_whole(tmp_path: Path) -> None:
    """MAX_LINE_BYTES is the longest line accepted, first or later: a record that long is
    resumed as finished, never read in pieces and cut off as a torn tail."""
    path = tmp_path / "out.ndjson"
    whole = padded("a", MAX_LINE_BYTES) + padded("b", MAX_LINE_BYTES) + dom("c")
    path.write_bytes(whole)
    store, keys = opened(path)
    store.close()
    assert keys == {"a", "b", "c"} and not store.dropped_torn_tail
    assert path.stat().st_size == len(whole)


@pytest.mark.parametrize("first", [True, False])
def test_a_line_longer_than_the_cap_is_refused_naming_the_file_and_line(tmp_path: Path, first: bool) -> None:
    path = tmp_path / "out.ndjson"
    long = padded("b", MAX_LINE_BYTES + 1)
    whole = long + dom("c") if first else dom("a") + long + dom("c")
    path.write_bytes(whole)
    refusal = f"{path}: line {1 if first else 2} is longer than {MAX_LINE_BYTES} bytes"
    with pytest.raises(StoreError) as resumed:
        ResultStore(path).open()
    with pytest.raises(StoreError) as read:
        list(read_records(path))
    assert str(resumed.value) == str(read.value) == refusal
    assert path.stat().st_size == len(whole)  # refused, not truncated


@pytest.mark.parametrize("first", [True, False])
def test_a_huge_line_is_refused_without_reading_it_whole(tmp_path: Path, first: bool) -> None:
    """A line of 4x the cap (a foreign file, or a NUL-filled tail that starts like ours) is
    refused after reading about one cap's worth, not held whole in memory; the file is left
    as it was.  (Sparse: the 256 MiB line costs no disk.)"""
    path = tmp_path / "out.ndjson"
    with path.open("wb") as out:
        out.write(b"" if first else dom("a"))
        out.write(b"{")
        out.truncate(4 * MAX_LINE_BYTES)
    for read in (lambda: ResultStore(path).open(), lambda: list(read_records(path))):
        tracing = tracemalloc.is_tracing()
        if not tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        try:
            with pytest.raises(StoreError, match="is longer than"):
                read()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            if not tracing:
                tracemalloc.stop()
        assert peak < 3 * MAX_LINE_BYTES
    assert path.stat().st_size == 4 * MAX_LINE_BYTES


def test_a_corrupt_line_before_the_end_is_refused_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    path.write_bytes(dom("a") + b'{"schema_version": 2, "dom\n' + dom("b"))
    with pytest.raises(StoreError) as refused:
        ResultStore(path).open()
    assert str(refused.value) == (
        f"{path}: corrupt line 2 before the end of the file; refusing to resume "
        "(fix or remove that line, or use --fresh to start over)"
    )


def test_a_line_whose_key_is_not_a_name_is_refused_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    path.write_bytes(dom("a") + dom("b") + orjson.dumps({"schema_version": 2, "domain": 5}) + b"\n")
    with pytest.raises(StoreError) as refused:
        ResultStore(path).open()
    assert str(refused.value) == f"{path}: line 3: not an mxscan results file (use --fresh to overwrite)"


def test_a_damaged_gzip_member_is_refused_naming_the_file_and_byte(tmp_path: Path) -> None:
    """Damage followed by a complete member cannot come from a kill: refuse, and say where."""
    path = tmp_path / "out.ndjson.gz"
    first = member(dom("a"))
    path.write_bytes(first + b"\x1f\x8b\x08\x00" + b"\xff" * 32 + member(dom("b")))
    with pytest.raises(StoreError) as refused:
        ResultStore(path).open()
    text = str(refused.value)
    assert text.startswith(f"{path}: damaged gzip member at byte {len(first)} (")
    assert text.endswith("; refusing to resume (use --fresh to start over)")


def test_fresh_keeping_the_old_contents_truncates_only_at_the_first_write(tmp_path: Path) -> None:
    """Every later flush appends: the old contents go once, the new lines all stay."""
    path = tmp_path / "out.ndjson"
    path.write_bytes(dom("x.com"))
    store = ResultStore(path, fresh=True, keep_until_written=True)
    store.open()
    for key in "abc":
        store.append(dom(key))
        store.flush()
    store.close()
    assert path.read_bytes() == dom("a") + dom("b") + dom("c")


def test_a_write_that_fails_is_refused_naming_the_file_and_the_reason(tmp_path: Path) -> None:
    """A file that cannot grow (here RLIMIT_FSIZE, as a full disk would) gives a StoreError
    with the system's reason, not an OSError; what fitted is only ever a tail."""
    path = tmp_path / "out.ndjson"
    store = ResultStore(path, flush_lines=10_000, flush_interval=1e9)
    store.open()
    for i in range(100):
        store.append(dom(f"k{i}"))
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
    try:
        with pytest.raises(StoreError) as refused:
            store.flush()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    store.close()
    assert str(refused.value) == f"{path}: cannot write ({os.strerror(errno.EFBIG)})"
    resumed = ResultStore(path)
    done = resumed.open()
    resumed.close()
    kept = [f"k{i}" for i in range(100) if f"k{i}" in done]
    assert (
        resumed.dropped_torn_tail
        and 0 < len(kept) == len(done)
        and kept == [f"k{i}" for i in range(len(kept))]
    )


@pytest.mark.parametrize("opened_first", [False, True])
def test_a_closed_store_cannot_be_opened_again(tmp_path: Path, opened_first: bool) -> None:
    """close() ends a store for good (a second open would append after a close that
    promised everything was written), whether or not it was ever opened."""
    path = tmp_path / "out.ndjson"
    store = ResultStore(path)
    if opened_first:
        store.open()
    store.close()
    with pytest.raises(StoreError, match="store already opened"):
        store.open()


def test_a_store_opened_twice_is_refused_as_already_opened(tmp_path: Path) -> None:
    """Not as "in use by another mxscan process": the second open is this process's mistake."""
    path = tmp_path / "out.ndjson"
    store = ResultStore(path)
    store.open()
    with pytest.raises(StoreError) as refused:
        store.open()
    store.close()
    assert str(refused.value) == f"{path}: store already opened"


def test_a_new_results_file_is_created_readable_and_not_executable(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    umask = os.umask(0o022)
    try:
        store = ResultStore(path)
        store.open()
        store.close()
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_results_file_that_cannot_be_created_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "out.ndjson"
    with pytest.raises(StoreError) as refused:
        ResultStore(path).open()
    assert str(refused.value) == f"{path}: cannot open for writing ({os.strerror(errno.ENOENT)})"


@pytest.mark.parametrize("flush_lines", [1, 0])
def test_one_line_per_flush_writes_each_line_at_once(tmp_path: Path, flush_lines: int) -> None:
    """flush_lines=1 (and anything below, clamped) leaves nothing buffered after an append."""
    path = tmp_path / "out.ndjson"
    store = ResultStore(path, flush_lines=flush_lines, flush_interval=1e9, clock=lambda: 0.0)
    store.open()
    store.append(dom("a"))
    assert path.read_bytes() == dom("a")
    store.close()


def test_a_discard_frees_its_slot(tmp_path: Path) -> None:
    """The table holds exactly the keys left: a discard that left a placeholder behind would
    keep the set correct but crowd the table until every lookup scans most of it."""
    digests = DigestSet()
    for i in range(3000):
        digests.add(f"k{i}")
        if i >= 400:
            digests.discard(f"k{i - 400}")
    assert sum(1 for slot in digests._table if slot) == len(digests) == 400


def test_a_run_marker_is_a_run_object_without_the_domain_key_by_default() -> None:
    """The record readers, the retry pass and merge call ``is_marker`` with the default key: never take
    a domain's line for the run line, whatever else it carries."""
    run = {"run": {"finished": True}}
    assert is_marker(run)
    assert not is_marker({**run, "domain": "example.com"})
    assert not is_marker({"domain": "example.com"})
    assert not is_marker({"run": "not an object"})
    assert not is_marker(["run"])
    assert is_marker({**run, "domain": "example.com"}, key_field="name")
