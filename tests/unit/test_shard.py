"""``--shard K/N``: the shard function (stable, balanced, a partition), the option, each
shard's share of the politeness budget, and the list digest a shard's run line carries."""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine.inputs import InputItem
from engine.limits import Limit
from engine.limitspec import PER_IP_KEY
from probes.providers import default_limits
from scaleout.shard import Sharding, parse_shard, shard_limits, shard_of

ROOT = Path(__file__).resolve().parents[2]
NAMES = [f"d{i}.example{i % 7}.com" for i in range(100_000)]


def _items(names: list[str]) -> list[InputItem]:
    return [InputItem(line, name, name, None) for line, name in enumerate(names, start=1)]


def test_shard_of_is_fixed_by_the_name_alone() -> None:
    """Values pinned here, and the definition (the first 8 bytes of the name's BLAKE2b digest,
    big-endian, modulo N, plus one): the same list splits the same way in every release and on
    every machine (a changed function would silently re-split a static scan under way)."""
    pinned = {name: shard_of(name, 10) for name in ("example.com", "example.org", "mxscan.test", "a.b.c")}
    assert pinned == {"example.com": 1, "example.org": 2, "mxscan.test": 9, "a.b.c": 9}
    for name in NAMES[:1000]:
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        assert shard_of(name, 13) == 1 + int.from_bytes(digest, "big") % 13


def test_shard_of_does_not_depend_on_the_python_hash_seed() -> None:
    code = "from scaleout.shard import shard_of; print([shard_of(f'n{i}.test', 7) for i in range(200)])"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "1", "12345")
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == str([shard_of(f"n{i}.test", 7) for i in range(200)])


@pytest.mark.parametrize("count", [2, 3, 7, 16])
def test_every_name_is_in_exactly_one_shard_and_the_shards_are_balanced(count: int) -> None:
    """100k names: the N selections partition the list; each shard within 3% of 1/N (the
    binomial standard deviation is ~0.5% of a share at this size)."""
    items = _items(NAMES)
    selections = [list(Sharding(k, count, "x").select(iter(items))) for k in range(1, count + 1)]
    seen = Counter(item.raw for selection in selections for item in selection)
    assert len(seen) == len(NAMES) and set(seen.values()) == {1}
    share = len(NAMES) / count
    for selection in selections:
        assert abs(len(selection) - share) < 0.03 * share, (len(selection), share)


def test_an_invalid_line_is_sharded_by_its_raw_text() -> None:
    """Invalid entries are recorded once (as invalid-input), by exactly one shard."""
    bad = InputItem(1, "not a name!", None, "invalid")
    holders = [k for k in (1, 2, 3) if list(Sharding(k, 3, "x").select(iter([bad])))]
    assert holders == [shard_of("not a name!", 3)]


def test_one_shard_of_one_is_the_whole_list() -> None:
    items = _items(NAMES[:500])
    assert list(Sharding(1, 1, "x").select(iter(items))) == items


def test_the_list_digest_is_the_same_in_every_shard_and_ignores_order() -> None:
    items = _items(NAMES[:2000])
    runs = []
    for k, order in ((1, items), (2, items[::-1]), (3, items[500:] + items[:500])):
        sharding = Sharding(k, 3, "opts")
        list(sharding.select(iter(order)))
        runs.append(sharding.run())
    assert {(run.list, run.names, run.count, run.options) for run in runs} == {
        (runs[0].list, 2000, 3, "opts")
    }
    other = Sharding(1, 3, "opts")
    list(other.select(iter(items[1:])))
    assert other.run().list != runs[0].list


@pytest.mark.parametrize(
    ("text", "expected"), [("1/1", (1, 1)), ("2/3", (2, 3)), (" 3/3 ", (3, 3)), ("10/12", (10, 12))]
)
def test_parse_shard_accepts_k_of_n(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "1/0", "a/b", "-1/3", "1/-3", "", "1/3/5"])
def test_parse_shard_refuses_what_is_not_k_of_n(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="must be K/N with 1 <= K <= N"):
        parse_shard(text)


def test_each_shard_gets_its_share_of_every_limit_rounded_down_but_never_zero() -> None:
    limits = {
        "big.example": Limit(concurrency=32, rate=256.0, burst=32.0),
        "small.example": Limit(concurrency=4, rate=4.0, burst=4.0),
        "odd.example": Limit(concurrency=10, rate=None),
        PER_IP_KEY: Limit(concurrency=1),
    }
    shared = shard_limits(limits, 3)
    assert shared["big.example"] == Limit(concurrency=10, rate=256.0 / 3, burst=32.0 / 3)
    assert shared["small.example"] == Limit(concurrency=1, rate=4.0 / 3, burst=4.0 / 3)
    assert shared["odd.example"] == Limit(concurrency=3, rate=None, burst=1.0)
    # One connection at a time per address cannot be divided: each shard still opens one.
    assert shared[PER_IP_KEY] == Limit(concurrency=1, rate=None, burst=1.0)
    for key, limit in limits.items():
        if limit.concurrency >= 3:
            assert 3 * shared[key].concurrency <= limit.concurrency
    assert shard_limits(limits, 1) == limits


def test_the_shard_option_divides_the_limit_table() -> None:
    from engine.options import config_from
    from mxscan.cli import _build_parser
    from mxscan.config import ScanConfig

    argv = ["scan", "d.txt", "--out", "o.ndjson", "--shard", "2/4", "--provider-limit", "big.example=8/2s"]
    cfg = config_from(_build_parser().parse_args(argv), ScanConfig)
    assert cfg.shard == (2, 4)
    assert cfg.limits["big.example"] == Limit(concurrency=2, rate=1.0, burst=2.0)
    whole = config_from(_build_parser().parse_args(argv[:4]), ScanConfig)
    assert whole.shard is None and whole.limits == default_limits()


def test_a_bad_shard_option_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    from mxscan.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["scan", "d.txt", "--out", "o.ndjson", "--shard", "4/3"])
    assert exit_.value.code == 2
    assert "--shard must be K/N with 1 <= K <= N (e.g. 2/3), got '4/3'" in capsys.readouterr().err
