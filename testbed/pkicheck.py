"""How OpenSSL sees a chain: oracles the tests hold mxscan's PKIX verdicts against.

``ssl_handshake``: Python's ssl module (OpenSSL, verification on, check_hostname),
a full in-memory handshake.  ``openssl_verify``: the ``openssl verify`` command at
a given time.  ``memory_handshake``: a handshake between any two contexts in memory,
for tests that look at what the client saw.  Part of the world, not of the scanner:
imports nothing of mxscan's.
"""

from __future__ import annotations

import datetime as dt
import ssl
import subprocess
import tempfile
from pathlib import Path

from testbed.pki import IssuedCert

__all__ = ["memory_handshake", "openssl_verify", "ssl_handshake"]


def memory_handshake(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, server_name: str
) -> ssl.SSLObject:
    """The client side of a TLS handshake between two contexts joined by MemoryBIOs (no
    sockets), after the flights a TLS 1.2 or 1.3 handshake needs; a side's ssl error
    propagates."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_name)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for obj in (client, server):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    return client


def ssl_handshake(issued: IssuedCert, root_pem: bytes, host: str) -> tuple[bool, str]:
    """Whether Python's ssl module (OpenSSL, verification on, check_hostname) accepts
    ``issued`` for ``host`` with ``root_pem`` trusted, at the current time.

    A full in-memory handshake: a server SSLObject presenting ``issued.chain_pem``
    and a client SSLObject, joined by MemoryBIOs (no sockets).  Returns
    (accepted, OpenSSL's verify message or "").
    """
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        chain_path, key_path = issued.save(tmp, "server")
        server_ctx.load_cert_chain(chain_path, key_path)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    client_ctx.load_verify_locations(cadata=root_pem.decode("ascii"))
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=host)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):  # a TLS 1.3 handshake needs ~3 flights
        for side, obj in (("client", client), ("server", server)):
            if done[side]:
                continue
            try:
                obj.do_handshake()
                done[side] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as exc:
                return False, exc.verify_message or str(exc)
            except ssl.SSLError as exc:
                if side == "client":
                    return False, str(exc)
                done[side] = True  # the server saw the client's alert; the client decides
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if done["client"] and done["server"]:
            return True, ""
    return done["client"], "handshake did not finish"


def openssl_verify(issued: IssuedCert, root_pem: bytes, host: str, at: dt.datetime) -> tuple[bool, str]:
    """Whether `openssl verify -CAfile root -untrusted chain -verify_hostname host -attime T leaf`
    accepts ``issued``.  Returns (accepted, OpenSSL's output)."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "root.pem").write_bytes(root_pem)
        (d / "chain.pem").write_bytes(issued.chain_pem)
        (d / "leaf.pem").write_bytes(issued.leaf_pem)
        run = subprocess.run(
            [
                "openssl",
                "verify",
                "-CAfile",
                str(d / "root.pem"),
                "-untrusted",
                str(d / "chain.pem"),
                "-verify_hostname",
                host,
                "-attime",
                str(int(at.timestamp())),
                str(d / "leaf.pem"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    return run.returncode == 0, " ".join((run.stdout + run.stderr).split())
