"""``mxscan testbed up|down|status|truth`` (and the internal ``serve``, ``serve-mail``).

    mxscan testbed up --scenarios
    mxscan testbed up --domains 100000 --seed 7 [--profile p.toml] [--dns-port 0] [--smtp-port 0]
    mxscan testbed status
    mxscan testbed truth --out truth.ndjson
    mxscan testbed down

``up`` writes ``<state-dir>/endpoints.json`` and prints the scan command that
measures the world (resolver, ports, the world's CA and intermediates), with
the list in ``<state-dir>/domains.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import orjson

from testbed import control
from testbed.heap import settle_heap
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
    group.add_argument("--scenarios", action="store_true", help="one domain per scenario")
    group.add_argument("--domains", type=int, metavar="N", help="a scale world of N domains")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", help="TOML file overriding prevalence rates")


def _net_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rtt", type=_duration, default=0.0, help="delay every DNS reply (e.g. 80ms)")
    p.add_argument("--jitter", type=_duration, default=0.0, help="+/- uniform jitter on the delay")
    p.add_argument("--blackhole", type=_fraction, default=0.0, help="drop this share of replies (e.g. 0.5%%)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mxscan testbed", description="the local mail Internet")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("up", "start a world"), ("down", "stop it"), ("status", "is it running?")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--state-dir", type=Path, default=control.DEFAULT_STATE_DIR)
        if name == "up":
            _world_args(p, required=True)
            p.add_argument("--dns-addr", default=control.DEFAULT_DNS_ADDR)
            p.add_argument("--dns-port", type=int, default=control.DEFAULT_DNS_PORT, help="0: any free port")
            p.add_argument("--smtp-port", type=int, help="MX hosts' SMTP port (root: 25, else 10025; 0: any)")
            p.add_argument("--https-port", type=int, help="policy HTTPS port (root: 443, else 10443; 0: any)")
            p.add_argument(
                "--tier",
                choices=["a", "b"],
                default="a",
                help="a: built-in servers (default); b: NSD + validating unbound (real DNSSEC) + nginx "
                "from Debian, resolver 127.0.0.54:53 (root)",
            )
            _net_args(p)
    p = sub.add_parser("stats", help="SMTP connection counts of the running mail processes (JSON)")
    p.add_argument("--state-dir", type=Path, default=control.DEFAULT_STATE_DIR)
    p.add_argument("--reset", action="store_true", help="then start counting again from zero")
    p = sub.add_parser("truth", help="write the ground truth as NDJSON")
    _world_args(p, required=False)
    p.add_argument(
        "--state-dir", type=Path, default=control.DEFAULT_STATE_DIR, help="world of a running testbed"
    )
    p.add_argument("--out", type=Path, help="file to write (default: stdout)")
    p = sub.add_parser("serve", help="(internal) run the DNS server in the foreground")
    _world_args(p, required=True)
    p.add_argument("--dns-addr", default=control.DEFAULT_DNS_ADDR)
    p.add_argument("--dns-port", type=int, default=0)
    p.add_argument("--ready-file", type=Path, help="write the chosen port here once listening")
    p.add_argument("--pki-dir", type=Path, help="the world's PKI: TLSA data from its certificates")
    _net_args(p)
    p = sub.add_parser("serve-mail", help="(internal) run one mail process (SMTP + HTTPS) in the foreground")
    _world_args(p, required=True)
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--pki-dir", type=Path, required=True)
    p.add_argument("--smtp-port", type=int, required=True)
    p.add_argument("--https-port", type=int, required=True)
    p.add_argument("--ready-file", type=Path)
    p.add_argument("--stats-file", type=Path, help="SMTP connection counts as JSON on SIGUSR1/SIGUSR2/exit")
    return parser


def _spec(args: argparse.Namespace) -> control.WorldSpec:
    if args.scenarios:
        return control.WorldSpec("scenarios")
    profile = str(Path(args.profile).resolve()) if args.profile else None
    return control.WorldSpec("scale", args.domains, args.seed, profile)


def _serve(args: argparse.Namespace) -> int:
    from testbed.dnsserver import DnsServer, serve_dns
    from testbed.zones import placeholder_tlsa_data

    tlsa_data = WorldPki.load(args.pki_dir).tlsa_data if args.pki_dir else placeholder_tlsa_data
    server = DnsServer(
        _spec(args).build(),
        rtt=args.rtt,
        jitter=args.jitter,
        blackhole=args.blackhole,
        seed=args.seed,
        tlsa_data=tlsa_data,
    )
    settle_heap()

    def ready(port: int) -> None:
        print(f"dns listening on {args.dns_addr}:{port} (udp+tcp)", flush=True)
        if args.ready_file:
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(f"{port}\n")
            tmp.replace(args.ready_file)

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

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())
    return 0


def _truth(args: argparse.Namespace) -> int:
    if args.scenarios or args.domains:
        spec = _spec(args)
    else:
        try:
            spec = control.WorldSpec(**json.loads((args.state_dir / "world.json").read_text())["spec"])
        except OSError:
            print("no world: pass --scenarios or --domains N, or run `testbed up` first", file=sys.stderr)
            return 2
    out = args.out.open("wb") if args.out else os.fdopen(sys.stdout.fileno(), "wb", closefd=False)
    # TLSA data from the running world's certificates when there is one (else placeholders).
    pki_dir = args.state_dir / "pki"
    tlsa_data = WorldPki.load(pki_dir).tlsa_data if (pki_dir / "pki.json").exists() else None
    with out:
        for row in truth(spec.build(), tlsa_data) if tlsa_data else truth(spec.build()):
            out.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
    return 0


def _up(args: argparse.Namespace) -> int:
    net = control.NetOptions(args.rtt, args.jitter, args.blackhole)
    try:
        state = control.up(
            _spec(args), args.state_dir, args.dns_addr, args.dns_port, net, args.smtp_port, args.https_port,
            tier=args.tier,
        )  # fmt: skip
    except (control.ControlError, OSError) as exc:
        print(f"testbed up: {exc}", file=sys.stderr)
        return 1
    ep = json.loads((args.state_dir / "endpoints.json").read_text())
    pids = " ".join(f"{s['name']}={s['pid']}" for s in state["servers"])
    print(f"world up ({pids}); endpoints in {args.state_dir}/endpoints.json; scan it with:")
    print(
        f"  mxscan scan {args.state_dir}/domains.txt --out results.ndjson --resolver {ep['dns']} "
        f"--smtp-port {ep['smtp_port']} --https-port {ep['https_port']} --ca-file {ep['ca_file']} "
        f"--intermediates {ep['intermediates']} --trust-store none --ehlo-name scanner.mxscan.test "
        f"--preflight-bogus {ep['preflight_bogus']}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "truth":
        return _truth(args)
    if args.command == "serve-mail":
        from testbed.serve_mail import serve_mail

        return serve_mail(
            _spec(args).build(), args.shard, args.shards, args.pki_dir, args.smtp_port, args.https_port,
            args.ready_file, args.stats_file,
        )  # fmt: skip
    if args.command == "up":
        return _up(args)
    if args.command == "stats":
        try:
            print(json.dumps(control.mail_stats(args.state_dir, reset=args.reset), indent=2))
        except control.ControlError as exc:
            print(f"testbed stats: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "down":
        stopped = control.down(args.state_dir)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    report = control.status(args.state_dir)
    print(json.dumps(report, indent=2))
    # LSB status codes: 0 running, 1 dead with a PID file (crashed), 3 not running.
    return {"running": 0, "crashed": 1}.get(report["state"], 3)
