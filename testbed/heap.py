"""The world's server processes hold a large, immutable heap (the world model, its
indexes) and then allocate only short-lived objects per query or connection.

CPython's collector would re-walk that heap on every older-generation pass; at
100k domains that was a measurable share of the world's CPU, which the scanner
beside it on the same two cores pays for.
"""

from __future__ import annotations

import gc

__all__ = ["settle_heap"]

#: gen0 allocations, gen0 passes per gen1, gen1 passes per gen2 (CPython default: 700, 10, 10).
THRESHOLDS = (100_000, 50, 50)


def settle_heap() -> None:
    """Call once the world is built: move what exists to the permanent generation."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
