"""``mxscan testbed up --tier b``: the world on Debian's own servers.

NSD serves the world's zones with real DNSSEC signatures, unbound validates
them from the private root's trust anchor, nginx serves the MTA-STS policy
hosts, and the built-in fleet serves SMTP (its own HTTPS listeners move off
443, which is nginx's).  Everything is prepared by ``prepare_tier_b`` (the
same files docker-compose.yml uses) and every process is recorded in
state.json so ``down`` stops exactly what ``up`` started.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.tier_b.nginx import start_nginx, stop_nginx
from testbed.tier_b.prepare import prepare_tier_b
from testbed.tier_b.world_b import DEFAULT_RESOLVER_ADDR, start_dns, stop_tier_b
from testbed.tier_b.zonefiles import DEFAULT_LAYOUT
from testbed.world import World

__all__ = ["FLEET_HTTPS_PORT", "start_tier_b_world", "stop_server"]

#: The built-in fleet's HTTPS port in tier (b): unused by scans (nginx serves 443), but its
#: listeners must not collide with nginx's.
FLEET_HTTPS_PORT = 10443

StartMail = Callable[[int, int], list[dict[str, Any]]]


def start_tier_b_world(
    world: World,
    state_dir: Path,
    *,
    scenarios: bool,
    spec: dict[str, Any],
    smtp_port: int,
    start_mail: StartMail,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Start NSD, unbound, nginx and the mail fleet; (servers for state.json, endpoints).

    ``start_mail(smtp_port, https_port)`` starts the fleet processes (control's own code)
    and returns their state.json entries.  On any failure everything started is stopped.
    """
    files = prepare_tier_b(world, state_dir, scenarios=scenarios, spec=spec, smtp_port=smtp_port)
    servers: list[dict[str, Any]] = []
    try:
        dns = start_dns(files.nsd_conf, files.unbound_conf, files.nsd_conf.parent)
        servers.append(_entry("unbound", "dns", dns.pids["unbound"], DEFAULT_RESOLVER_ADDR, 53))
        servers.append(_entry("nsd", "nsd", dns.pids["nsd"], DEFAULT_LAYOUT.nsd, 53))
        nginx = start_nginx(files.nginx)
        servers.append(_entry("nginx", "nginx", nginx, None, 443))
        servers.extend(start_mail(smtp_port, FLEET_HTTPS_PORT))
    except BaseException:
        for server in servers:
            stop_server(server)
        raise
    return servers, files.endpoints


def _entry(name: str, kind: str, pid: int, addr: str | None, port: int) -> dict[str, Any]:
    return {"name": name, "kind": kind, "pid": pid, "start_time": _start_time(pid), "addr": addr,
            "port": port, "log": "", "argv": []}  # fmt: skip


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def stop_server(server: dict[str, Any]) -> bool:
    """Stop one tier (b) server by its kind (NSD forks, nginx has workers); False if not ours."""
    kind, pid = server.get("kind"), int(server["pid"])
    if kind == "nsd":
        stop_tier_b({"nsd": pid})
    elif kind == "nginx":
        stop_nginx(pid)
    elif kind == "dns" and server.get("name") == "unbound":
        stop_tier_b({"unbound": pid})
    else:
        return False
    return True
