"""The Internet-like hosts of the test world (issue #12), each checked at the socket level
with a raw asyncio client: silent after accept, SYN never answered (connect times out, not
refused), greylisting per client address, 421 above N connections per client, a tarpit's
late greeting and replies, latency on every flight (the TLS handshake's too), silent and
slow MTA-STS policy hosts; then the running ``--scenarios internet`` world: many
addresses with one behaviour each, a silent IPv6 address beside a working IPv4 one, DNS
latency, and ``testbed stats --merged``.

Delays are short here (fractions of a second); the assertions on time are generous lower
bounds ("not before") and deadlines ("within"), never speeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest

from testbed.control import WorldSpec
from testbed.harness import RunningWorld, running_world
from testbed.httpsserver import PolicyServerFleet, PolicySite
from testbed.internet import internet_scenario_world
from testbed.pki import TestPki
from testbed.smtpfleet import HostSpec, SmtpFleet, server_context

ROOT = Path(__file__).resolve().parents[2]
#: This file's own addresses: other tests (and other worlds) use other 127.x ranges.
NET = "127.212"
OTHER_CLIENT = f"{NET}.250.2"
PKI = TestPki()


def _address(i: int) -> str:
    return f"{NET}.{i // 250}.{i % 250 + 1}"


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _tls(name: str) -> ssl.SSLContext:
    issued = PKI.issue([name])
    return server_context(issued.chain_pem, issued.key_pem)


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@contextlib.asynccontextmanager
async def _fleet(*specs: HostSpec, latency: tuple[float, float] = (0.0, 0.0)) -> AsyncIterator[int]:
    port = _free_port(specs[0].address)
    async with SmtpFleet(specs, port, latency=latency):
        yield port


async def _connect(
    address: str, port: int, client: str | None = None, within: float = 2.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    local = (client, 0) if client else None
    return await asyncio.wait_for(asyncio.open_connection(address, port, local_addr=local), within)


async def _line(reader: asyncio.StreamReader, within: float = 2.0) -> bytes:
    return await asyncio.wait_for(reader.readline(), within)


async def _reply(reader: asyncio.StreamReader, within: float = 2.0) -> list[bytes]:
    """One SMTP reply, every line of it."""
    lines = [await _line(reader, within)]
    while lines[-1][3:4] == b"-":
        lines.append(await _line(reader, within))
    return lines


def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _not_before(read: Coroutine[Any, Any, bytes], seconds: float, within: float = 3.0) -> bytes:
    """What ``read`` gives, checking it has not finished after ``seconds``."""
    pending = asyncio.ensure_future(read)
    done, _ = await asyncio.wait({pending}, timeout=seconds)
    assert not done, f"arrived within {seconds} s"
    return await asyncio.wait_for(pending, within)


def _sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in its own event loop (the tests here need no plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


# -- SMTP hosts -----------------------------------------------------------------------------


@_sync
async def test_silent_host_accepts_and_never_greets() -> None:
    spec = HostSpec(name="mx.silent.test", address=_address(1), behaviour="blackhole")
    async with _fleet(spec) as port:
        reader, writer = await _connect(spec.address, port)
        with pytest.raises(TimeoutError):
            await _line(reader, within=1.0)
        _close(writer)


@_sync
async def test_syn_drop_host_connect_times_out_and_is_never_refused() -> None:
    spec = HostSpec(name="mx.syn-drop.test", address=_address(2), behaviour="syn-drop")
    nothing = _address(3)  # no listener at all: refused at once, for contrast
    async with _fleet(spec) as port:
        with pytest.raises(ConnectionRefusedError):
            await _connect(nothing, port)
        started = time.monotonic()
        for _ in range(2):  # the queue stays full: every later SYN is dropped too
            with pytest.raises(TimeoutError):
                await _connect(spec.address, port, within=1.5)
        assert time.monotonic() - started >= 2.9


@_sync
async def test_greylist_451_to_first_connection_per_client_then_220() -> None:
    spec = HostSpec(
        name="mx.greylist.test", address=_address(4), behaviour="greylist", tls=_tls("mx.greylist.test")
    )
    async with _fleet(spec) as port:
        reader, writer = await _connect(spec.address, port)
        assert (await _line(reader)).startswith(b"451 ")
        assert await reader.read() == b""  # and the server closes
        _close(writer)
        reader, writer = await _connect(spec.address, port)
        assert (await _line(reader)).startswith(b"220 ")
        _close(writer)
        # Another client address is greylisted in its own right, once.
        for expected in (b"451 ", b"220 "):
            reader, writer = await _connect(spec.address, port, client=OTHER_CLIENT)
            assert (await _line(reader)).startswith(expected)
            _close(writer)


@_sync
async def test_421_above_two_connections_at_once_per_client() -> None:
    spec = HostSpec(
        name="mx.limit.test",
        address=_address(5),
        behaviour="client-limit-421",
        client_limit=2,
        tls=_tls("mx.limit.test"),
    )
    async with _fleet(spec) as port:
        held = [await _connect(spec.address, port) for _ in range(2)]
        for reader, _ in held:
            assert (await _line(reader)).startswith(b"220 ")
        reader, writer = await _connect(spec.address, port)
        assert (await _line(reader)).startswith(b"421 ")
        _close(writer)
        other_reader, other = await _connect(spec.address, port, client=OTHER_CLIENT)
        assert (await _line(other_reader)).startswith(b"220 ")  # per client: another one is served
        _close(other)
        held[0][1].write(b"QUIT\r\n")
        assert (await _line(held[0][0])).startswith(b"221 ")
        reader, writer = await _connect(spec.address, port)
        assert (await _line(reader)).startswith(b"220 ")  # a place came free
        _close(writer)
        _close(held[1][1])


@_sync
async def test_tarpit_greets_late_and_answers_each_command_late() -> None:
    spec = HostSpec(
        name="mx.tarpit.test",
        address=_address(6),
        behaviour="tarpit-greeting",
        greeting_delay=0.8,
        reply_delay=0.5,
        tls=_tls("mx.tarpit.test"),
    )
    async with _fleet(spec) as port:
        reader, writer = await _connect(spec.address, port)
        assert (await _not_before(reader.readline(), 0.5)).startswith(b"220 ")
        writer.write(b"EHLO scanner.test\r\n")
        started = time.monotonic()
        reply = await _reply(reader)
        assert reply[-1].startswith(b"250 ") and time.monotonic() - started >= 0.4
        writer.write(b"QUIT\r\n")
        assert (await _line(reader, within=0.3)).startswith(b"221 ")  # QUIT is answered at once
        _close(writer)


@_sync
async def test_latency_delays_every_flight_the_tls_handshake_included() -> None:
    name = "mx.far.test"
    spec = HostSpec(name=name, address=_address(7), behaviour="good", tls=_tls(name))
    rtt = 0.3
    async with _fleet(spec, latency=(rtt, 0.0)) as port:
        started = time.monotonic()
        reader, writer = await _connect(spec.address, port)
        assert (await _line(reader)).startswith(b"220 ")
        assert time.monotonic() - started >= rtt - 0.05
        for command, code in ((b"EHLO scanner.test\r\n", b"250 "), (b"STARTTLS\r\n", b"220 ")):
            started = time.monotonic()
            writer.write(command)
            assert (await _reply(reader))[-1].startswith(code)
            assert time.monotonic() - started >= rtt - 0.05, command
        started = time.monotonic()
        await asyncio.wait_for(writer.start_tls(_client_tls(), server_hostname=name), 3)
        assert time.monotonic() - started >= rtt - 0.05  # the server's handshake flight waited
        started = time.monotonic()
        writer.write(b"EHLO scanner.test\r\n")
        reply = await _reply(reader)
        assert reply[-1].startswith(b"250 ") and b"STARTTLS" not in b"".join(reply)
        assert time.monotonic() - started >= rtt - 0.05
        _close(writer)


@_sync
async def test_without_latency_replies_are_not_delayed() -> None:
    """The control for the latency test: the same exchange without latency is prompt."""
    name = "mx.near.test"
    spec = HostSpec(name=name, address=_address(8), behaviour="good", tls=_tls(name))
    async with _fleet(spec) as port:
        started = time.monotonic()
        reader, writer = await _connect(spec.address, port)
        assert (await _line(reader)).startswith(b"220 ")
        writer.write(b"EHLO scanner.test\r\n")
        await _reply(reader)
        writer.write(b"STARTTLS\r\n")
        await _reply(reader)
        await asyncio.wait_for(writer.start_tls(_client_tls(), server_hostname=name), 3)
        assert time.monotonic() - started < 0.3 * 4  # what the latency test waits at least
        _close(writer)


# -- MTA-STS policy hosts -------------------------------------------------------------------

BODY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.slow.test\r\nmax_age: 86400\r\n"


@contextlib.asynccontextmanager
async def _sites(*sites: PolicySite, latency: tuple[float, float] = (0.0, 0.0)) -> AsyncIterator[int]:
    port = _free_port(sites[0].address)
    async with PolicyServerFleet(sites, port, latency=latency):
        yield port


async def _get(address: str, port: int, host: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(address, port, ssl=_client_tls(), server_hostname=host), 3
    )
    writer.write(f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return reader, writer


@_sync
async def test_silent_policy_host_accepts_tcp_and_never_starts_tls() -> None:
    host = "mta-sts.silent.test"
    site = PolicySite(host, _address(20), BODY, "silent", _tls(host))
    async with _sites(site) as port:
        reader, writer = await _connect(site.address, port)  # TCP is up
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(writer.start_tls(_client_tls(), server_hostname=host), 1.0)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.5)
        _close(writer)


@_sync
async def test_slow_policy_body_arrives_in_pieces_over_its_seconds() -> None:
    host = "mta-sts.slow.test"
    site = PolicySite(host, _address(21), BODY, "slow-body", _tls(host), body_seconds=1.2)
    async with _sites(site) as port:
        reader, writer = await _get(site.address, port, host)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"HTTP/1.1 200 ") and f"Content-Length: {len(BODY)}".encode() in head
        started = time.monotonic()
        body = await _not_before(reader.readexactly(len(BODY)), 0.5)  # not there early
        assert body == BODY and time.monotonic() - started >= 1.2 - 0.5 - 0.1
        _close(writer)


@_sync
async def test_policy_latency_delays_the_response_by_a_round_trip() -> None:
    host = "mta-sts.far.test"
    site = PolicySite(host, _address(22), BODY, "ok", _tls(host))
    async with _sites(site, latency=(0.3, 0.0)) as port:
        started = time.monotonic()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(site.address, port, ssl=_client_tls(), server_hostname=host), 3
        )
        assert time.monotonic() - started >= 0.25  # the handshake's flight
        started = time.monotonic()
        writer.write(f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 200 ") and time.monotonic() - started >= 0.25
        assert await asyncio.wait_for(reader.readexactly(len(BODY)), 3) == BODY
        _close(writer)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@_sync
async def test_policy_server_survives_a_client_that_closes_tls_before_asking(tmp_path: Path) -> None:
    """curl rejects a certificate for another name after the handshake and closes with
    close_notify; OpenSSL reads that as b"", which once spun the server's request loop and
    froze its event loop (every SMTP host of the mail process with it)."""
    host = "mta-sts.closer.test"
    site = PolicySite(host, _address(23), BODY, "ok", _tls("another-name.test"))
    root = tmp_path / "root.pem"
    root.write_bytes(PKI.root_pem())
    async with _sites(site) as port:
        curl = await asyncio.create_subprocess_exec(
            *("curl", "-sS", "--max-time", "5", "--cacert", str(root), "-o", os.devnull),
            *("--resolve", f"{host}:{port}:{site.address}", f"https://{host}:{port}/.well-known/mta-sts.txt"),
            stderr=asyncio.subprocess.PIPE,
        )
        _, said = await asyncio.wait_for(curl.communicate(), 10)
        assert curl.returncode == 60, said  # CURLE_PEER_FAILED_VERIFICATION
        await asyncio.sleep(0.2)
        reader, writer = await _get(site.address, port, host)  # the server still answers
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 200 ")
        _close(writer)


# -- the running Internet-like scenario world -------------------------------------------------

WORLD = internet_scenario_world()
HOSTS = {h.name: h for h in WORLD.hosts}


@pytest.fixture(scope="module")
def world() -> Iterator[RunningWorld]:
    """Private: the Internet-like world remembers clients (greylisting), and a test here resets
    and reads its connection counters."""
    with running_world(WorldSpec("internet-scenarios")) as running:
        yield running


def _resolve(world: RunningWorld, name: str, rtype: str) -> tuple[list[str], float]:
    host, _, port = world.endpoints["dns"].rpartition(":")
    query = dns.message.make_query(name, rtype, use_edns=0, payload=1232)
    started = time.monotonic()
    answer = dns.query.udp(query, host, port=int(port), timeout=3)
    took = time.monotonic() - started
    return [rr.to_text() for rrset in answer.answer for rr in rrset], took


async def _banner(address: str, port: int, within: float) -> bytes | type[BaseException]:
    """The first line at ``address``, or the exception class that stopped it."""
    try:
        reader, writer = await _connect(address, port, within=within)
    except (TimeoutError, ConnectionRefusedError) as exc:
        return type(exc)
    try:
        return await _line(reader, within)
    except TimeoutError:
        return TimeoutError
    finally:
        _close(writer)


def test_many_addresses_each_answer_as_their_own_behaviour(world: RunningWorld) -> None:
    host = HOSTS["mx.many-addresses.scenario.test"]
    addresses, took = _resolve(world, host.name, "A")
    assert addresses == [a.address for a in host.smtp_addresses()] and len(addresses) == 40
    assert took >= 0.02  # the profile's 40 ms +/- 10 ms on every DNS reply
    port = world.endpoints["smtp_port"]

    async def probe_all() -> list[bytes | type[BaseException]]:
        return list(await asyncio.gather(*(_banner(a, port, 1.5) for a in addresses[:8])))

    seen = asyncio.run(probe_all())
    want = {"refused": ConnectionRefusedError, "blackhole": TimeoutError, "syn-drop": TimeoutError}
    for got, a in zip(seen, host.smtp_addresses()[:8], strict=True):
        assert a.smtp is not None
        if a.smtp.value == "good":
            assert isinstance(got, bytes) and got.startswith(b"220 "), a
        else:
            assert got is want[a.smtp.value], a


def test_ipv6_silent_host_works_on_ipv4_and_drops_syns_on_its_aaaa(world: RunningWorld) -> None:
    name = "mx.ipv6-silent.scenario.test"
    (ipv4,), _ = _resolve(world, name, "A")
    assert _resolve(world, name, "AAAA")[0] == ["::1"]
    port = world.endpoints["smtp_port"]
    assert isinstance(got := asyncio.run(_banner(ipv4, port, 2)), bytes) and got.startswith(b"220 ")
    assert asyncio.run(_banner("::1", port, 1.5)) is TimeoutError


def test_stats_merged_counts_connections_per_host_and_greylisting(world: RunningWorld) -> None:
    address = HOSTS["mx.greylist.scenario.test"].ipv4
    assert address is not None
    port = world.endpoints["smtp_port"]
    subprocess.run(_testbed("stats", "--reset", world), check=True, capture_output=True, cwd=ROOT)
    first, second = asyncio.run(_banner(address, port, 2)), asyncio.run(_banner(address, port, 2))
    assert isinstance(first, bytes) and first.startswith(b"451 ")
    assert isinstance(second, bytes) and second.startswith(b"220 ")
    out = subprocess.run(_testbed("stats", "--merged", world), check=True, capture_output=True, cwd=ROOT)
    merged = json.loads(out.stdout)
    assert merged["connections"]["mx.greylist.scenario.test"] == 2
    assert merged["greylisted"] == {"mx.greylist.scenario.test": 1}
    assert merged["peak_per_address"][address] == 1 and merged["max_at_once_per_address"] >= 1


def _testbed(command: str, flag: str, world: RunningWorld) -> list[str]:
    return [sys.executable, "-m", "testbed", command, flag, "--state-dir", str(world.state_dir)]
