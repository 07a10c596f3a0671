"""DNS client throughput against a local unbound: dnspython, aiodns, our
DnsClient, and a bare send/receive loop (the ceiling for any asyncio client).

    python benchmarks/dns_clients.py --names 20000

Starts unbound on 127.0.0.1 (a free high port, private temp dir, no daemon,
no remote control) serving ``dNNNNN.bench.test`` MX and A records from
local-data, runs every client over the same query set (MX then A for every
name; the slow dnspython modes use a prefix of it), three times each, and
prints medians of queries/s and client CPU µs/query with ratios to the
dnspython baseline.  unbound is stopped by its PID and the temp dir removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiodns
import dns.asyncquery
import dns.message
import dns.rcode

from probes.dns.client import DnsClient, DnsError
from probes.dns.message import WireError, rrtype_code
from probes.dns.wire import build_query

HOST = "127.0.0.1"
#: Queries in flight for every concurrent client: the same window for all.
CONCURRENCY = 256
RUNS = 3

Question = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Run:
    queries: int
    ok: int
    failed: int
    wall: float
    cpu: float


# ------------------------------------------------------------------ unbound


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((HOST, 0))
        return int(udp.getsockname()[1])


def unbound_config(folder: Path, port: int, names: int) -> Path:
    lines = [
        "server:",
        f"  interface: {HOST}",
        f"  port: {port}",
        "  do-daemonize: no",
        '  chroot: ""',
        '  username: ""',
        f'  directory: "{folder}"',
        '  pidfile: ""',
        "  use-syslog: no",
        '  logfile: ""',
        "  verbosity: 0",
        "  num-threads: 1",
        "  so-rcvbuf: 4m",
        "  do-ip6: no",
        "  do-tcp: yes",
        "  access-control: 127.0.0.0/8 allow",
        '  module-config: "iterator"',
        '  local-zone: "bench.test." static',
    ]
    for i in range(names):
        host = f"d{i:05d}.bench.test."
        lines.append(f'  local-data: "{host} 3600 IN MX 10 mx.{host}"')
        lines.append(f'  local-data: "{host} 3600 IN A 192.0.2.{i % 250 + 1}"')
    lines += ["remote-control:", "  control-enable: no", ""]
    path = folder / "unbound.conf"
    path.write_text("\n".join(lines))
    return path


@contextlib.contextmanager
def running_unbound(names: int) -> Iterator[tuple[str, int]]:
    binary = shutil.which("unbound") or "/usr/sbin/unbound"
    folder = Path(tempfile.mkdtemp(prefix="mxscan-bench-unbound-"))
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-d", "-c", str(unbound_config(folder, port, names))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_answering(proc, port)
        yield HOST, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def wait_until_answering(proc: subprocess.Popen[bytes], port: int) -> None:
    probe = build_query(1, "d00000.bench.test", rrtype_code("A"))
    deadline = time.monotonic() + 30
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(0.2)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"unbound exited ({proc.returncode}): {err[-2000:]}")
            udp.sendto(probe, (HOST, port))
            with contextlib.suppress(OSError):
                if udp.recv(4096)[:2] == probe[:2]:
                    return
    raise RuntimeError("unbound did not answer within 30 s")


# ------------------------------------------------------------------ clients


async def drive(
    questions: list[Question], ask: Callable[[str, str], Awaitable[bool]], concurrency: int
) -> tuple[int, int]:
    """(ok, failed) asking every question with ``concurrency`` workers."""
    pending = iter(questions)
    ok = failed = 0

    async def worker() -> None:
        nonlocal ok, failed
        for name, rrtype in pending:
            if await ask(name, rrtype):
                ok += 1
            else:
                failed += 1

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return ok, failed


def dnspython_mode(
    concurrency: int,
) -> Callable[[tuple[str, int], list[Question]], Awaitable[tuple[int, int]]]:
    async def mode(server: tuple[str, int], questions: list[Question]) -> tuple[int, int]:
        async def ask(name: str, rrtype: str) -> bool:
            query = dns.message.make_query(name, rrtype)
            try:
                reply = await dns.asyncquery.udp(query, server[0], port=server[1], timeout=5)
            except (dns.exception.DNSException, OSError):
                return False
            return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)

        return await drive(questions, ask, concurrency)

    return mode


async def aiodns_mode(server: tuple[str, int], questions: list[Question]) -> tuple[int, int]:
    # A fresh resolver per run: c-ares keeps an answer cache of its own.
    resolver = aiodns.DNSResolver(nameservers=[f"{server[0]}:{server[1]}"], timeout=5, tries=2)
    try:

        async def ask(name: str, rrtype: str) -> bool:
            try:
                result = await resolver.query_dns(name, rrtype)
            except aiodns.error.DNSError:
                return False
            return bool(result.answer)

        return await drive(questions, ask, CONCURRENCY)
    finally:
        await resolver.close()


async def ours_mode(server: tuple[str, int], questions: list[Question]) -> tuple[int, int]:
    codes = {"MX": rrtype_code("MX"), "A": rrtype_code("A")}
    async with DnsClient(server, timeout=5, max_in_flight=CONCURRENCY) as client:

        async def ask(name: str, rrtype: str) -> bool:
            try:
                reply = await client.query(name, codes[rrtype])
            except (DnsError, WireError):
                return False
            return reply.rcode == 0 and bool(reply.answers)

        return await drive(questions, ask, CONCURRENCY)


class _BareProtocol(asyncio.DatagramProtocol):
    """Sends prepared query bytes, counts replies by ID: no parsing at all."""

    def __init__(self, queries: list[bytes], window: int, done: asyncio.Future[None]) -> None:
        self.queries, self.window, self.done = queries, window, done
        self.next = 0
        self.received = 0
        self.first = self.last = 0.0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.first = self.last = time.perf_counter()
        for _ in range(min(self.window, len(self.queries))):
            self.send_next()

    def send_next(self) -> None:
        if self.next < len(self.queries) and self.transport is not None:
            self.transport.sendto(self.queries[self.next])
            self.next += 1

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received += 1
        self.last = time.perf_counter()
        if self.received == len(self.queries) and not self.done.done():
            self.done.set_result(None)
        self.send_next()


async def _bare(server: tuple[str, int], questions: list[Question]) -> _BareProtocol:
    queries = [
        build_query(i & 0xFFFF, name, rrtype_code(rrtype)) for i, (name, rrtype) in enumerate(questions)
    ]
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # The whole window can come back at once: a default receive buffer drops some.
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    udp.connect(server)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _BareProtocol(queries, CONCURRENCY, done), sock=udp
    )
    try:
        # A lost reply shrinks the window for good, so no event will ever say "all
        # done": poll, and call it over once nothing has come back for a second.
        while not done.done() and time.perf_counter() - protocol.last < 1.0:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    finally:
        transport.close()
    return protocol


async def bare_mode(server: tuple[str, int], questions: list[Question]) -> tuple[int, int]:
    protocol = await _bare(server, questions)
    return protocol.received, len(questions) - protocol.received


def bare_rate(server: tuple[str, int], questions: list[Question]) -> float:
    """Replies per second of the bare loop, measured up to its last reply."""

    async def run() -> float:
        protocol = await _bare(server, questions)
        return protocol.received / max(protocol.last - protocol.first, 1e-9)

    return asyncio.run(run())


Mode = Callable[[tuple[str, int], list[Question]], Awaitable[tuple[int, int]]]


def measure(mode: Mode, server: tuple[str, int], questions: list[Question], *, uvloop: bool = False) -> Run:
    if uvloop:
        import uvloop as uv

        runner: Callable[[Awaitable[tuple[int, int]]], tuple[int, int]] = uv.run  # type: ignore[assignment]
    else:
        runner = asyncio.run  # type: ignore[assignment]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ok, failed = runner(mode(server, questions))
    return Run(len(questions), ok, failed, time.perf_counter() - wall0, time.process_time() - cpu0)


# ------------------------------------------------------------------ report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=20000, help="dNNNNN.bench.test names (MX + A each)")
    parser.add_argument("--slow-queries", type=int, default=4000, help="queries for the dnspython modes")
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()

    names = [f"d{i:05d}.bench.test" for i in range(args.names)]
    questions = [(n, t) for n in names for t in ("MX", "A")]
    slow = questions[: args.slow_queries]
    modes: list[tuple[str, Mode, list[Question], bool]] = [
        ("dnspython asyncquery.udp, sequential", dnspython_mode(1), slow, False),
        (f"dnspython asyncquery.udp, {CONCURRENCY} concurrent", dnspython_mode(CONCURRENCY), slow, False),
        (f"aiodns query_dns (thread), {CONCURRENCY} concurrent", aiodns_mode, questions, False),
        (f"mxscan DnsClient, {CONCURRENCY} concurrent", ours_mode, questions, False),
        (f"mxscan DnsClient + uvloop, {CONCURRENCY} concurrent", ours_mode, questions, True),
        (f"bare send/recv loop, window {CONCURRENCY}", bare_mode, questions, False),
        (f"bare send/recv loop + uvloop, window {CONCURRENCY}", bare_mode, questions, True),
    ]
    started = time.perf_counter()
    rows = []
    with running_unbound(args.names) as server:
        print(f"unbound on {server[0]}:{server[1]}, {args.names} names, {len(questions)} queries", flush=True)
        for label, mode, qs, uv in modes:
            runs = [measure(mode, server, qs, uvloop=uv) for _ in range(args.runs)]
            qps = statistics.median(r.queries / r.wall for r in runs)
            cpu_us = statistics.median(r.cpu / r.queries * 1e6 for r in runs)
            failed = max(r.failed for r in runs)
            rows.append((label, len(qs), qps, cpu_us, failed))
            print(f"  done: {label} ({qps:,.0f} q/s)", flush=True)
    base_qps, base_cpu = rows[0][2], rows[0][3]
    print()
    print(
        f"{'client':<52} {'queries':>8} {'q/s':>9} {'x base':>7} {'µs CPU/q':>9} {'x base':>7} {'failed':>7}"
    )
    for label, n, qps, cpu_us, failed in rows:
        print(
            f"{label:<52} {n:>8} {qps:>9,.0f} {qps / base_qps:>7.1f} {cpu_us:>9.1f} "
            f"{cpu_us / base_cpu:>7.2f} {failed:>7}"
        )
    print(
        f"\nmedians of {args.runs} runs; baseline = first row; CPU = this process (client) only; "
        f"{os.cpu_count()} cores shared with unbound; total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
