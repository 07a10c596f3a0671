"""The STARTTLS switch's pure core: the preamble before the server's first TLS record
(RFC 3207 §4.2) and a TLS client over memory BIOs, driven here against an in-memory
server, so every split of the bytes can be tried without a network."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.smtp.session import client_tls_context
from probes.smtp.starttls import Preamble, TlsClient
from testbed.pki import TestPki
from testbed.smtpfleet import server_context

SERVER_HELLO = b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03"
ALERT = b"\x15\x03\x03\x00\x02\x02\x28"

# name, bytes before the first record, bytes discarded
PREAMBLES = [
    ("none", b"", 0),
    ("junk-line", b"JUNK\r\n", 6),
    ("fake-reply", b"250 2.0.0 injected\r\n", 20),
    ("no-line-end", b"hello", 5),
    ("lone-22-is-not-a-header", b"\x16x\r\n", 4),
    ("22-then-version-2", b"\x16\x02", 2),
    ("nul-bytes", b"\x00" * 10, 10),
]


@pytest.mark.parametrize("first", [SERVER_HELLO, ALERT], ids=["server-hello", "alert"])
@pytest.mark.parametrize(("name", "before", "discarded"), PREAMBLES, ids=[p[0] for p in PREAMBLES])
def test_the_preamble_discards_what_precedes_the_first_record(
    name: str, before: bytes, discarded: int, first: bytes
) -> None:
    preamble = Preamble()
    assert preamble.feed(before + first + b"tail") == first + b"tail"
    assert preamble.discarded == discarded and preamble.injected is bool(discarded) and preamble.tls
    assert preamble.feed(b"JUNK\r\n") == b"JUNK\r\n"  # from the first record on, everything is TLS


@given(st.binary(max_size=200), st.sampled_from([SERVER_HELLO, ALERT]), st.data())
def test_the_preamble_does_not_depend_on_how_the_bytes_were_split(
    before: bytes, first: bytes, data: st.DataObject
) -> None:
    whole = before + first
    cuts = sorted(data.draw(st.lists(st.integers(0, len(whole)), max_size=8)))
    chunks = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
    one, split = Preamble(), Preamble()
    together = one.feed(whole)
    apart = b"".join(split.feed(chunk) for chunk in chunks)
    assert together == apart and one.discarded == split.discarded
    # what is kept starts at the first header; everything before it is counted as discarded
    assert together.startswith((b"\x15\x03", b"\x16\x03")) and one.discarded == len(whole) - len(together)


def test_bytes_without_a_record_are_all_discarded_and_none_held_beyond_one() -> None:
    preamble = Preamble()
    for _ in range(1000):
        assert preamble.feed(b"x" * 1000 + b"\x16") == b""
    assert preamble.discarded == 1000 * 1001 - 1 and preamble.injected and not preamble.tls


@pytest.fixture(scope="module")
def server_ctx() -> ssl.SSLContext:
    issued = TestPki().issue(["mx.memory.test"], kind="valid")
    return server_context(issued.chain_pem, issued.key_pem)


@pytest.mark.parametrize("early", [0, 3, 6], ids=lambda n: f"{n}-early")  # before our ClientHello
@pytest.mark.parametrize("cut", [1, 5, 9], ids=lambda n: f"cut-{n}")  # the rest of the flight, split
def test_tls_client_completes_a_handshake_behind_injected_plaintext(
    server_ctx: ssl.SSLContext, early: int, cut: int
) -> None:
    injected = b"JUNK\r\n"
    client = TlsClient(client_tls_context(), "mx.memory.test")
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    assert client.receive(injected[:early]) == b""
    s_in.write(client.start())
    with pytest.raises(ssl.SSLWantReadError):
        server.do_handshake()
    flight = injected[early:] + s_out.read()
    assert client.receive(flight[:cut]) == b"" and client.receive(flight[cut:]) == b""
    assert client.established and client.preamble.discarded == len(injected)
    s_in.write(client.outgoing())  # the client's Finished
    server.do_handshake()
    server.write(b"250 hello\r\n")
    assert client.receive(s_out.read()) == b"250 hello\r\n"
    s_in.write(client.encrypt(b"QUIT\r\n"))
    assert server.read(100) == b"QUIT\r\n"


def test_tls_client_refuses_garbage_behind_a_record_header() -> None:
    client = TlsClient(client_tls_context(), "mx.memory.test")
    assert client.start()  # the ClientHello
    with pytest.raises(ssl.SSLError):
        client.receive(b"\x16\x03\x03\x00\x10not a handshake!")
    assert not client.established
