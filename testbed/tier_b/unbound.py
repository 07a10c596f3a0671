"""unbound configuration for tier (b): the validating resolver in front of the world's NSD.

unbound iterates from our private root (``root-hints``) and validates with
the root key as its only trust anchor, exactly as it would on the Internet.
Settings and why (unbound.conf(5), unbound 1.17):

- ``do-not-query-localhost: no``: every authority is on 127.x;
- ``local-zone: "test." nodefault``: unbound serves RFC 6761 names such as
  ``test.`` locally unless told not to;
- ``nodefault`` for ``127.in-addr.arpa.`` and the ``::1`` ip6.arpa name: unbound
  answers the loopback reverse names itself by default (1.0.0.127 PTR localhost,
  the rest NXDOMAIN), but the world serves PTR records for its 127.x MX hosts, ``::1``
  and the scanner's vantage 127.0.0.1, delegated from the private root;
- ``ede: yes``: RFC 8914 Extended DNS Errors (EDE 6 for bogus answers);
- ``val-log-level: 2``: one log line per validation failure, with the reason;
- no chroot, no privilege drop, no daemon, no remote control: the process we
  start is the resolver, and it reads files in the state dir;
- caches sized for a 100k-domain world (a few hundred thousand RRsets).

Tier (a)'s resolver faults are resolver behaviour, so they are imitated with
resolver configuration (``local-zone`` types):

- ``timeout`` → ``deny``: "do not send an answer, drop the query" (UDP and
  TCP), like tier (a)'s silent drop;
- ``refused`` → ``always_refuse``: REFUSED whatever local data exists.

Both apply to the whole subtree below the name, as tier (a)'s faults do
(see world_b.py for the differences in form).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from testbed.world import ResolverFault, World

__all__ = [
    "FAULT_ZONE_TYPES",
    "LOOPBACK_REVERSE",
    "fault_local_zones",
    "render_root_hints",
    "render_unbound_conf",
]

#: unbound's default local zones for the loopback reverse names (RFC 6303 §4.2 and §4.3
#: list them among the zones a resolver serves itself).
LOOPBACK_REVERSE = ("127.in-addr.arpa", "1." + "0." * 31 + "ip6.arpa")

#: Tier (a) resolver fault -> unbound local-zone type that imitates it.
FAULT_ZONE_TYPES = {ResolverFault.TIMEOUT: "deny", ResolverFault.REFUSED: "always_refuse"}


def _quote(value: str | Path) -> str:
    return '"' + str(value).replace('"', "") + '"'


def fault_local_zones(world: World) -> list[tuple[str, str]]:
    """(name, local-zone type) for the world's timeout and refused domains."""
    return [
        (d.name, FAULT_ZONE_TYPES[d.fault])
        for d in world.domains
        if d.fault is not None and d.fault in FAULT_ZONE_TYPES
    ]


def render_root_hints(ns_name: str, ns_addr: str) -> str:
    """The root hints file: our private root's one server (RFC 1035 master format)."""
    return f".\t3600000\tIN\tNS\t{ns_name}.\n{ns_name}.\t3600000\tIN\tA\t{ns_addr}\n"


def render_unbound_conf(
    state: Path,
    addr: str,
    port: int,
    root_hints: Path,
    trust_anchor: Path,
    local_zones: Iterable[tuple[str, str]] = (),
    unusable: Iterable[str] = (),
    threads: int = 2,
) -> str:
    """unbound.conf text for a resolver on addr:port."""
    lines = [
        "server:",
        f"\tinterface: {addr}@{port}",
        f"\tport: {port}",
        "\tdo-ip6: no",
        "\tdo-udp: yes",
        "\tdo-tcp: yes",
        "\taccess-control: 127.0.0.0/8 allow",
        f"\tnum-threads: {threads}",
        "\tso-rcvbuf: 4m",
        "\tso-sndbuf: 4m",
        "\tso-reuseport: no",
        # Caches: ~400k RRsets and ~400k messages for the 100k world (answers, NS, DS, DNSKEY).
        "\tmsg-cache-size: 256m",
        "\trrset-cache-size: 512m",
        "\tkey-cache-size: 64m",
        "\tneg-cache-size: 32m",
        "\tinfra-cache-numhosts: 10000",
        "\toutgoing-range: 4096",
        "\tnum-queries-per-thread: 2048",
        "\tdo-not-query-localhost: no",
        *(f"\tdo-not-query-address: {a}" for a in unusable),
        f"\troot-hints: {_quote(root_hints)}",
        f"\ttrust-anchor-file: {_quote(trust_anchor)}",
        '\tlocal-zone: "test." nodefault',
        *(f'\tlocal-zone: "{zone}." nodefault' for zone in LOOPBACK_REVERSE),
        "\tede: yes",
        "\tval-log-level: 2",
        "\tverbosity: 1",
        '\tchroot: ""',
        '\tusername: ""',
        f"\tdirectory: {_quote(state)}",
        f"\tpidfile: {_quote(state / 'unbound.pid')}",
        '\tlogfile: ""',
        "\tuse-syslog: no",
        "\tlog-time-ascii: yes",
        "\tdo-daemonize: no",
        "\thide-version: yes",
        "\thide-identity: yes",
    ]
    lines += [f'\tlocal-zone: "{name}." {kind}' for name, kind in local_zones]
    lines += ["remote-control:", "\tcontrol-enable: no"]
    return "\n".join(lines) + "\n"
