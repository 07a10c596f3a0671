"""A mail server whose certificates carry ~100 KB of text, some of it line separators:
the host line stays one line under the line cap and says what was cut (issue 13, item 14).

The server is a small STARTTLS server written here, on a loopback address, presenting
two self-made certificates of ~45 KB each (the client accepts a chain up to OpenSSL's
100 KiB default): 850 long subjectAltNames each, and a subject of 60 attributes
holding U+2028, U+2029, U+0085 and an ANSI escape.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ssl
from pathlib import Path

import jsonschema
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.peertext import TRUNCATION_MARK
from engine.records import MAX_LINE_BYTES, decode
from mxscan.schema import schema
from probes.domain import HostRecord, host_line
from probes.smtp.probe import SmtpProber, SmtpSettings
from probes.smtp.records import SmtpResult
from probes.smtp.session import SmtpTimeouts
from probes.tls.certs import NAME_TEXT_LIMIT
from probes.tls.truststore import load_trust_store
from probes.tls.verify import Verifier

HOST = "mx.hostile-names.smtp.test"
ADDRESS = "127.113.14.1"
NAMES_PER_CERT = 850
#: Characters str.splitlines splits on that JSON does not escape by itself, and a terminal escape.
HOSTILE = "\u2028\u2029\x85\x1b[0m"


def _certificate(index: int, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, HOST)]
        + [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit {i} {HOSTILE}") for i in range(60)]
    )
    names = [x509.DNSName(HOST)] + [
        x509.DNSName(f"n{index}-{i:04d}.a-long-label-that-pads-every-name.example")
        for i in range(NAMES_PER_CERT)
    ]
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )


async def _smtp_session(
    ctx: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """EHLO, STARTTLS, EHLO, QUIT: just enough SMTP for the probe to reach the certificates."""
    writer.write(f"220 {HOST} ESMTP\r\n".encode())
    tls = False
    while line := await reader.readline():
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            writer.write(f"250-{HOST}\r\n250 {'PIPELINING' if tls else 'STARTTLS'}\r\n".encode())
        elif verb == b"STAR" and not tls:
            writer.write(b"220 ready\r\n")
            await writer.drain()
            await writer.start_tls(ctx)
            tls = True
            continue
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            break
        else:
            writer.write(b"502 not here\r\n")
        await writer.drain()
    writer.close()


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> SmtpResult:
    key = ec.generate_private_key(ec.SECP256R1())
    certs = [_certificate(i, key) for i in range(2)]
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    assert 80_000 < sum(len(c.public_bytes(serialization.Encoding.DER)) for c in certs) < 100 * 1024
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    directory = Path(tmp_path_factory.mktemp("hostile"))
    (directory / "chain.pem").write_bytes(chain_pem)
    (directory / "key.pem").write_bytes(key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(directory / "chain.pem", directory / "key.pem")
    trust = load_trust_store("none", [str(directory / "chain.pem")])

    async def main() -> SmtpResult:
        server = await asyncio.start_server(functools.partial(_smtp_session, ctx), ADDRESS, 0)
        async with server:
            settings = SmtpSettings(
                ehlo_name="scanner.mxscan.test",
                verifier=Verifier(trust),
                port=server.sockets[0].getsockname()[1],
                timeouts=SmtpTimeouts(connect=5.0, banner=5.0, command=5.0, handshake=10.0, quit=1.0),
            )
            prober = SmtpProber(settings, now=lambda: dt.datetime.now(dt.UTC))
            return (await prober.probe(HOST, ADDRESS)).result

    return asyncio.run(main())


def test_certificate_subjects_are_bounded_and_escaped_where_they_are_read(probed: SmtpResult) -> None:
    assert probed.tls is not None and probed.tls.chain.presented == 2 and len(probed.tls.chain.certs) == 2
    for facts in probed.tls.chain.certs:
        assert len(facts.subject) == NAME_TEXT_LIMIT and facts.subject.endswith(TRUNCATION_MARK)
        assert "\\x1b[0m" in facts.subject and "\x1b" not in facts.subject and "\x85" not in facts.subject
        assert "\u2028" in facts.subject  # kept as sent: the line encoder escapes it
        assert len(facts.san_dns) == NAMES_PER_CERT + 1


def test_a_host_line_with_100_kb_of_peer_text_stays_one_line_under_the_cap(probed: SmtpResult) -> None:
    whole = orjson.dumps(HostRecord(2, "ref", probed))
    assert len(whole) > 90_000  # what the line would have been
    line = host_line(probed)
    assert len(line) <= MAX_LINE_BYTES
    assert len(line.decode("utf-8").splitlines()) == 1
    value = orjson.loads(line)
    jsonschema.validate(value, schema())
    assert value["truncated"] == ["smtp.tls.chain.certs[].san_dns"]
    got = decode(HostRecord, value)
    assert got.ref == f"smtp:{HOST}@{ADDRESS}:{probed.port}" and got.smtp.banner == probed.banner
    assert probed.tls is not None and got.smtp.tls is not None
    for kept, sent in zip(got.smtp.tls.chain.certs, probed.tls.chain.certs, strict=True):
        assert 0 < len(kept.san_dns) < len(sent.san_dns) and kept.san_dns == sent.san_dns[: len(kept.san_dns)]
        assert kept.subject == sent.subject  # short strings survive the cut whole
