"""Tier (a) DNS: a validating recursive resolver endpoint for the world, over UDP and TCP.

Theory of operation
-------------------
The answers come from ``zones.WorldIndex.resolve``: DNSSEC validation is
*simulated* from the world definition (AD when every zone involved is signed,
SERVFAIL + EDE 6 for bogus zones unless CD=1); no signatures exist in tier (a).
Tier (b) (NSD + unbound) validates real signatures.

Speed: a query's question section is parsed by hand (``parse_query``), and the
reply is built once per (qname, qtype, flag variant) by a small encoder
(``encode_reply``; dnspython only for unusual types), memoised
as wire bytes, and served by patching in the query's ID and question bytes
(which also preserves 0x20 case randomisation).  The memo is bounded.
``warm`` builds the replies to the questions a mail scan asks, as a stub asks
them, before the server reports ready (an authoritative server compiles its
zones before it answers): a memoised reply costs ~8 us, a first one ~45 us,
on the cores the scan being measured shares.

EDNS0 (RFC 6891): the reply carries OPT when the query did; UDP replies larger
than the client's payload size (512 without OPT) are sent empty with TC=1, and
the client retries over TCP (2-byte length framing, RFC 1035 §4.2.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
import sys
from collections.abc import Callable, Iterable
from typing import NamedTuple

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from testbed.world import World
from testbed.zones import TTL, Resolution, TlsaData, WorldIndex, placeholder_tlsa_data

__all__ = ["DnsServer", "Query", "encode_reply", "parse_query", "serve_dns"]

#: Our own EDNS payload size (DNS Flag Day 2020 recommendation).
SERVER_PAYLOAD = 1232
#: Bound on memoised replies (~0.4 KB each); cleared wholesale when full (cheap, and rare
#: below 2M names).
MEMO_MAX = 2_000_000
#: ``warm`` builds at most this many replies before ready (~390 MB and ~40 s of CPU at the
#: bound; a 100k world asks ~480k questions: 186 MB, ~19 s); a 1M world's (~4.8M) are built
#: on first use.  Half the memo, so that serving does not clear what was built.
WARM_MAX = MEMO_MAX // 2
#: The query a stub sends a validating resolver (RFC 6840 §5.7): RD and AD set, EDNS(0)
#: with our payload, DO clear; its replies are the ones ``warm`` builds.
_STUB_FLAGS = 0x0100 | 0x0020
#: TCP: close a connection idle this long (seconds); cap on one connection's buffered bytes.
TCP_IDLE = 30.0
TCP_BUFFER_MAX = 65537 * 4
_OPT, _IN = 41, 1
_HEADER = struct.Struct("!HHHHHH")
#: Printable ASCII except "." and space: the bytes a question label may hold here.
_LABEL_BYTES = bytes(b for b in range(0x21, 0x7F) if b != 0x2E)
_DNSSEC_FAIL = "DNSSEC Bogus"


class Query(NamedTuple):
    qid: int
    flags: int
    #: The question name in wire form, lowercased (ASCII), and the question's end offset.
    qname: bytes
    qtype: int
    qclass: int
    qend: int
    #: EDNS UDP payload size, None without OPT; DO bit.
    payload: int | None
    do: bool


def parse_query(data: bytes) -> Query | None:
    """The question and EDNS facts of a query; None for anything we do not answer."""
    if len(data) < 17:
        return None
    qid, flags, qd, _an, _ns, ar = _HEADER.unpack_from(data)
    if flags & 0x8000 or (flags >> 11) & 0xF or qd != 1:
        return None  # a response, not QUERY, or not exactly one question
    i = 12
    while True:
        if i >= len(data):
            return None
        n = data[i]
        if n == 0:
            break
        if n & 0xC0 or i + n + 1 > 12 + 255:
            return None  # compression in the question or an over-long name
        if data[i + 1 : i + 1 + n].translate(None, _LABEL_BYTES):
            return None  # bytes no world name has (dots, spaces, non-ASCII): nothing to answer
        i += n + 1
    qend = i + 5
    if qend > len(data):
        return None
    qtype, qclass = struct.unpack_from("!HH", data, i + 1)
    payload, do = None, False
    # The OPT record is the first additional record in every client we know (root owner, type 41).
    if ar and qend + 11 <= len(data) and data[qend] == 0:
        rtype, size, ttl = struct.unpack_from("!HHI", data, qend + 1)
        if rtype == _OPT:
            payload, do = max(size, 512), bool(ttl & 0x8000)
    return Query(qid, flags, data[12 : i + 1].lower(), qtype, qclass, qend, payload, do)


def _qname_text(wire: bytes) -> str:
    labels, i = [], 0
    while wire[i]:
        labels.append(wire[i + 1 : i + 1 + wire[i]].decode("ascii", "replace"))
        i += wire[i] + 1
    return ".".join(labels)


class DnsServer:
    """Answers wire queries for one world; transport-free, so it can be driven by tests."""

    def __init__(
        self,
        world: World,
        *,
        rtt: float = 0.0,
        jitter: float = 0.0,
        blackhole: float = 0.0,
        seed: int = 0,
        tlsa_data: TlsaData = placeholder_tlsa_data,
    ) -> None:
        self.index = WorldIndex(world, tlsa_data)
        self.rtt, self.jitter, self.blackhole = rtt, jitter, blackhole
        self._rng = random.Random(seed)  # deterministic loss and delay sequence
        self._memo: dict[tuple[object, ...], bytes | None] = {}
        self.stats = {"queries": 0, "memo_hits": 0, "dropped": 0, "truncated": 0, "malformed": 0, "errors": 0}

    def warm(self, questions: Iterable[tuple[str, str]], limit: int = WARM_MAX) -> int:
        """Build the replies to ``questions`` (name, type) now, as a stub would ask them; returns
        how many were built, 0 when there are more than ``limit`` (then each is built on first use).

        Why: building a reply costs ~45 us of Python, once per name; an authoritative server
        compiles its zones before it answers, and the world shares its cores with the scan
        being measured, so the building belongs before ready, not inside the measurement.
        """
        wanted = list(itertools.islice(questions, limit + 1))
        if len(wanted) > limit:
            return 0
        before = dict(self.stats)
        opt = b"\0" + struct.pack("!HHIH", _OPT, SERVER_PAYLOAD, 0, 0)
        for name, rtype in wanted:
            query = bytearray(_HEADER.pack(0, _STUB_FLAGS, 1, 0, 0, 1))
            try:
                _name_wire(query, {}, name)
                query += struct.pack("!HH", _type_code(rtype), _IN)
            except (UnicodeError, ValueError, dns.exception.DNSException):
                continue  # a name no query can carry here: parse_query would refuse it too
            self.reply(bytes(query) + opt, tcp=False)
        self.stats = before  # the counters describe what was served
        return len(wanted)

    def delay(self) -> float | None:
        """Seconds to hold a reply (None: drop it), following --rtt/--jitter/--blackhole."""
        if self.blackhole and self._rng.random() < self.blackhole:
            return None
        if not self.rtt and not self.jitter:
            return 0.0
        return max(0.0, self.rtt + self._rng.uniform(-self.jitter, self.jitter))

    def reply(self, data: bytes, tcp: bool) -> bytes | None:
        self.stats["queries"] += 1
        q = parse_query(data)
        if q is None:
            self.stats["malformed"] += 1
            return None
        rd, cd, ad = q.flags & 0x0100, q.flags & 0x0010, q.flags & 0x0020
        key = (q.qname, q.qtype, q.qclass, rd, cd, bool(ad) or q.do, q.do, q.payload is not None)
        wire = self._memo.get(key, b"")
        if wire == b"":
            if len(self._memo) >= MEMO_MAX:
                self._memo.clear()
            try:
                wire = self._memo[key] = self._build(q, key)
            except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
                # A name dnspython cannot render, or a world record that does not parse (a bug
                # in the world): no answer, and a line in the server log saying which.
                self.stats["errors"] += 1
                print(f"dns: cannot answer {_qname_text(q.qname)!r}/{q.qtype}: {exc!r}", file=sys.stderr)
                return None
        else:
            self.stats["memo_hits"] += 1
        if wire is None:
            self.stats["dropped"] += 1
            return None
        limit = (q.payload or 512) if not tcp else 65535
        if len(wire) > limit:
            self.stats["truncated"] += 1
            tkey = (*key, "tc")
            twire = self._memo.get(tkey)
            if twire is None:
                twire = self._memo[tkey] = self._build(q, key, truncated=True) or b""
            wire = twire
        return struct.pack("!H", q.qid) + wire[2:12] + data[12 : q.qend] + wire[q.qend :]

    def _build(self, q: Query, key: tuple[object, ...], truncated: bool = False) -> bytes | None:
        rd, cd, want_ad = bool(key[3]), bool(key[4]), bool(key[5])
        if q.qclass != _IN:
            res = Resolution(5)
        else:
            rtype = _TYPE_NAMES.get(q.qtype) or dns.rdatatype.to_text(dns.rdatatype.RdataType.make(q.qtype))
            res = self.index.resolve(_qname_text(q.qname), rtype, cd)
            if res.drop:
                return None
        flags = 0x8000 | 0x0080 | (0x0100 if rd else 0) | (0x0010 if cd else 0) | (0x0200 if truncated else 0)
        if res.secure and want_ad and res.rcode in (0, 3):
            flags |= 0x0020
        edns = (q.do, res.ede) if q.payload is not None else None
        return encode_reply(flags | res.rcode, q.qname, q.qtype, q.qclass, res, edns, truncated)


_TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 52: "TLSA"}
_TYPE_CODES = {v: k for k, v in _TYPE_NAMES.items()}


def _type_code(rtype: str) -> int:
    return _TYPE_CODES.get(rtype) or dns.rdatatype.from_text(rtype)


def encode_reply(
    flags: int,
    qname: bytes,
    qtype: int,
    qclass: int,
    res: Resolution,
    edns: tuple[bool, int | None] | None,
    truncated: bool = False,
) -> bytes:
    """A reply in wire form, ID 0 (patched per query).  ``edns``: (DO, EDE code) or None.

    Names are compressed against earlier names (RFC 1035 §4.1.4), so answers
    whose owner is the question cost two bytes per owner, as from real servers.
    """
    out = bytearray()
    sections = ((), ()) if truncated else (res.answer, res.authority)
    out += _HEADER.pack(0, flags, 1, len(sections[0]), len(sections[1]), 1 if edns else 0)
    out += qname + struct.pack("!HH", qtype, qclass)
    seen: dict[str, int] = {}
    _remember(seen, _qname_text(qname), 12)
    for section in sections:
        for rr in section:
            _name_wire(out, seen, rr.name)
            code = _type_code(rr.rtype)
            out += struct.pack("!HHI", code, _IN, TTL)
            at = len(out)
            out += b"\0\0"
            _rdata_wire(out, seen, rr.rtype, rr.rdata)
            struct.pack_into("!H", out, at, len(out) - at - 2)
    if edns is not None:
        do, ede = edns
        opt = b""
        if ede is not None:
            text = _DNSSEC_FAIL.encode()
            opt = struct.pack("!HHH", 15, 2 + len(text), ede) + text  # RFC 8914 §2
        out += b"\0" + struct.pack("!HHIH", _OPT, SERVER_PAYLOAD, 0x8000 if do else 0, len(opt)) + opt
    return bytes(out)


def _remember(seen: dict[str, int], name: str, offset: int) -> None:
    labels = name.split(".") if name else []
    for i in range(len(labels)):
        suffix = ".".join(labels[i:])
        if suffix in seen:
            return
        seen[suffix] = offset
        offset += len(labels[i]) + 1


def _name_wire(out: bytearray, seen: dict[str, int], name: str) -> None:
    name = name.rstrip(".").lower()
    labels = name.split(".") if name else []
    for i in range(len(labels)):
        suffix = ".".join(labels[i:])
        pointer = seen.get(suffix)
        if pointer is not None:
            out += struct.pack("!H", 0xC000 | pointer)
            return
        if len(out) < 0x3FFF:
            seen[suffix] = len(out)
        raw = labels[i].encode("ascii")
        out += bytes((len(raw),)) + raw
    out += b"\0"


def _rdata_wire(out: bytearray, seen: dict[str, int], rtype: str, rdata: str) -> None:
    if rtype == "A":
        out += socket.inet_aton(rdata)
    elif rtype == "AAAA":
        out += socket.inet_pton(socket.AF_INET6, rdata)
    elif rtype == "MX":
        pref, _, host = rdata.partition(" ")
        out += struct.pack("!H", int(pref))
        _name_wire(out, seen, host)
    elif rtype in ("CNAME", "NS", "PTR"):
        _name_wire(out, seen, rdata)
    elif rtype == "SOA":
        mname, rname, *numbers = rdata.split()
        _name_wire(out, seen, mname)
        _name_wire(out, seen, rname)
        out += struct.pack("!IIIII", *(int(n) for n in numbers))
    elif rtype == "TXT":
        for chunk in _txt_strings(rdata):
            out += bytes((len(chunk),)) + chunk
    elif rtype == "TLSA":
        usage, selector, mtype, data = rdata.split(None, 3)
        out += struct.pack("!BBB", int(usage), int(selector), int(mtype))
        out += bytes.fromhex(data.replace(" ", ""))
    else:
        out += dns.rdata.from_text(dns.rdataclass.IN, rtype, rdata).to_digestable()


def _txt_strings(rdata: str) -> list[bytes]:
    """The character-strings of a TXT in presentation form ("a" "b", backslash escapes)."""
    strings: list[bytes] = []
    i = 0
    while i < len(rdata):
        if rdata[i] == " ":
            i += 1
            continue
        buf: list[str] = []
        if rdata[i] == '"':
            i += 1
            while i < len(rdata) and rdata[i] != '"':
                if rdata[i] == "\\":
                    i += 1
                buf.append(rdata[i])
                i += 1
            i += 1
        else:
            while i < len(rdata) and rdata[i] != " ":
                buf.append(rdata[i])
                i += 1
        raw = "".join(buf).encode()
        strings.extend(raw[j : j + 255] for j in range(0, max(len(raw), 1), 255))
    return strings


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        wire = self.server.reply(data, tcp=False)
        if wire is None or self.transport is None:
            return
        delay = self.server.delay()
        if delay is None:
            self.server.stats["dropped"] += 1
        elif delay:
            asyncio.get_running_loop().call_later(delay, self.transport.sendto, wire, addr)
        else:
            self.transport.sendto(wire, addr)


class _Tcp(asyncio.Protocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._arm()

    def _arm(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        if self.transport is not None:
            self.idle = asyncio.get_running_loop().call_later(TCP_IDLE, self.transport.close)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        if len(self.buf) > TCP_BUFFER_MAX:
            self.transport.close()
            return
        self._arm()
        while len(self.buf) >= 2:
            (size,) = struct.unpack_from("!H", self.buf)
            if len(self.buf) < 2 + size:
                break
            msg, self.buf = self.buf[2 : 2 + size], self.buf[2 + size :]
            wire = self.server.reply(msg, tcp=True)
            if wire is not None:
                self.transport.write(struct.pack("!H", len(wire)) + wire)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()


async def serve_dns(
    server: DnsServer, host: str, port: int, ready: Callable[[int], None] | None = None
) -> None:
    """Serve UDP and TCP on (host, port) until cancelled; port 0 picks a port free for both."""
    loop = asyncio.get_running_loop()
    for _attempt in range(20):
        udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(server), local_addr=(host, port))
        # A scanner keeps ~1,000 queries in flight: with the default 208 KiB receive buffer
        # a burst overflows it and the kernel drops queries (RcvbufErrors), which the
        # scanner then sees as timeouts that no real resolver would cause.
        with contextlib.suppress(OSError):
            udp.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        chosen = udp.get_extra_info("sockname")[1]
        try:
            tcp = await loop.create_server(lambda: _Tcp(server), host, chosen, reuse_address=True)
            break
        except OSError:
            udp.close()
            if port:
                raise
    else:
        raise OSError(f"no port free for both UDP and TCP on {host}")
    if ready is not None:
        ready(chosen)
    try:
        await asyncio.Event().wait()
    finally:
        tcp.close()
        udp.close()
