"""DnsClient, StubResolver and preflight against real DNS servers on loopback.

Each test starts a small UDP+TCP server on 127.0.0.1 (a free high port) whose
replies dnspython builds.  The first label of the asked name says how it
misbehaves: ``silent.test`` never answers, ``noisy.test`` sends garbage and
spoofs before the real reply, ``big.test`` is truncated over UDP, and so on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar, cast

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from probes.dns.client import DnsClient, DnsTimeout, DnsTransportError
from probes.dns.message import RRType, WireError
from probes.dns.preflight import PreflightResult, preflight
from probes.dns.records import Answer, Dnssec, Ede, Outcome
from probes.dns.resolver import StubResolver

T = TypeVar("T")
HOST = "127.0.0.1"


class World:
    """The scenarios one test server plays, keyed by the first label."""

    def __init__(self, *, validating: bool = True) -> None:
        self.validating = validating
        self.log: list[tuple[str, int, bool, bool]] = []  # (name, type, cd, tcp)

    def respond(self, wire: bytes, *, tcp: bool) -> list[bytes]:
        query = dns.message.from_wire(wire)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        cd = bool(query.flags & dns.flags.CD)
        self.log.append((name, question.rdtype, cd, tcp))
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.RA
        label = name.split(".")[0]

        def add(rtype: str, *texts: str, owner: str = name + ".") -> None:
            reply.answer.append(dns.rrset.from_text(owner, 60, "IN", rtype, *texts))

        if label == "silent":
            return []
        if name == "." and self.validating:
            add("SOA", "a.root. n.root. 1 2 3 4 5", owner=".")
            reply.flags |= dns.flags.AD
        elif name == ".":
            add("SOA", "a.root. n.root. 1 2 3 4 5", owner=".")
        elif label in ("dnssec-failed", "bogus") and self.validating and not cd:
            reply.set_rcode(dns.rcode.SERVFAIL)
            reply.use_edns(
                0, options=[dns.edns.EDEOption(dns.edns.EDECode.DNSSEC_BOGUS, "signature expired")]
            )
        elif label in ("dnssec-failed", "bogus"):
            add("A", "192.0.2.66")
        elif label == "broken":
            reply.set_rcode(dns.rcode.SERVFAIL)
        elif label == "nx":
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif label == "refused":
            reply.set_rcode(dns.rcode.REFUSED)
        elif label == "big" and not tcp:
            reply.flags |= dns.flags.TC
        elif label == "big":
            add("TXT", *[f'"{i:02d}{"x" * 200}"' for i in range(12)])
        elif label == "www":
            add("CNAME", "host.other.test.")
            add("A", "192.0.2.7", owner="host.other.test.")
        else:
            add("A", "192.0.2.1")
            if label.startswith("secure") and self.validating:
                reply.flags |= dns.flags.AD
        real = reply.to_wire(max_size=65535)
        if label != "noisy":
            return [real]
        wrong_id = bytes([real[0] ^ 0x55, real[1]]) + real[2:]
        other = dns.message.make_response(dns.message.make_query("other.test.", "A"))
        other.id = query.id
        return [b"\x00\x01", real[:2] + b"\xff" * 40, wrong_id, other.to_wire(), real]


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, world: World) -> None:
        self.world = world
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport is not a registered DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        for out in self.world.respond(data, tcp=False):
            self.transport.sendto(out, addr)


@contextlib.asynccontextmanager
async def serve(world: World) -> AsyncIterator[tuple[str, int]]:
    """UDP and TCP on the same free port of 127.0.0.1."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = int.from_bytes(await reader.readexactly(2), "big")
            replies = world.respond(await reader.readexactly(size), tcp=True)
            for out in replies[-1:]:
                writer.write(len(out).to_bytes(2, "big") + out)
            await writer.drain()
        finally:
            writer.close()

    loop = asyncio.get_running_loop()
    for _ in range(20):
        transport, _ = await loop.create_datagram_endpoint(lambda: _UdpServer(world), local_addr=(HOST, 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            tcp = await asyncio.start_server(handle, HOST, port)
        except OSError:
            transport.close()
            continue
        break
    else:  # pragma: no cover
        raise RuntimeError("no free port pair")
    try:
        yield HOST, port
    finally:
        transport.close()
        tcp.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(20):
            return await main()

    return asyncio.run(bounded())


# ------------------------------------------------------------------ client


def test_normal_answer() -> None:
    async def main() -> None:
        async with serve(World()) as server, DnsClient(server) as client:
            reply = await client.query("Plain.TEST.", RRType.A)
            assert reply.rcode == 0 and reply.answers[0].data == "192.0.2.1"
            assert reply.question is not None and reply.question.name == "plain.test"
            stats = client.statistics()
            assert (stats.sent, stats.received, stats.in_flight) == (1, 1, 0)

    run(main)


def test_silent_server_times_out_after_every_attempt() -> None:
    async def main() -> None:
        async with serve(World()) as server, DnsClient(server, timeout=0.2, attempts=3) as client:
            with pytest.raises(DnsTimeout):
                await client.query("silent.test", RRType.A)
            stats = client.statistics()
            assert (stats.sent, stats.timeouts, stats.received) == (3, 3, 0)

    run(main)


def test_nothing_listening_is_refused_not_a_timeout() -> None:
    async def main() -> None:
        # A long deadline: only the ICMP port-unreachable path can end this query.
        async with DnsClient((HOST, free_udp_port()), timeout=30) as client:
            with pytest.raises(DnsTransportError) as caught:
                await client.query("any.test", RRType.A)
            assert caught.value.detail == "connection-refused"
            stats = client.statistics()
            assert stats.timeouts == 0 and stats.refused >= 1

    run(main)


def test_garbage_and_spoofed_replies_are_ignored() -> None:
    async def main() -> None:
        async with serve(World()) as server, DnsClient(server, sockets=1) as client:
            reply = await client.query("noisy.test", RRType.A)
            assert reply.answers[0].data == "192.0.2.1"
            assert client.statistics().ignored == 4  # short, garbage, wrong id, wrong question

    run(main)


def test_truncated_reply_is_asked_again_over_tcp() -> None:
    async def main() -> None:
        world = World()
        async with serve(world) as server, DnsClient(server) as client:
            reply = await client.query("big.test", RRType.TXT)
            assert not reply.tc and len(reply.answers) == 12
            assert client.statistics().tcp_fallbacks == 1
            assert [tcp for *_, tcp in world.log] == [False, True]

    run(main)


def test_servfail_is_a_reply_and_carries_ede() -> None:
    async def main() -> None:
        async with serve(World()) as server, DnsClient(server) as client:
            broken = await client.query("broken.test", RRType.MX)
            assert broken.rcode == 2 and broken.ede == ()
            bogus = await client.query("bogus.test", RRType.MX)
            assert bogus.rcode == 2 and bogus.ede == ((6, "signature expired"),)

    run(main)


def test_many_concurrent_queries_within_the_bound() -> None:
    async def main() -> None:
        async with serve(World()) as server, DnsClient(server, max_in_flight=16, sockets=2) as client:
            replies = await asyncio.gather(*(client.query(f"n{i}.test", RRType.A) for i in range(400)))
            assert {r.question.name for r in replies if r.question} == {f"n{i}.test" for i in range(400)}
            stats = client.statistics()
            assert stats.received == 400 and stats.in_flight == 0 and stats.timeouts == 0

    run(main)


def test_invalid_name_and_use_outside_context() -> None:
    async def main() -> None:
        async with serve(World()) as server:
            client = DnsClient(server)
            with pytest.raises(RuntimeError):
                await client.query("a.test", RRType.A)
            async with client:
                with pytest.raises(WireError):
                    await client.query("a..test", RRType.A)

    run(main)


# ---------------------------------------------------------------- resolver


def lookups(world: World, *questions: tuple[str, str], validating: bool = True) -> list[Answer]:
    async def main() -> list[Answer]:
        # The client's 2 s: above a loaded machine's scheduling noise, so only silent.test times out.
        async with serve(world) as server, DnsClient(server) as client:
            resolver = StubResolver(client, validating=validating)
            return [await resolver.lookup(name, rrtype) for name, rrtype in questions]

    return run(main)


def test_resolver_outcomes() -> None:
    world = World()
    secure, plain, cname, nx, refused, silent = lookups(
        world,
        ("secure.test", "A"),
        ("plain.test", "A"),
        ("www.test", "A"),
        ("nx.test", "MX"),
        ("refused.test", "A"),
        ("silent.test", "A"),
    )
    assert (secure.outcome, secure.dnssec, secure.data, secure.ttl) == (
        Outcome.OK,
        Dnssec.SECURE,
        ("192.0.2.1",),
        60,
    )
    assert (plain.outcome, plain.dnssec) == (Outcome.OK, Dnssec.INSECURE)
    assert (cname.cname_chain, cname.data) == (("host.other.test",), ("192.0.2.7",))
    assert (nx.outcome, nx.rcode, nx.dnssec) == (Outcome.NXDOMAIN, "NXDOMAIN", Dnssec.INSECURE)
    assert (refused.outcome, refused.dnssec) == (Outcome.REFUSED, Dnssec.INDETERMINATE)
    assert (silent.outcome, silent.detail) == (Outcome.TIMEOUT, "timeout")
    assert not any(cd for _, _, cd, _ in world.log), "CD=1 is only ever a retry after SERVFAIL"


def test_resolver_tells_bogus_from_broken_with_a_cd_retry() -> None:
    world = World()
    bogus, broken = lookups(world, ("bogus.test", "MX"), ("broken.test", "MX"))
    assert (bogus.outcome, bogus.dnssec, bogus.ede) == (
        Outcome.SERVFAIL,
        Dnssec.BOGUS,
        (Ede(6, "signature expired"),),
    )
    assert (broken.outcome, broken.dnssec) == (Outcome.SERVFAIL, Dnssec.INDETERMINATE)
    assert [(name, cd) for name, _, cd, _ in world.log] == [
        ("bogus.test", False),
        ("bogus.test", True),
        ("broken.test", False),
        ("broken.test", True),
    ]


def test_resolver_not_validating_skips_the_cd_retry() -> None:
    world = World()
    (broken,) = lookups(world, ("broken.test", "A"), validating=False)
    assert (broken.outcome, broken.dnssec) == (Outcome.SERVFAIL, Dnssec.UNKNOWN)
    assert len(world.log) == 1


def test_resolver_never_raises_for_bad_input_or_dead_server() -> None:
    async def main() -> list[Answer]:
        async with DnsClient((HOST, free_udp_port()), timeout=5) as client:
            resolver = StubResolver(client, validating=True)
            return [await resolver.lookup("a..b", "A"), await resolver.lookup("a.test", "NOPE"),
                    await resolver.lookup("a.test", "A")]  # fmt: skip

    bad_name, bad_type, refused = run(main)
    assert bad_name.outcome is Outcome.ERROR and bad_name.detail.startswith("invalid-name")
    assert (bad_type.outcome, bad_type.detail) == (Outcome.ERROR, "unknown-type")
    assert (refused.outcome, refused.detail) == (Outcome.ERROR, "connection-refused")


# --------------------------------------------------------------- preflight


def test_preflight_validating_resolver() -> None:
    async def main() -> PreflightResult:
        async with serve(World()) as server, DnsClient(server) as client:
            return await preflight(client)

    result = run(main)
    assert (result.reachable, result.validating, result.signed_ad, result.bogus_servfail) == (
        True,
        True,
        True,
        True,
    )


def test_preflight_non_validating_resolver() -> None:
    async def main() -> PreflightResult:
        async with serve(World(validating=False)) as server, DnsClient(server) as client:
            return await preflight(client)

    result = run(main)
    assert (result.reachable, result.validating, result.signed_ad) == (True, False, False)
    assert "no AD" in result.detail


@pytest.mark.parametrize("dead", ["silent", "nothing-listening"])
def test_preflight_unreachable(dead: str) -> None:
    async def main() -> PreflightResult:
        if dead == "silent":
            async with serve(World()) as server, DnsClient(server, timeout=0.2) as client:
                return await preflight(client, signed_name="silent.test", signed_type="A", timeout=1.0)
        async with DnsClient((HOST, free_udp_port())) as client:
            return await preflight(client, timeout=1.0)

    result = run(main)
    assert (result.reachable, result.validating) == (False, False)
    assert result.detail in ("timeout", "connection-refused")


def test_cancelled_waiters_never_leak_in_flight_slots() -> None:
    """Queries waiting for a slot and cancelled (a scan stopping) hand nothing back twice."""

    async def main() -> tuple[int, int]:
        async with DnsClient(("127.0.0.9", 9), timeout=0.3, attempts=1, max_in_flight=2) as client:
            tasks = [asyncio.create_task(client.query(f"n{i}.test", 1)) for i in range(10)]
            await asyncio.sleep(0.05)
            for task in tasks[::2]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            peak = client.statistics().in_flight
            return peak, len(client._waiting)

    in_flight, waiting = asyncio.run(main())
    assert in_flight == 0 and waiting == 0
