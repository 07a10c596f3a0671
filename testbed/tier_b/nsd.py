"""NSD configuration for tier (b): one instance serving every zone of the world.

Why one instance on port 53: delegations carry addresses, never ports, so the
resolver reaches every zone's server on port 53; every zone names the same
server (``ns1.testbed.test``), so one NSD on one 127.x address answers for all
of them — for a name in a zone it serves and in that zone's parent, NSD
answers from the closest zone, and DS questions from the parent (RFC 4035
§3.1.4.1), which is what a resolver walking the delegations needs.  Binding
port 53 needs root (or CAP_NET_BIND_SERVICE), as tier (b) does anyway.

Settings that matter for a test world (nsd.conf(5)):
- ``rrl-ratelimit: 0``: response rate limiting off; every query comes from
  one local resolver, which RRL (~200/s per source) would throttle;
- ``database: ""``: zones are read from their files, no nsd.db;
- ``username: ""``, ``chroot: ""``: no privilege drop, so NSD can read the
  state dir wherever it is (a tempdir is mode 0700);
- one pattern for all zones: a zone is four lines of config (~10 MB at 100k zones).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from testbed.tier_b.zonefiles import zone_file_name

__all__ = ["NSD_PATTERN", "render_nsd_conf"]

NSD_PATTERN = "world"


def _quote(value: str | Path) -> str:
    return '"' + str(value).replace('"', "") + '"'


def render_nsd_conf(
    state: Path,
    zones_dir: Path,
    addresses: Iterable[str],
    apexes: Iterable[str],
    port: int = 53,
    servers: int = 1,
) -> str:
    """nsd.conf text: NSD listening on ``addresses`` (port ``port``), serving ``apexes``."""
    lines = [
        "server:",
        *(f"\tip-address: {a}@{port}" for a in addresses),
        "\tdo-ip6: no",
        f"\tserver-count: {servers}",
        '\tusername: ""',
        '\tchroot: ""',
        '\tdatabase: ""',
        f"\tzonesdir: {_quote(zones_dir)}",
        f"\tzonelistfile: {_quote(state / 'zone.list')}",
        f"\txfrdfile: {_quote(state / 'xfrd.state')}",
        f"\txfrdir: {_quote(state / 'xfr')}",
        f"\tpidfile: {_quote(state / 'nsd.pid')}",
        f"\tlogfile: {_quote(state / 'nsd.log')}",
        "\tverbosity: 0",  # 1 logs a line per zone read: 100k lines at scale
        "\thide-version: yes",
        "\trrl-ratelimit: 0",
        "\trrl-whitelist-ratelimit: 0",
        "\ttcp-count: 256",
        # Zone files are written once and never change while NSD runs.
        "\tzonefiles-write: 0",
        "remote-control:",
        "\tcontrol-enable: no",
        "pattern:",
        f"\tname: {NSD_PATTERN}",
        "",
    ]
    for apex in apexes:
        name = f"{apex}." if apex else "."
        lines += [
            "zone:",
            f'\tname: "{name}"',
            f"\tinclude-pattern: {NSD_PATTERN}",
            f'\tzonefile: "{zone_file_name(apex)}"',
        ]
    return "\n".join(lines) + "\n"
