"""OpenSSL as the oracle for DANE-TA path building: every case of
``tests/unit/test_dane_path_building.py`` is presented by a TLS server on 127.0.0.1 and verified
by ``openssl s_client -dane_tlsa_domain … -dane_tlsa_rrdata …`` (the DANE code Postfix uses,
SSL_dane_enable / SSL_dane_tlsa_add) at the table's time (``-attime``).  OpenSSL's verdict,
depth and error must be the table's, so the table mxscan is held to is OpenSSL's behaviour,
not a belief about it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import load_der_x509_certificate

from tests.unit.test_dane_path_building import CASES, HOST, NO_CHAIN, NOW, VALIDITY, PathCase, world

OPENSSL = shutil.which("openssl")
#: OpenSSL's verification errors (X509_verify_cert_error_string) -> mxscan's miss.
ERRORS = {
    "certificate has expired": VALIDITY,
    "certificate is not yet valid": VALIDITY,
    "unable to get local issuer certificate": NO_CHAIN,
}
_DEPTH = re.compile(
    r"^DANE TLSA \d \d \d \S+ (?:matched TA certificate|signed the certificate) at depth (\d+)$", re.M
)
_ERROR = re.compile(r"^Verification error: (.+)$", re.M)


async def _openssl_verdict(case: PathCase, tmp: Path) -> tuple[int | None, str | None]:
    """(depth, None) when OpenSSL's DANE verification passes, else (None, its error text)."""
    chain = tmp / "chain.pem"
    chain.write_bytes(
        b"".join(load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM) for d in case.chain())
    )
    key = tmp / "leaf.key"
    key.write_bytes(
        world().leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)  # the extra certificates are sent in file order

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    async with server:
        port = server.sockets[0].getsockname()[1]
        client = await asyncio.create_subprocess_exec(
            OPENSSL or "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            HOST,
            "-dane_tlsa_domain",
            HOST,
            "-dane_tlsa_rrdata",
            case.record().text,
            "-attime",
            str(int(NOW.timestamp())),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(client.communicate(), 30)
    text = out.decode(errors="replace")
    if "Verification: OK" in text:
        depth = _DEPTH.search(text)
        assert depth is not None, text
        return int(depth.group(1)), None
    error = _ERROR.search(text)
    assert error is not None, text
    return None, error.group(1)


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_openssl_builds_the_path_the_table_says(case: PathCase, tmp_path: Path) -> None:
    depth, error = asyncio.run(_openssl_verdict(case, tmp_path))
    assert depth == case.depth
    assert (None if error is None else ERRORS.get(error, error)) == case.miss
