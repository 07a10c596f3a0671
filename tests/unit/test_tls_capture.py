"""TLS chain capture (probes/tls/capture.py), the one place SMTP STARTTLS and the HTTPS
policy fetch take their client context and the presented chain from.

Handshakes run in memory (two ``ssl.MemoryBIO`` pairs), no sockets."""

from __future__ import annotations

import ast
import functools
import ssl
from pathlib import Path

from probes.smtp.session import client_tls_context
from probes.tls.capture import capture_context, presented_chain
from testbed.pki import IssuedCert, TestPki
from testbed.pkicheck import memory_handshake
from testbed.smtpfleet import server_context

ROOT = Path(__file__).resolve().parents[2]
HOST = "mx.capture.test"


@functools.cache
def pki() -> TestPki:
    return TestPki(label="capture")


def _client(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext) -> ssl.SSLObject:
    return memory_handshake(client_ctx, server_ctx, HOST)


def _served(issued: IssuedCert) -> ssl.SSLContext:
    return server_context(issued.chain_pem, issued.key_pem)


def test_the_capture_context_completes_a_handshake_with_a_certificate_nobody_trusts() -> None:
    """Verification is the pure core's job: an untrusted chain for another name is captured."""
    issued = pki().issue(["other.capture.test"], kind="untrusted-ca")
    client = _client(capture_context(ssl.SSLContext), _served(issued))
    assert client.version() is not None
    assert presented_chain(client) == list(issued.chain_der)


def test_the_presented_chain_is_what_the_server_sent_leaf_first() -> None:
    issued = pki().issue([HOST])
    chain = presented_chain(_client(client_tls_context(), _served(issued)))
    assert chain == [issued.leaf_der, pki().intermediate.der]


def test_nothing_is_presented_before_the_handshake() -> None:
    client = client_tls_context().wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname=HOST)
    assert presented_chain(client) == []


def test_the_capture_context_allows_every_version_and_cipher_and_checks_nothing() -> None:
    ctx = capture_context(ssl.SSLContext)
    assert (ctx.verify_mode, ctx.check_hostname) == (ssl.CERT_NONE, False)
    assert ctx.minimum_version is ssl.TLSVersion.MINIMUM_SUPPORTED
    # SECLEVEL=0: suites a default context refuses (no forward secrecy) stay offered.
    assert "AES128-SHA" in {c["name"] for c in ctx.get_ciphers()}
    assert "AES128-SHA" not in {c["name"] for c in ssl.create_default_context().get_ciphers()}


class _Marked(ssl.SSLContext):
    pass


def test_the_capture_context_is_of_the_class_asked_and_offers_the_alpn_asked() -> None:
    """The policy fetcher's context is a subclass (its wrap_bio hook) offering http/1.1."""
    ctx = capture_context(_Marked, alpn=("http/1.1",))
    assert type(ctx) is _Marked and ctx.verify_mode is ssl.CERT_NONE
    server_ctx = _served(pki().issue([HOST]))
    server_ctx.set_alpn_protocols(["http/1.1"])
    assert _client(ctx, server_ctx).selected_alpn_protocol() == "http/1.1"
    assert _client(capture_context(ssl.SSLContext), server_ctx).selected_alpn_protocol() is None


def _private_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]


PACKAGES = ("engine", "probes", "mxscan", "report", "testbed")


def test_no_module_imports_a_private_name_of_another() -> None:
    """A helper two modules need is public in one place (the HTTPS fetch once took the SMTP
    session's private chain capture)."""
    found = [
        hit
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        for hit in _private_imports(path)
    ]
    assert found == []
