"""Suite-wide hooks and fixtures.

* Skips for a missing package or root say what to install, and fail under
  MXSCAN_REQUIRE_REAL_SERVERS=1 (see tests/skipguard.py).
* The scenario world the session shares, started on first use and stopped by PID at the end:
  ``shared_world``, ``shared_resolver``, ``shared_scan`` (see tests/worlds.py, which also
  says when a test keeps a private world).
* Hypothesis profiles, chosen by ``HYPOTHESIS_PROFILE`` (default ``dev``): ``dev`` runs few
  examples for a quick local run; ``ci`` (``./dev test`` and ``.ci/run``) runs many, with a new
  random seed each run so CI keeps exploring.  Both have no per-example deadline: on shared
  cores a slow example is the machine's load, not a bug (a deadline made such runs flaky).  A
  test that states a count with ``@settings(max_examples=...)`` caps it with
  ``tests.profiles.at_most`` so the ``dev`` profile still bounds it.
"""

from tests.profiles import load_profile
from tests.skipguard import pytest_make_collect_report, pytest_runtest_makereport
from tests.worlds import shared_resolver, shared_scan, shared_world

__all__ = [
    "pytest_make_collect_report",
    "pytest_runtest_makereport",
    "shared_resolver",
    "shared_scan",
    "shared_world",
]

load_profile()
