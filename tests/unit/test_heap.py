"""engine.heap / testbed.heap: the collector settings a long run uses (checked in a child
process: freezing the test runner's own heap would outlive the test)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import gc, sys
from {module} import THRESHOLDS, settle_heap
kept = [object() for _ in range(1000)]
settle_heap()
assert gc.get_threshold() == THRESHOLDS, gc.get_threshold()
assert gc.get_freeze_count() >= 1000, gc.get_freeze_count()
assert THRESHOLDS[0] > 700  # fewer passes than CPython's default
print("ok")
"""


@pytest.mark.parametrize("module", ["engine.heap", "testbed.heap"])
def test_settle_heap_freezes_what_exists_and_raises_the_thresholds(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr
