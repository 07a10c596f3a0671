"""Scans over a real local Ray cluster (``--cluster``), in a private network namespace.

Ray binds to the machine's interface address, which no test may send to, so this test runs
``tests/cluster/inside_cluster.py`` under ``unshare -n`` (``tests/cluster/netns.py``: only
loopback there, every Ray node at 127.0.0.1), where the test world is started too.  Needs
root (for the namespace) and Ray (``pip install -e '.[ray]'``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSIDE = Path(__file__).resolve().parent / "inside_cluster.py"

pytestmark = pytest.mark.timeout(900)


def test_cluster_scans_inside_a_private_network_namespace() -> None:
    """Runs the namespace tests under ``unshare -n``; their failures are this test's."""
    if importlib.util.find_spec("ray") is None:  # not imported here: the namespace's processes do
        pytest.skip("Ray is not installed (the ray extra: pip install -e '.[ray]')")
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip for a private network namespace")
    run = subprocess.run(
        [
            *("unshare", "-n", "--", sys.executable, str(INSIDE.parent / "netns.py")),
            *(sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "-x", str(INSIDE)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=880,
        check=False,
    )
    if run.returncode != 0:  # the inner report in full (an assertion's repr would be cut)
        pytest.fail(f"inside the namespace:\n{run.stdout[-8000:]}\n{run.stderr[-3000:]}", pytrace=False)
    summary = run.stdout.strip().splitlines()[-1]
    assert " 10 passed" in summary and "skipped" not in summary, run.stdout[-2000:]
