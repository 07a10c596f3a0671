"""``mxscan testbed up|down|status|stats|truth`` (and the internal ``serve``, ``serve-mail``).

    mxscan testbed up --scenarios [internet]
    mxscan testbed up --domains 100000 --seed 7 [--profile internet|p.toml] [--dns-port 0] [--smtp-port 0]
    mxscan testbed status
    mxscan testbed stats [--reset] [--merged]
    mxscan testbed truth --out truth.ndjson [--policy policy.toml] [--conditions conditions.json]
    mxscan testbed down

``up`` writes ``<state-dir>/endpoints.json`` and prints the scan command that
measures the world (resolver, ports, the world's CA and intermediates), with
the list in ``<state-dir>/domains.txt``.  Every command takes ``--state-dir``;
without it they share ``control.default_state_dir()``, whatever the working
directory.  Output into a closed pipe (``status | head``) ends quietly with
exit status 141, as a process killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Coroutine
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from testbed import control, services
from testbed.heap import settle_heap
from testbed.internet import BUILTIN_PROFILES
from testbed.ports import (
    DEFAULT_DNS_PORT,
    HIGH_PORTS,
    PORT_BUSY_EXIT,
    STANDARD_PORTS,
    PortBusy,
    is_taken,
    report_busy,
    write_ready,
)
from testbed.scanpolicy import DEFAULT_POLICY, load_policy
from testbed.truth import truth
from testbed.worldpki import WorldPki

__all__ = ["main"]


def _duration(text: str) -> float:
    """Seconds from "80ms", "0.08s" or "0.08"."""
    text = text.strip().lower()
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    return float(text.removesuffix("s"))


def _fraction(text: str) -> float:
    """A fraction from "0.5%" or "0.005"."""
    text = text.strip()
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def _world_args(p: argparse.ArgumentParser, required: bool) -> None:
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--scenarios",
        nargs="?",
        const="catalogue",
        choices=["catalogue", "internet"],
        help="one domain per scenario: the catalogue (default), or 'internet': one per Internet-like "
        "behaviour (silent, SYN drop, tarpit, greylist, 421, many addresses, silent IPv6, slow policy hosts)",
    )
    group.add_argument("--domains", type=int, metavar="N", help="a scale world of N domains")
    p.add_argument("--seed", type=int, default=1, help="the scale world's seed (default: 1)")
    p.add_argument(
        "--profile",
        metavar="NAME|TOML",
        help="'internet' (latency and hostile hosts, testbed/internet.toml) or a TOML file overriding the "
        'study\'s rates and the Internet-like shares (extends = "internet" to start from that profile)',
    )


def _net_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rtt", type=_duration, help="delay every DNS reply (e.g. 80ms; default: the profile's)")
    p.add_argument(
        "--jitter", type=_duration, help="+/- uniform jitter on the delay (default: the profile's)"
    )
    p.add_argument("--blackhole", type=_fraction, default=0.0, help="drop this share of replies (e.g. 0.5%%)")


STATE_DIR_HELP = (
    f"the world's files (default: ${control.STATE_DIR_ENV}, else $XDG_STATE_HOME/mxscan/testbed, "
    "else ~/.local/state/mxscan/testbed; the same from every working directory)"
)


def _state_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, help=STATE_DIR_HELP)


def _up_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "up",
        help="start a world (idempotent)",
        description="Start a world's servers in the background; print the scan command that measures it "
        "(its endpoints also go to <state-dir>/endpoints.json). A default port that is taken (an MTA "
        "already on port 25, say) is replaced by a free one, and up says so.",
    )
    _state_arg(p)
    _world_args(p, required=True)
    p.add_argument("--dns-addr", default=control.DEFAULT_DNS_ADDR, help="the resolver endpoint's address")
    taken = "a free one when taken; 0: any free port; a number given here is used or up fails"
    p.add_argument(
        "--dns-port", type=int, metavar="N", help=f"its port (default: {DEFAULT_DNS_PORT}, {taken})"
    )
    for kind, what in (("smtp", "MX hosts' SMTP"), ("https", "policy hosts' HTTPS")):
        default = f"{STANDARD_PORTS[kind]} as root, else {HIGH_PORTS[kind]}"
        p.add_argument(
            f"--{kind}-port", type=int, metavar="N", help=f"{what} port (default: {default}; {taken})"
        )
    p.add_argument(
        "--tier",
        choices=["a", "b"],
        default="a",
        help="a: built-in servers (default); b: NSD + validating unbound (real DNSSEC) + nginx "
        "from Debian, resolver 127.0.0.54:53 (root)",
    )
    _net_args(p)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mxscan testbed",
        description="The local mail Internet: a world of domains, DNS, SMTP and HTTPS servers on loopback "
        "addresses, with known ground truth.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _up_parser(sub)
    p = sub.add_parser("down", help="stop it", description="Stop the servers up started (by their PIDs).")
    _state_arg(p)
    p = sub.add_parser(
        "status",
        help="is it running? (JSON; exit 0 running, 1 crashed, 3 stopped)",
        description="Each server's state as JSON. Exit status: 0 running, 1 crashed, 3 stopped.",
    )
    _state_arg(p)
    p = sub.add_parser(
        "stats",
        help="SMTP connection counts of the running mail processes (JSON)",
        description="Per mail process: SMTP connections per host and per provider, the peak open at once "
        "per provider, and 421 refusals, as JSON.",
    )
    _state_arg(p)
    p.add_argument("--reset", action="store_true", help="then start counting again from zero")
    p.add_argument(
        "--merged",
        action="store_true",
        help="one object over all mail processes: connections per host, the most at once per address, "
        "421 and 451 counts, and peak open connections (per process and their sum, an upper bound)",
    )
    p = sub.add_parser(
        "truth",
        help="write the ground truth as NDJSON",
        description="Per domain, what a correct scan must report: of the running world, or of the world "
        "given by --scenarios / --domains.",
    )
    _world_args(p, required=False)
    _state_arg(p)
    p.add_argument("--out", type=Path, help="file to write (default: stdout)")
    p.add_argument(
        "--policy",
        type=Path,
        metavar="TOML",
        help="the scan policy to judge by (testbed/scanpolicy.py field names; default: the scanner's "
        "defaults: connect 10 s, each phase 20 s, one retry after a timeout, 4 addresses per family)",
    )
    p.add_argument(
        "--conditions",
        type=Path,
        metavar="FILE",
        help="also write the world's conditions as JSON: latency, hostile shares and their sources, "
        "and the scan policy the truth assumes",
    )
    p = sub.add_parser("serve", help="(internal) run the DNS server in the foreground")
    _world_args(p, required=True)
    p.add_argument("--dns-addr", default=control.DEFAULT_DNS_ADDR)
    p.add_argument("--dns-port", type=int, default=0)
    p.add_argument("--ready-file", type=Path, help="write the chosen port here once listening")
    p.add_argument("--pki-dir", type=Path, help="the world's PKI: TLSA data from its certificates")
    _net_args(p)
    p = sub.add_parser("serve-mail", help="(internal) run one mail process (SMTP + HTTPS) in the foreground")
    _world_args(p, required=False)
    p.add_argument(
        "--shard-file",
        type=Path,
        help="serve the shard `up` wrote here (instead of a world spec: no world built)",
    )
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--pki-dir", type=Path, required=True)
    p.add_argument("--smtp-port", type=int, required=True)
    p.add_argument("--https-port", type=int, required=True)
    p.add_argument("--ready-file", type=Path)
    p.add_argument("--stats-file", type=Path, help="SMTP connection counts as JSON on SIGUSR1/SIGUSR2/exit")
    return parser


def _spec(args: argparse.Namespace) -> control.WorldSpec:
    profile = args.profile
    if profile and not (profile in BUILTIN_PROFILES and not Path(profile).exists()):
        profile = str(Path(profile).resolve())  # a file: the same from any working directory
    if args.scenarios == "internet":
        return control.WorldSpec("internet-scenarios", profile=profile)
    if args.scenarios:
        return control.WorldSpec("scenarios")
    return control.WorldSpec("scale", args.domains, args.seed, profile)


def _serve(args: argparse.Namespace) -> int:
    from testbed.dnsserver import DnsServer, serve_dns
    from testbed.zones import placeholder_tlsa_data

    tlsa_data = WorldPki.load(args.pki_dir).tlsa_data if args.pki_dir else placeholder_tlsa_data
    world = _spec(args).build()
    server = DnsServer(
        world,
        rtt=world.conditions.dns.rtt if args.rtt is None else args.rtt,
        jitter=world.conditions.dns.jitter if args.jitter is None else args.jitter,
        blackhole=args.blackhole,
        seed=args.seed,
        tlsa_data=tlsa_data,
    )
    warmed = server.warm(server.index.mail_questions())
    print(f"dns: {warmed} replies built before ready", flush=True)
    settle_heap()

    def ready(port: int) -> None:
        print(f"dns listening on {args.dns_addr}:{port} (udp+tcp)", flush=True)
        if args.ready_file:
            write_ready(args.ready_file, str(port))

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await serve_dns(server, args.dns_addr, args.dns_port, ready)
        except asyncio.CancelledError:
            print(f"dns stopping: {json.dumps(server.stats)}", flush=True)
        except OSError as exc:
            if is_taken(exc):
                raise PortBusy("dns", args.dns_port, f"{exc} ({exc.__cause__ or exc.strerror})") from exc
            raise

    try:
        _run(run())
    except PortBusy as busy:  # up moves the resolver to another port (ports.py)
        print(busy, file=sys.stderr, flush=True)
        if args.ready_file:
            report_busy(args.ready_file, busy)
        return PORT_BUSY_EXIT
    return 0


def _serve_mail(args: argparse.Namespace) -> int:
    from testbed.serve_mail import serve_mail

    if not 0 <= args.shard < args.shards:
        print(f"serve-mail: shard {args.shard} is not in 0..{args.shards - 1}", file=sys.stderr)
        return 2
    if args.shard_file is not None:
        if args.scenarios or args.domains is not None:
            print("serve-mail: a shard file or a world spec, not both", file=sys.stderr)
            return 2
        try:
            part, conditions = services.read_shard(args.shard_file)
        except (OSError, ValueError) as exc:
            print(f"serve-mail: {exc}", file=sys.stderr)
            return 2
    elif args.scenarios or args.domains is not None:
        world = _spec(args).build()
        part, conditions = services.shard(world, args.shard, args.shards), world.conditions
        del world  # the shard's hosts are all this process keeps
    else:
        print("serve-mail: give --shard-file, --scenarios or --domains", file=sys.stderr)
        return 2
    return serve_mail(
        part, conditions, args.shard, args.shards, args.pki_dir, args.smtp_port, args.https_port,
        args.ready_file, args.stats_file,
    )  # fmt: skip


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _truth(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or control.default_state_dir()
    if args.scenarios or args.domains:
        spec = _spec(args)
    else:
        try:
            spec = control.WorldSpec(**json.loads((state_dir / "world.json").read_text())["spec"])
        except OSError:
            print(f"no world in {state_dir}: pass --scenarios or --domains N, or run `testbed up` first",
                  file=sys.stderr)  # fmt: skip
            return 2
    try:
        policy = load_policy(args.policy) if args.policy else DEFAULT_POLICY
    except (OSError, ValueError) as exc:
        print(f"testbed truth: --policy {args.policy}: {exc}", file=sys.stderr)
        return 2
    world = spec.build()
    if args.conditions:
        info = {**world.conditions.as_dict(), "policy": asdict(policy)}
        args.conditions.write_text(json.dumps(info, indent=2) + "\n")
    out = args.out.open("wb") if args.out else os.fdopen(sys.stdout.fileno(), "wb", closefd=False)
    # TLSA data from the running world's certificates when there is one (else placeholders).
    pki_dir = state_dir / "pki"
    tlsa_data = WorldPki.load(pki_dir).tlsa_data if (pki_dir / "pki.json").exists() else None
    with out:
        for row in truth(world, tlsa_data, policy) if tlsa_data else truth(world, policy=policy):
            out.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
    return 0


#: Who moved, in ``up``'s note about a taken port.
LISTENERS = {
    "dns": "the resolver listens",
    "smtp": "the MX hosts listen",
    "https": "the MTA-STS policy hosts listen",
}


def _up(args: argparse.Namespace) -> int:
    net = control.NetOptions(args.rtt, args.jitter, args.blackhole)
    state_dir = (args.state_dir or control.default_state_dir()).absolute()
    try:
        state = control.up(
            _spec(args), state_dir, args.dns_addr, args.dns_port, net, args.smtp_port, args.https_port,
            tier=args.tier,
        )  # fmt: skip
    except (control.ControlError, OSError) as exc:
        print(f"testbed up: {exc}", file=sys.stderr)
        return 1
    ep = json.loads((state_dir / "endpoints.json").read_text())
    for moved in ep.get("port_fallbacks", []):
        who = LISTENERS.get(moved["service"], moved["service"])
        print(
            f"note: {moved['service']} port {moved['wanted']} is taken ({moved['reason']}); "
            f"{who} on port {moved['port']} instead"
        )
    pids = " ".join(f"{s['name']}={s['pid']}" for s in state["servers"])
    print(f"world up ({pids}); endpoints in {state_dir}/endpoints.json; scan it with:")
    print(
        f"  mxscan scan {state_dir}/domains.txt --out results.ndjson --resolver {ep['dns']} "
        f"--smtp-port {ep['smtp_port']} --https-port {ep['https_port']} --ca-file {ep['ca_file']} "
        f"--intermediates {ep['intermediates']} --trust-store none --ehlo-name scanner.mxscan.test "
        f"--preflight-bogus {ep['preflight_bogus']}"
        # The world's own egress pre-flight targets, not the default providers' MX hosts.
        + "".join(f" --egress-check {target}" for target in ep.get("egress_check") or [ep["dns"]])
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        # The reader left (``status | head``): nothing more to say.  Point stdout at /dev/null
        # so the interpreter's own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + signal.SIGPIPE
    except control.ControlError as exc:
        print(f"testbed {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # what it had started is stopped on the way out (control.up)
        print(f"testbed {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    return code


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(args)
    if args.command == "truth":
        return _truth(args)
    if args.command == "serve-mail":
        return _serve_mail(args)
    if args.command == "up":
        return _up(args)
    if args.command == "stats":
        try:
            snapshots = control.mail_stats(args.state_dir, reset=args.reset)
        except control.ControlError as exc:
            print(f"testbed stats: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(control.merge_stats(snapshots) if args.merged else snapshots, indent=2))
        return 0
    if args.command == "down":
        stopped = control.down(args.state_dir)
        where = args.state_dir or control.default_state_dir()
        print(f"stopped: {', '.join(stopped) or f'nothing was running from {where}'}")
        return 0
    report = control.status(args.state_dir)
    print(json.dumps(report, indent=2))
    # LSB status codes: 0 running, 1 dead with a PID file (crashed), 3 not running.
    return {"running": 0, "crashed": 1}.get(report["state"], 3)
