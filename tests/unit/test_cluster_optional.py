"""Ray is an optional extra (``pip install mxscan[ray]``): a plain install never imports it,
and ``--cluster`` is parsed and checked without it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from scaleout.cluster import parse_cluster

ROOT = Path(__file__).resolve().parents[2]


def test_the_command_line_never_imports_ray() -> None:
    """Parsing every scan option (``--cluster`` too), building the config and reading the
    probes' modules import no part of Ray: only a cluster scan that starts does."""
    code = (
        "import sys\n"
        "from engine.options import config_from\n"
        "from mxscan.cli import _build_parser\n"
        "from mxscan.config import ScanConfig\n"
        "import mxscan.scan, scaleout.merge, scaleout.shard, scaleout.cluster\n"
        "args = _build_parser().parse_args(['scan', 'l.txt', '--out', 'o.ndjson', '--cluster', 'local:2'])\n"
        "assert config_from(args, ScanConfig).cluster == 'local:2'\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("local:1", "local:1"), ("local:08", "local:8"), ("127.0.0.1:6379", "127.0.0.1:6379"), (" h:1 ", "h:1")],
)
def test_cluster_accepts_local_n_and_an_address(text: str, expected: str) -> None:
    assert parse_cluster(text) == expected


@pytest.mark.parametrize(
    "text", ["local:0", "local:", "local:x", "127.0.0.1", ":6379", "h:0", "h:70000", "h:p"]
)
def test_cluster_refuses_anything_else_naming_the_forms(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="must be local:N"):
        parse_cluster(text)


@pytest.mark.parametrize(
    "other", [["--shard", "1/2"], ["--retry-unknown"], ["--metrics", "m.prom"], ["--summary-json", "s.json"]]
)
def test_cluster_contradicts_shard_retry_metrics_and_summary(
    other: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from mxscan.cli import main

    assert main(["scan", "l.txt", "--out", "o.ndjson", "--cluster", "local:2", *other]) == 2
    assert "contradict each other" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("total", "workers", "size"),
    [(None, 4, 2000), (10**7, 8, 2000), (73, 2, 9), (73, 3, 6), (3, 2, 1), (0, 1, 1), (16_000, 2, 2000)],
)
def test_a_short_list_is_cut_into_batches_for_every_worker(
    total: int | None, workers: int, size: int
) -> None:
    """Batches of 2,000, fewer for a short list: at least 4 per worker (so a 73-name list over
    two workers is 9 batches, not one that a single worker measures alone)."""
    from scaleout.cluster.driver import batch_size

    assert batch_size(total, workers) == size
