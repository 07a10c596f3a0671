"""Collector settings for a long, allocation-heavy run (~5% of a 100k scan's CPU).

A scan makes millions of short-lived objects and keeps large caches (single-flight
answers and probes).  With CPython's default gen0 threshold (700) the collector runs
every few hundred allocations and its older generations re-walk those caches again
and again.  ``gc.freeze`` takes the start-up heap (modules, trust store, provider
table) out of its view for good and, done before a fork, keeps those pages shared;
the higher threshold trades some memory (~10%) for far fewer passes.
(testbed/heap.py does the same for the world's servers: testbed imports nothing of ours.)
"""

from __future__ import annotations

import gc

__all__ = ["settle_heap"]

#: gen0 allocations, gen0 passes per gen1, gen1 passes per gen2 (CPython default: 700, 10, 10).
THRESHOLDS = (100_000, 50, 50)


def settle_heap() -> None:
    """Call once start-up is done (before forking workers): what exists becomes permanent."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
