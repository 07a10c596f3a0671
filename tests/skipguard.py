"""No silent skips of real-server tests (issue #19).

A test that needs root or a Debian package skips without it, so a machine lacking them
would go green having checked no real server.  This plugin (loaded by ``tests/conftest.py``)
recognises such skips by their reason and

* always appends what to install to the skip message, so a local run says how to get the
  test back;
* with ``MXSCAN_REQUIRE_REAL_SERVERS=1`` (``./dev test`` sets it when it runs as root and may
  install packages; ``.ci/run`` sets it always) turns the skip into a failure that says the
  same, so CI fails loudly instead of skipping.

Skips for other reasons stay skips (e.g. "nginx cannot do 'garbage'": no package changes
that).  A new skip reason for a missing package or root must be added to ``NEEDS``; the
unit test ``tests/unit/test_skipguard.py`` checks every skip reason written in ``tests/``
is either in ``NEEDS`` or in its list of skips that are not about this machine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator
from typing import Any

import pytest

ENV = "MXSCAN_REQUIRE_REAL_SERVERS"

_APT = "apt-get install -y --no-install-recommends"
_PIP = "the test extra: .venv/bin/pip install -e '.[test]'"

#: (reason pattern, what to install or do).  Package names as in ./dev's APT_PACKAGES.
NEEDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), fix)
    for pattern, fix in (
        (r"needs root|install\w* Postfix and Exim needs root", "run as root"),
        (r"\bopenssl\b.*not installed", f"{_APT} openssl"),
        (r"\bcurl\b.*not installed", f"{_APT} curl"),
        (r"\bdig\b.*not installed", f"{_APT} dnsutils"),
        (r"\bnsd\b|\bunbound\b", f"{_APT} nsd unbound"),
        (r"\bnginx is not installed|Debian's .*nginx", f"{_APT} nginx-light"),
        (r"libnginx-mod-http-echo", f"{_APT} libnginx-mod-http-echo (nginx-light pulls it in)"),
        (r"\bchromium\b.*not installed", f"{_APT} chromium"),
        (r"postfix-mta-sts-resolver", f"{_APT} postfix-mta-sts-resolver"),
        (r"cannot install Postfix and Exim here", "run as root on Debian with apt-get (./dev test)"),
        (r"could not import '|\(test extra\)", _PIP),
        (r"Ray is not installed", "the ray extra: .venv/bin/pip install -e '.[ray]'"),
    )
)


def what_to_install(reason: str) -> tuple[str, ...]:
    """What would un-skip a test skipped for ``reason`` (in NEEDS order); empty when the skip
    is not about something missing on this machine."""
    return tuple(dict.fromkeys(fix for pattern, fix in NEEDS if pattern.search(reason)))


def required() -> bool:
    return os.environ.get(ENV, "0") not in ("", "0")


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return None


def _judge(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    fixes = what_to_install(reason or "")
    if reason is None or not fixes:
        return
    todo = "; ".join(fixes)
    assert isinstance(report.longrepr, tuple)
    path, lineno, _ = report.longrepr
    if required():
        report.outcome = "failed"
        report.longrepr = (
            f"{ENV}=1: a real-server test was skipped ({reason}); this run must not skip it. "
            f"To get it back: {todo}"
        )
    else:
        report.longrepr = (path, lineno, f"Skipped: {reason} [to run it: {todo}]")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    _judge(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    _judge(outcome.get_result())
