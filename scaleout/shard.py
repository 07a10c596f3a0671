"""``mxscan scan --shard K/N``: one of N independent scans of one list, and its share of
every politeness budget.

Theory of operation
-------------------
A name belongs to shard ``1 + h mod N`` where ``h`` is the first 8 bytes of the BLAKE2b
digest of its key (the reader's normalised A-label name; an invalid line's raw text), read
big-endian.  The hash depends on the name alone -- not on Python's per-process hash seed,
the list's order or the machine -- so the same list always splits the same way, and the N
shards are disjoint and together the whole list (as ZMap's ``--shards/--shard``).  The
64-bit value modulo N has a bias below N/2^64: nothing measurable.

Each shard is polite on its own, to its share of the budget: a connection limit of C is
``max(1, C // N)`` per shard (rounded down, so N shards stay within C; never 0, which would
never connect), a rate of R new connections per second is ``R / N`` (a rate needs no
rounding), a burst of B tokens ``max(1, B / N)``.  A limit below N connections cannot be
divided (one connection is the least a shard can open): the per-address limit of 1 is such
a limit, so N shards may hold up to N connections to one address at once; a cluster scan
(``--cluster``) keeps such limits global instead.

A shard's finished run line records the shard (``probes.domain.ShardRun``): K, N and what
makes N files parts of one scan -- a digest of the whole list (all N shards read it whole)
and of the options that change what a record measures -- so ``mxscan merge`` can refuse
files of different scans.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from engine.checkpoint import read_records
from engine.inputs import InputItem
from engine.limits import Limit
from probes.domain import ShardRun

__all__ = [
    "MEASUREMENT_OPTIONS",
    "Sharding",
    "options_digest",
    "parse_shard",
    "resume_problem",
    "shard_limits",
    "shard_of",
    "shard_text",
]

#: The options that change what a record says (a scan of the same list with another value
#: of one of them is another scan): merged shards must agree on every one.  Politeness,
#: timeouts and concurrency change only how fast, and may differ per machine; so may the
#: resolver's address (each machine its own resolver).
MEASUREMENT_OPTIONS = (
    "dns_only",
    "ipv6",
    "smtp_port",
    "https_port",
    "max_addresses_per_host",
    "max_addresses_per_domain",
    "trust_store",
    "keep_certs",
    "ehlo_name",
    "contact",
)

_MASK = (1 << 64) - 1


def _digest(key: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big"
    )


def shard_of(key: str, count: int) -> int:
    """The shard (1..count) of a list entry's key; stable across machines and processes."""
    if count < 1:
        raise ValueError(f"a shard count is at least 1, got {count}")
    return 1 + _digest(key) % count


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` -> (K, N), 1 <= K <= N."""
    index, slash, count = text.strip().partition("/")
    try:
        k, n = int(index), int(count)
    except ValueError:
        k = n = 0
    if not slash or n < 1 or not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"must be K/N with 1 <= K <= N (e.g. 2/3), got {text!r}")
    return k, n


parse_shard.__name__ = "shard"  # argparse names the type in some messages


def shard_text(shard: tuple[int, int] | None) -> str | None:
    """``(K, N)`` -> ``"K/N"`` as every domain line records it (``ScanMeta.shard``)."""
    return None if shard is None else f"{shard[0]}/{shard[1]}"


def resume_problem(
    path: str | os.PathLike[str], shard: tuple[int, int] | None, *, fresh: bool = False
) -> str | None:
    """Why the results file at ``path`` cannot be resumed by a scan of ``shard``, or None
    (also when there is nothing to resume: ``fresh``, or no file yet).

    A file holds the lines of one shard (or of the whole list): resumed with another
    ``--shard``, or without one, it would mix two scans that ``mxscan merge`` can no longer
    tell apart.  Every domain line records its scan's shard; the first one decides (a file
    without one, or written before lines recorded it, is not checked)."""
    if fresh or not os.path.exists(path):
        return None
    wanted = shard_text(shard)
    for record in read_records(path):
        scan = record.get("scan") if "domain" in record else None
        if not isinstance(scan, dict):
            continue  # a host or run line
        held = scan.get("shard", wanted)
        if held == wanted:
            return None
        given = "without --shard" if wanted is None else f"with --shard {wanted}"
        again = "without --shard" if held is None else f"with --shard {held}"
        return (
            f"{os.fspath(path)} holds {_part(held)}; this scan was started {given}. Resume it {again}, "
            "or give another --out (or --fresh to start it over)"
        )
    return None


def _part(shard: object) -> str:
    return "a scan of the whole list" if shard is None else f"shard {shard} of a list"


def shard_limits(limits: Mapping[str, Limit], count: int) -> dict[str, Limit]:
    """Each limit's share for one of ``count`` shards (rounding: see the module's docstring)."""
    if count == 1:
        return dict(limits)
    return {
        key: Limit(
            concurrency=max(1, limit.concurrency // count),
            rate=None if limit.rate is None else limit.rate / count,
            burst=max(1.0, limit.burst / count),
        )
        for key, limit in limits.items()
    }


def options_digest(config: object) -> str:
    """A digest of a scan config's measurement options (``MEASUREMENT_OPTIONS``)."""
    chosen = {name: getattr(config, name) for name in MEASUREMENT_OPTIONS}
    return hashlib.blake2b(orjson.dumps(chosen, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()


@dataclass(slots=True)
class Sharding:
    """One shard of a list: passes on the entries of its shard, and digests the whole list as
    it goes by (the sum of every key's 64-bit digest, so the order of the list does not
    matter and a shard that read the list to its end knows the list's digest)."""

    index: int
    count: int
    options: str
    names: int = 0
    _sum: int = 0

    def select(self, items: Iterator[InputItem]) -> Iterator[InputItem]:
        for item in items:
            key = item.domain or item.raw
            digest = _digest(key)
            self.names += 1
            self._sum = (self._sum + digest) & _MASK
            if 1 + digest % self.count == self.index:
                yield item

    def run(self) -> ShardRun:
        """What the run line says of the shard (the list's digest is complete once the list
        has been read to its end, as it has when a run line is written)."""
        return ShardRun(
            index=self.index,
            count=self.count,
            names=self.names,
            list=f"{self._sum:016x}",
            options=self.options,
        )

    @classmethod
    def of(cls, config: Any) -> Sharding | None:
        """The sharding of a scan config (its ``shard`` and measurement options), or None."""
        if config.shard is None:
            return None
        index, count = config.shard
        return cls(index, count, options_digest(config))

    @staticmethod
    def estimate(total: int | None, count: int) -> int | None:
        """A progress total for one shard of a list of ``total`` names (the hash spreads names
        evenly; an estimate, as the list's total is an upper bound)."""
        return None if total is None else -(-total // count)
