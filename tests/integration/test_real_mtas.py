"""The SMTP probe against real Postfix and Exim from Debian 12, each a private
instance on its own 127.x address: the results must be exactly what each
server's configuration implies (issue 4's acceptance), and OpenSSL's own
STARTTLS client must see the same session.

Skipped only when the servers cannot be installed here (not root, no apt);
CI runs as root, so there they always run.  The first run installs Postfix
and unpacks Exim (tens of seconds); later runs reuse both.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.status import Status
from probes.smtp.probe import SmtpProbe, SmtpProber, SmtpSettings
from probes.smtp.records import Phase, Starttls
from probes.smtp.session import SmtpTimeouts
from probes.tls.truststore import load_trust_store
from probes.tls.verify import IntermediatePool, PkixReason, Verifier
from testbed.pki import IssuedCert, TestPki
from testbed.realmta import EximInstance, PostfixInstance, RealMtas, install_blocker, install_real_mtas
from testbed.realmta.install import pid_alive

PORT = 2525
EHLO_NAME = "scanner.mxscan.test"
TIMEOUTS = SmtpTimeouts(connect=5.0, banner=10.0, command=10.0, handshake=10.0, quit=2.0)


@dataclass(frozen=True)
class Case:
    software: str  # "Postfix" or "Exim": what the banner names
    address: str
    cert: str | None  # the test-PKI kind it presents, None for no TLS
    reason: PkixReason | None  # what PKIX verification must conclude

    def host(self, name: str) -> str:
        return f"mx.{name}.realmta.test"


CASES = {
    "postfix-valid": Case("Postfix", "127.99.25.1", "valid", PkixReason.OK),
    "postfix-no-tls": Case("Postfix", "127.99.25.2", None, None),
    "postfix-expired": Case("Postfix", "127.99.25.3", "expired", PkixReason.EXPIRED),
    "exim-valid": Case("Exim", "127.99.25.4", "valid", PkixReason.OK),
    "exim-no-tls": Case("Exim", "127.99.25.5", None, None),
}

#: What Debian 12's builds advertise with our configs, STARTTLS aside (Exim's
#: PIPECONNECT and SMTPUTF8 are on by default in 4.96 as Debian builds it).
USUAL_EXTENSIONS = {
    "Postfix": {"PIPELINING", "SIZE", "VRFY", "ETRN", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN"}
    | {"SMTPUTF8", "CHUNKING"},
    "Exim": {"SIZE", "8BITMIME", "PIPELINING", "PIPECONNECT", "CHUNKING", "SMTPUTF8", "HELP"},
}


@dataclass
class World:
    mtas: RealMtas
    pki: TestPki
    ca_file: Path
    issued: dict[str, IssuedCert]
    probes: dict[str, SmtpProbe]
    state: Path


@pytest.fixture(scope="module")
def mtas() -> RealMtas:
    blocker = install_blocker()
    if blocker:
        pytest.skip(f"cannot install Postfix and Exim here: {blocker}")
    return install_real_mtas()


def _state_dir() -> Path:
    # Exim runs as Debian-exim, which must reach its spool: a world-searchable
    # directory of our own (pytest's tmp_path is 0700 root).
    base = Path(tempfile.mkdtemp(prefix="mxscan-realmta-"))
    base.chmod(0o755)
    return base


def _instance(
    mtas: RealMtas, name: str, issued: IssuedCert | None, state: Path
) -> PostfixInstance | EximInstance:
    case = CASES[name]
    chain, key = (issued.chain_pem, issued.key_pem) if issued else (None, None)
    if case.software == "Postfix":
        return PostfixInstance(
            case.address, PORT, case.host(name), chain, key, state / name, postfix_binary=mtas.postfix
        )
    return EximInstance(case.address, PORT, case.host(name), chain, key, state / name, exim_binary=mtas.exim)


@pytest.fixture(scope="module")
def world(mtas: RealMtas) -> Iterator[World]:
    pki = TestPki()
    state = _state_dir()
    ca_file = state / "ca.pem"
    ca_file.write_bytes(pki.root_pem())
    issued = {name: pki.issue([case.host(name)], kind=case.cert) for name, case in CASES.items() if case.cert}
    settings = SmtpSettings(
        ehlo_name=EHLO_NAME,
        verifier=Verifier(
            load_trust_store("none", [str(ca_file)]), IntermediatePool.from_der([pki.intermediate.der])
        ),
        port=PORT,
        timeouts=TIMEOUTS,
    )

    async def probe_all() -> dict[str, SmtpProbe]:
        prober = SmtpProber(settings, now=lambda: dt.datetime.now(dt.UTC))
        names = sorted(CASES)
        found = await asyncio.gather(*(prober.probe(CASES[n].host(n), CASES[n].address) for n in names))
        return dict(zip(names, found, strict=True))

    instances = [_instance(mtas, name, issued.get(name), state) for name in CASES]
    try:
        # Side by side, started and stopped in parallel (postfix start spends ~2 s in its checks).
        with ThreadPoolExecutor(len(instances)) as pool:
            list(pool.map(lambda instance: instance.start(), instances))
        yield World(mtas, pki, ca_file, issued, asyncio.run(probe_all()), state)
    finally:
        with ThreadPoolExecutor(len(instances)) as pool:
            list(pool.map(lambda instance: instance.stop(), instances))
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_probe_sees_what_the_config_implies(name: str, world: World) -> None:
    case, probe = CASES[name], world.probes[name]
    got = probe.result
    assert (got.status, got.phase, got.attempts) == (Status.SUCCESS, Phase.DONE, 1), got.detail
    assert got.banner_code == 220 and case.software in got.banner and case.host(name) in got.banner
    assert got.ehlo is not None and got.ehlo.greeting_name == case.host(name)
    assert got.ehlo.starttls is (case.cert is not None)
    assert not got.plaintext_injection
    if case.cert is None:
        assert got.starttls is Starttls.NO
        assert "STARTTLS" not in got.ehlo.extensions
        assert (got.tls, got.pkix, got.ehlo_tls, probe.chain_der) == (None, None, None, ())
        return
    assert got.starttls is Starttls.YES
    # Both servers run OpenSSL 3 / GnuTLS 3.7 with TLS 1.3 enabled by default.
    assert got.tls is not None and got.tls.version == "TLSv1.3" and got.tls.cipher.startswith("TLS_")
    # The chain presented is exactly the configured one: leaf + issuing CA.
    configured = world.issued[name].chain_der
    assert probe.chain_der == configured
    assert got.tls.chain.presented == 2
    assert [c.sha256 for c in got.tls.chain.certs] == [hashlib.sha256(d).hexdigest() for d in configured]
    assert got.tls.chain.certs[0].san_dns == (case.host(name),)
    assert got.pkix is not None and got.pkix.reason is case.reason
    assert got.pkix.valid is (case.reason is PkixReason.OK)
    # RFC 3207 §4.2: after TLS the EHLO must work and STARTTLS is no longer offered.
    assert got.ehlo_tls is not None and got.ehlo_tls.code == 250 and not got.ehlo_tls.starttls
    assert got.ehlo_tls.greeting_name == case.host(name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_server_advertises_its_usual_extensions(name: str, world: World) -> None:
    case, got = CASES[name], world.probes[name].result
    usual = USUAL_EXTENSIONS[case.software]
    assert got.ehlo is not None
    assert set(got.ehlo.extensions) == usual | ({"STARTTLS"} if case.cert else set())
    if got.ehlo_tls is not None:
        assert set(got.ehlo_tls.extensions) == usual


def _s_client(address: str, host: str, ca_file: Path) -> str:
    run = subprocess.run(
        [
            "openssl",
            "s_client",
            "-starttls",
            "smtp",
            "-name",
            EHLO_NAME,
            "-connect",
            f"{address}:{PORT}",
            "-servername",
            host,
            "-CAfile",
            str(ca_file),
            "-verify_hostname",
            host,
            "-brief",
        ],
        input="QUIT\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return run.stdout + run.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize(
    ("name", "verdict"),
    [
        ("postfix-valid", "Verification: OK"),
        ("postfix-expired", "Verification error: certificate has expired"),
        ("exim-valid", "Verification: OK"),
    ],
    ids=["postfix-valid", "postfix-expired", "exim-valid"],
)
def test_openssl_s_client_sees_the_same_session(name: str, verdict: str, world: World) -> None:
    case, got = CASES[name], world.probes[name].result
    said = _s_client(case.address, case.host(name), world.ca_file)
    assert got.tls is not None
    assert f"Protocol version: {got.tls.version}" in said, said
    assert f"Ciphersuite: {got.tls.cipher}" in said, said
    assert verdict in said, said
    assert f"CN = {case.host(name)}" in said


def test_stopped_instance_is_gone(mtas: RealMtas) -> None:
    state = _state_dir()
    address, host = "127.99.25.9", "mx.stopped.realmta.test"
    try:
        instance = PostfixInstance(address, PORT, host, None, None, state / "pf", postfix_binary=mtas.postfix)
        with instance:
            pid = instance.pid
            assert pid is not None and instance.greeting == f"220 {host} ESMTP Postfix"
        settings = SmtpSettings(
            ehlo_name=EHLO_NAME,
            verifier=Verifier(load_trust_store("mozilla")),
            port=PORT,
            timeouts=TIMEOUTS,
        )
        result = asyncio.run(SmtpProber(settings).probe(host, address)).result
        assert result.status is Status.CONNECTION_REFUSED and result.starttls is Starttls.UNKNOWN
        assert not pid_alive(pid)  # exited (a zombie until PID 1 reaps it)
    finally:
        shutil.rmtree(state, ignore_errors=True)
