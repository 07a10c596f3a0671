"""Per-domain state that grows with the list is compact (issue #17 item 4): the finished
domains of a resumed file and the reader's names seen are 8-byte digests, not names."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from engine.checkpoint import DigestSet, ResultStore
from engine.inputs import DomainReader


@given(st.lists(st.tuples(st.booleans(), st.text(max_size=6)), max_size=300))
def test_digest_set_behaves_as_a_set_under_adds_and_discards(ops: list[tuple[bool, str]]) -> None:
    digests, reference = DigestSet(), set()
    for add, key in ops:
        if add:
            assert digests.add(key) == (key not in reference)
            reference.add(key)
        else:
            digests.discard(key)
            reference.discard(key)
        assert len(digests) == len(reference)
    assert all(key in digests for key in reference)
    assert not any(key in digests for _, key in ops if key not in reference)


def _retained_bytes_per(count: int, build: object) -> float:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()  # type: ignore[operator]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept is not None
    return (after - before) / count


def test_finished_domains_of_a_resumed_file_cost_under_40_bytes_each(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    count = 100_000
    path.write_bytes(
        b"".join(b'{"schema_version":2,"domain":"d%d.example.test"}\n' % i for i in range(count))
    )

    def resume() -> object:
        store = ResultStore(path)
        done = store.open()
        store.close()
        return done

    assert _retained_bytes_per(count, resume) < 40  # a set of the names: ~110


def test_the_input_readers_names_seen_cost_under_40_bytes_each(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    count = 100_000
    path.write_text("".join(f"d{i}.example.test\n" for i in range(count)))

    def read() -> object:
        reader = DomainReader(path)
        assert sum(1 for _ in reader) == count
        return reader

    assert _retained_bytes_per(count, read) < 40
