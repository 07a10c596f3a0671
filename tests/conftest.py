"""Suite-wide hooks: skips for a missing package or root say what to install, and fail under
MXSCAN_REQUIRE_REAL_SERVERS=1 (see tests/skipguard.py)."""

from tests.skipguard import pytest_make_collect_report, pytest_runtest_makereport

__all__ = ["pytest_make_collect_report", "pytest_runtest_makereport"]
