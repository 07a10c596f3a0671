"""Write everything tier (b) needs into a state dir, starting nothing.

    python -m testbed.tier_b.prepare --scenarios --state-dir run/compose [--https-port 443]
    python -m testbed.tier_b.prepare --domains 100000 --seed 7 --state-dir /state

This is the ``world`` service of docker-compose.yml (the servers then run in
their own containers from these files) and the first half of a native
``testbed up --tier b`` (``prepare_tier_b`` then ``world_b.start_tier_b``-like
starts of NSD and unbound, ``nginx.start_nginx``, and optionally Postfix).

State dir layout (paths inside are absolute, so the dir must be seen at the same
path by every server: docker-compose.yml mounts it at /state everywhere)::

    domains.txt            the list to scan
    world.json             which world, and counts
    endpoints.json         what a scan needs (the keys of tier (a)'s, plus tier (b)'s own)
    compose.env            the same as KEY=VALUE lines, for shells and containers
    pki/                   WorldPki (ca.pem, intermediate.pem, leaves/ ...), reused if fresh
    tier-b/                world_b.prepare: zones/, nsd.conf, unbound.conf, root.key, root.hints
    tier-b/nginx/          nginx.conf, www/, tmp/, logs (nginx.py)
    tier-b/postfix/<host>/ config/main.cf + master.cf, queue/, data/, log/ (scenario world only)

Real Postfix: the scenario world's ``mx.valid-cert`` host gets a Postfix
instance config, bound to its own address on ``POSTFIX_PORT`` (2525), not 25:
the built-in SMTP fleet already answers on port 25 of every MX address, and
it has no way yet to leave a host out.  Probing that address on 2525 must
give what the fleet gives on 25 (same name, same certificate).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from testbed.realmta.postfix import render_main_cf, render_master_cf
from testbed.scale import load_profile, scale_world
from testbed.scenarios import PREFLIGHT_BOGUS, scenario_world
from testbed.tier_b.nginx import NginxLayout, write_nginx
from testbed.tier_b.world_b import DEFAULT_RESOLVER_ADDR
from testbed.tier_b.world_b import prepare as prepare_dns
from testbed.tier_b.zonefiles import DEFAULT_LAYOUT, NsLayout
from testbed.world import World
from testbed.worldpki import WorldPki

__all__ = [
    "EHLO_NAME",
    "POSTFIX_HOST",
    "POSTFIX_PORT",
    "TierBFiles",
    "main",
    "prepare_tier_b",
    "scan_argv",
    "write_postfix",
]

#: The EHLO name the printed scan command uses (as ``testbed up`` prints).
EHLO_NAME = "scanner.mxscan.test"
#: The scenario host a real Postfix serves (a plain valid-certificate MX).
POSTFIX_HOST = "mx.valid-cert.scenario.test"
#: Postfix's port: 25 on that address belongs to the built-in fleet (module docstring).
POSTFIX_PORT = 2525
SMTP_PORT = 25
HTTPS_PORT = 443


class TierBFiles(NamedTuple):
    """What ``prepare_tier_b`` wrote."""

    state_dir: Path
    endpoints: dict[str, Any]
    nsd_conf: Path
    unbound_conf: Path
    nginx: NginxLayout
    #: Postfix's config directory (``postfix -c``), None when the world has no POSTFIX_HOST.
    postfix_config: Path | None
    stats: dict[str, float]


def write_postfix(
    world: World, directory: Path, world_pki: WorldPki, port: int = POSTFIX_PORT
) -> Path | None:
    """A Postfix instance for POSTFIX_HOST under ``directory``; its config dir, or None.

    The data directory must belong to the ``postfix`` user, which exists only where Postfix
    is installed: whoever starts it chowns it (docker-compose.yml does; PostfixInstance too).
    """
    host = next((h for h in world.hosts if h.name == POSTFIX_HOST and h.ipv4), None)
    if host is None or host.ipv4 is None:
        return None
    if directory.exists():
        shutil.rmtree(directory)
    base = directory / host.name
    for sub in ("config", "queue", "data", "log"):
        (base / sub).mkdir(parents=True)
    base.chmod(0o755)  # postfix(1) insists on root-owned, not group/world-writable dirs
    cert_file = key_file = None
    if host.cert is not None:  # the fleet's certificate for the host (the same DER: persisted)
        world_pki.persist(host.name, host.cert.value)
        stem = world_pki.directory / "leaves" / f"{host.name}.{host.cert.value}"
        cert_file, key_file = Path(f"{stem}.chain.pem"), Path(f"{stem}.key.pem")
    main_cf = render_main_cf(
        address=host.ipv4, hostname=host.name, state_dir=base, cert_file=cert_file, key_file=key_file
    )
    (base / "config" / "main.cf").write_text(main_cf)
    (base / "config" / "master.cf").write_text(render_master_cf(host.ipv4, port))
    return base / "config"


def scan_argv(endpoints: Mapping[str, Any], domains: str, out: str) -> list[str]:
    """The scan command that measures a prepared (and running) world, as ``testbed up`` prints it."""
    return [
        *("mxscan", "scan", domains, "--out", out, "--resolver", str(endpoints["dns"])),
        *("--smtp-port", str(endpoints["smtp_port"]), "--https-port", str(endpoints["https_port"])),
        *("--ca-file", str(endpoints["ca_file"]), "--intermediates", str(endpoints["intermediates"])),
        *("--trust-store", "none", "--ehlo-name", EHLO_NAME),
        *("--preflight-bogus", str(endpoints["preflight_bogus"])),
        *(arg for target in endpoints.get("egress_check") or () for arg in ("--egress-check", str(target))),
    ]


def _env_value(value: object) -> object:
    """A KEY=VALUE value: lists space-separated, None empty."""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return "" if value is None else value


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def prepare_tier_b(
    world: World,
    state_dir: Path,
    *,
    scenarios: bool,
    resolver: tuple[str, int] = (DEFAULT_RESOLVER_ADDR, 53),
    layout: NsLayout = DEFAULT_LAYOUT,
    smtp_port: int = SMTP_PORT,
    https_port: int = HTTPS_PORT,
    postfix_port: int = POSTFIX_PORT,
    spec: Mapping[str, Any] | None = None,
) -> TierBFiles:
    """Write the world's lists, PKI, zones, DNS configs, nginx and Postfix files (module docstring).

    ``scenarios``: the world is the scenario world (its preflight bogus name is then the
    scenario's own, as ``testbed up`` prints it).
    """
    t0 = time.perf_counter()
    state_dir = state_dir.absolute()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "domains.txt").write_text("".join(f"{d.name}\n" for d in world.domains))
    counts = {"domains": len(world.domains), "hosts": len(world.hosts), "zones": len(world.zones)}
    _write_json(state_dir / "world.json", {"spec": dict(spec or {}), "tier": "b", **counts})
    world_pki = WorldPki.load_or_create(state_dir / "pki")
    world_pki.prepare(world)
    t1 = time.perf_counter()
    dns = prepare_dns(world, state_dir / "tier-b", resolver, layout, world_pki.tlsa_data)
    t2 = time.perf_counter()
    nginx = write_nginx(world, state_dir / "tier-b" / "nginx", world_pki, https_port)
    postfix = write_postfix(world, state_dir / "tier-b" / "postfix", world_pki, postfix_port)
    endpoints: dict[str, Any] = {
        "tier": "b",
        "dns": f"{resolver[0]}:{resolver[1]}",
        "smtp_port": smtp_port,
        "https_port": https_port,
        "ca_file": str(world_pki.ca_file),
        "intermediates": str(world_pki.intermediates_file),
        "preflight_bogus": PREFLIGHT_BOGUS[0] if scenarios else PREFLIGHT_BOGUS[1],
        "nsd": f"{layout.nsd}:53",
        "nsd_conf": str(dns.nsd_conf),
        "unbound_conf": str(dns.unbound_conf),
        "nginx_conf": str(nginx.conf),
        "postfix_config": str(postfix) if postfix else None,
        "postfix": f"{POSTFIX_HOST}:{postfix_port}" if postfix else None,
        # The scanner's egress pre-flight target: the resolver's TCP listener (a completed
        # handshake answers what the pre-flight asks; the default targets are real MX hosts).
        "egress_check": [f"{resolver[0]}:{resolver[1]}"],
    }
    _write_json(state_dir / "endpoints.json", endpoints)
    env = {f"MXSCAN_{key.upper()}": _env_value(value) for key, value in endpoints.items()}
    (state_dir / "compose.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    stats = {**dns.stats, "pki_s": t1 - t0, "dns_s": t2 - t1, "total_s": time.perf_counter() - t0}
    return TierBFiles(state_dir, endpoints, dns.nsd_conf, dns.unbound_conf, nginx, postfix, stats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.tier_b.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--scenarios", action="store_true", help="one domain per scenario")
    group.add_argument("--domains", type=int, metavar="N", help="a scale world of N domains")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", help="TOML file overriding prevalence rates")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--resolver-addr", default=DEFAULT_RESOLVER_ADDR)
    parser.add_argument("--resolver-port", type=int, default=53)
    parser.add_argument("--smtp-port", type=int, default=SMTP_PORT, help="the MX hosts' SMTP port")
    parser.add_argument(
        "--https-port", type=int, default=HTTPS_PORT, help="nginx's port on every policy host"
    )
    parser.add_argument("--postfix-port", type=int, default=POSTFIX_PORT)
    args = parser.parse_args(argv)
    if args.scenarios:
        world, spec = scenario_world(), {"kind": "scenarios"}
    else:
        profile = load_profile(args.profile) if args.profile else None
        world = scale_world(args.domains, args.seed, profile)
        spec = {"kind": "scale", "domains": args.domains, "seed": args.seed, "profile": args.profile}
    files = prepare_tier_b(
        world,
        args.state_dir,
        scenarios=args.scenarios,
        resolver=(args.resolver_addr, args.resolver_port),
        smtp_port=args.smtp_port,
        https_port=args.https_port,
        postfix_port=args.postfix_port,
        spec=spec,
    )
    stats = " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in files.stats.items())
    print(f"tier (b) prepared in {files.state_dir} ({stats}); once its servers run, scan it with:")
    argv_ = scan_argv(files.endpoints, str(files.state_dir / "domains.txt"), "results.ndjson")
    print("  " + " ".join(argv_), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
