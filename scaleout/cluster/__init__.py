"""``mxscan scan --cluster local:N | ADDRESS``: one scan over a Ray cluster (``pip install
mxscan[ray]``).

The shape (issue #14): the driver (``driver``: the ``mxscan scan`` process) reads the list
once, skips what the results file already holds, hands out batches of domains to scan-worker
actors and writes the one results file with the existing store, so resume and exactly-once
stay properties of that file.  Scan workers (``actors.ScanWorker``) run mxscan's own asyncio
pipeline (DNS, the plan, record assembly) on their node; every connection goes to the probe
actor that owns the provider of its host (``actors.ProbeActor``: the politeness of a probe
process, partitioned by a stable hash of the provider), through ``actors.ClusterServices``,
a third ``ProbeServices`` beside the in-process and probe-process ones, so the plan does
not change.

Nothing here imports Ray: a plain install parses ``--cluster`` and says what is missing;
Ray is imported when a cluster scan starts.
"""

from __future__ import annotations

import argparse

__all__ = ["LOCAL", "parse_cluster"]

#: ``--cluster local:N``: start a local Ray cluster of N scan workers in this process.
LOCAL = "local:"


def parse_cluster(text: str) -> str:
    """``local:N`` (N >= 1) or a Ray cluster's ``HOST:PORT`` (its GCS address), as given."""
    text = text.strip()
    if text.startswith(LOCAL):
        count = text[len(LOCAL) :]
        if not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"must be local:N with N >= 1 workers, got {text!r}")
        return f"{LOCAL}{int(count)}"
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"must be local:N or a Ray cluster's HOST:PORT (e.g. 10.0.0.5:6379), got {text!r}"
        )
    return text


parse_cluster.__name__ = "cluster"  # argparse names the type in some messages
