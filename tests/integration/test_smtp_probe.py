"""The SMTP probe against real SMTP servers on loopback: one host per behaviour,
named for what it shows, each on its own 127.x address."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import uvloop

from engine.status import Status
from probes.smtp.probe import SmtpProber, SmtpSettings
from probes.smtp.records import Phase, SmtpResult, Starttls
from probes.smtp.session import SmtpTimeouts
from probes.tls.truststore import load_trust_store
from probes.tls.verify import IntermediatePool, PkixReason, Verifier
from testbed.pki import TestPki
from testbed.smtpfleet import HostSpec, SmtpFleet, server_context

PORT = 2525
TIMEOUTS = SmtpTimeouts(connect=2.0, banner=1.5, command=1.5, handshake=2.0, quit=0.5)


@pytest.fixture(scope="module")
def pki() -> TestPki:
    return TestPki()


@pytest.fixture(scope="module")
def trust(pki: TestPki, tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("pki")
    root = Path(directory) / "root.pem"
    root.write_bytes(pki.root_pem())
    return load_trust_store("none", [str(root)])


#: name -> (behaviour, cert kind or None, expected status, phase, starttls, pkix reason or None)
CASES = {
    "valid-cert": ("good", "valid", Status.SUCCESS, Phase.DONE, Starttls.YES, PkixReason.OK),
    "self-signed": ("good", "self-signed", Status.SUCCESS, Phase.DONE, Starttls.YES, PkixReason.SELF_SIGNED),
    "expired-cert": ("good", "expired", Status.SUCCESS, Phase.DONE, Starttls.YES, PkixReason.EXPIRED),
    "not-yet-valid": (
        "good",
        "not-yet-valid",
        Status.SUCCESS,
        Phase.DONE,
        Starttls.YES,
        PkixReason.NOT_YET_VALID,
    ),
    "wrong-name": (
        "good",
        "wrong-name",
        Status.SUCCESS,
        Phase.DONE,
        Starttls.YES,
        PkixReason.HOSTNAME_MISMATCH,
    ),
    "untrusted-ca": (
        "good",
        "untrusted-ca",
        Status.SUCCESS,
        Phase.DONE,
        Starttls.YES,
        PkixReason.UNKNOWN_ISSUER,
    ),
    "missing-intermediate": (
        "good",
        "missing-intermediate",
        Status.SUCCESS,
        Phase.DONE,
        Starttls.YES,
        PkixReason.INCOMPLETE_CHAIN,
    ),
    "refused": ("refused", None, Status.CONNECTION_REFUSED, Phase.CONNECT, Starttls.UNKNOWN, None),
    "blackhole": ("blackhole", None, Status.IO_TIMEOUT, Phase.BANNER, Starttls.UNKNOWN, None),
    "banner-554": ("banner-554", None, Status.APPLICATION_ERROR, Phase.BANNER, Starttls.UNKNOWN, None),
    "close-421": ("421-close", None, Status.APPLICATION_ERROR, Phase.BANNER, Starttls.UNKNOWN, None),
    "no-starttls": ("no-starttls", None, Status.SUCCESS, Phase.DONE, Starttls.NO, None),
    "starttls-454": ("starttls-454", None, Status.APPLICATION_ERROR, Phase.STARTTLS, Starttls.YES, None),
    "handshake-fail": ("handshake-fail", None, Status.TLS_HANDSHAKE_ERROR, Phase.TLS, Starttls.YES, None),
    "slow-banner": ("slow-banner", "valid", Status.SUCCESS, Phase.DONE, Starttls.YES, PkixReason.OK),
    "tarpit": ("tarpit", "valid", Status.IO_TIMEOUT, Phase.EHLO, Starttls.UNKNOWN, None),
    "huge-banner": ("huge-banner", None, Status.PROTOCOL_ERROR, Phase.BANNER, Starttls.UNKNOWN, None),
    "endless-continuation": (
        "endless-continuation",
        None,
        Status.PROTOCOL_ERROR,
        Phase.BANNER,
        Starttls.UNKNOWN,
        None,
    ),
    "slow-drip": ("slow-drip", None, Status.IO_TIMEOUT, Phase.BANNER, Starttls.UNKNOWN, None),
    "garbage": ("garbage", None, Status.PROTOCOL_ERROR, Phase.BANNER, Starttls.UNKNOWN, None),
    "bad-utf8": ("bad-utf8", "valid", Status.SUCCESS, Phase.DONE, Starttls.YES, PkixReason.OK),
    "ehlo-550": ("ehlo-550", None, Status.APPLICATION_ERROR, Phase.EHLO, Starttls.UNKNOWN, None),
    "post-tls-554": (
        "post-tls-554",
        "valid",
        Status.POST_TLS_APPLICATION_ERROR,
        Phase.EHLO_TLS,
        Starttls.YES,
        PkixReason.OK,
    ),
    "inject-after-starttls": (
        "inject-after-starttls",
        "valid",
        Status.SUCCESS,
        Phase.DONE,
        Starttls.YES,
        PkixReason.OK,
    ),
    "tls-alert": ("tls-alert", None, Status.TLS_HANDSHAKE_ERROR, Phase.TLS, Starttls.YES, None),
}


def _address(index: int) -> str:
    return f"127.77.{index // 250}.{index % 250 + 1}"


def _specs(pki: TestPki) -> dict[str, HostSpec]:
    specs = {}
    for index, (name, (behaviour, kind, *_)) in enumerate(sorted(CASES.items())):
        host = f"mx.{name}.smtp.test"
        ctx = None
        if kind is not None:
            issued = pki.issue([host], kind=kind)
            ctx = server_context(issued.chain_pem, issued.key_pem)
        specs[name] = HostSpec(
            name=host, address=_address(index), behaviour=behaviour, tls=ctx, slow_banner_delay=0.3
        )
    return specs


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def results(request: pytest.FixtureRequest, pki: TestPki, trust) -> dict[str, SmtpResult]:
    """Every case under both event loops: mxscan runs under uvloop, whose transports
    behave like asyncio's but are not its classes."""
    run = uvloop.run if request.param == "uvloop" else asyncio.run
    specs = _specs(pki)
    # missing-intermediate is "incomplete" only when the intermediate is known to the pool.
    pool = IntermediatePool.from_der([pki.intermediate.der])
    settings = SmtpSettings(
        ehlo_name="scanner.mxscan.test", verifier=Verifier(trust, pool), port=PORT, timeouts=TIMEOUTS
    )

    async def main() -> dict[str, SmtpResult]:
        async with SmtpFleet(specs.values(), PORT):
            prober = SmtpProber(settings, now=lambda: dt.datetime.now(dt.UTC))
            names = sorted(specs)
            found = await asyncio.gather(*(prober.probe(specs[n].name, specs[n].address) for n in names))
            return {n: f.result for n, f in zip(names, found, strict=True)}

    return run(main())


@pytest.mark.parametrize("name", sorted(CASES))
def test_outcome_follows_the_phase_reached(name: str, results: dict[str, SmtpResult]) -> None:
    _, _, status, phase, starttls, reason = CASES[name]
    got = results[name]
    assert (got.status, got.phase, got.starttls) == (status, phase, starttls), got.detail
    if reason is None:
        assert got.pkix is None
    else:
        assert got.pkix is not None and got.pkix.reason is reason, got.pkix


def test_success_keeps_banner_ehlo_and_chain(results: dict[str, SmtpResult]) -> None:
    got = results["valid-cert"]
    assert got.banner_code == 220 and "ESMTP" in got.banner
    assert got.ehlo is not None and got.ehlo.starttls and "PIPELINING" in got.ehlo.extensions
    assert got.ehlo_tls is not None and not got.ehlo_tls.starttls
    assert got.tls is not None and got.tls.version.startswith("TLSv1.") and got.tls.chain.presented == 2
    assert got.tls.chain.certs[0].san_dns == ("mx.valid-cert.smtp.test",)
    assert got.tls.chain_pem == ()


@pytest.mark.parametrize(
    ("name", "phases"),
    [
        ("valid-cert", ["connect", "banner", "ehlo", "starttls", "tls", "ehlo-tls", "quit"]),
        ("no-starttls", ["connect", "banner", "ehlo", "quit"]),
        ("tarpit", ["connect", "banner", "ehlo"]),
    ],
)
def test_time_is_recorded_per_phase_reached(
    name: str, phases: list[str], results: dict[str, SmtpResult]
) -> None:
    got = results[name]
    assert list(got.phase_ms) == phases
    assert all(ms >= 0 for ms in got.phase_ms.values())
    assert sum(got.phase_ms.values()) <= got.duration_ms + 1
    if name == "tarpit":  # the phase it stopped in holds the wait: the command deadline
        assert got.phase_ms["ehlo"] >= TIMEOUTS.command * 1000 * 0.9


def test_failures_keep_partial_results(results: dict[str, SmtpResult]) -> None:
    assert results["banner-554"].banner_code == 554 and results["banner-554"].last_code == 554
    assert results["starttls-454"].ehlo is not None and results["starttls-454"].last_code == 454
    assert results["post-tls-554"].tls is not None and results["post-tls-554"].last_code == 554
    assert results["tarpit"].banner_code == 220


def test_plaintext_injected_after_starttls_is_discarded_and_recorded(results: dict[str, SmtpResult]) -> None:
    got = results["inject-after-starttls"]
    assert got.plaintext_injection and got.ehlo_tls is not None
    assert not results["valid-cert"].plaintext_injection


def test_peer_text_is_sanitised(results: dict[str, SmtpResult]) -> None:
    assert results["bad-utf8"].banner.isprintable()
    assert len(results["garbage"].detail) <= 300


def test_timeout_is_never_reported_as_no_starttls(results: dict[str, SmtpResult]) -> None:
    for name in ("blackhole", "tarpit", "slow-drip", "refused", "close-421"):
        assert results[name].starttls is Starttls.UNKNOWN


def test_keep_certs_stores_pem(pki: TestPki, trust) -> None:
    issued = pki.issue(["mx.keep.smtp.test"], kind="valid")
    spec = HostSpec(
        name="mx.keep.smtp.test",
        address="127.77.9.2",
        behaviour="good",
        tls=server_context(issued.chain_pem, issued.key_pem),
    )
    settings = SmtpSettings(
        ehlo_name="scanner.mxscan.test",
        verifier=Verifier(trust),
        port=PORT,
        timeouts=TIMEOUTS,
        keep_certs=True,
    )

    async def main() -> SmtpResult:
        async with SmtpFleet([spec], PORT):
            return (await SmtpProber(settings).probe(spec.name, spec.address)).result

    result = asyncio.run(main())
    assert result.tls is not None and len(result.tls.chain_pem) == 2
    assert result.tls.chain_pem[0].startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize(
    "certificates", [20, 100, 250], ids=["20-cert-chain", "100-cert-chain", "250-cert-chain"]
)
def test_long_chains_are_capped_or_classified(pki: TestPki, trust, certificates: int) -> None:
    """A chain longer than we keep facts for is truncated to 16; one beyond OpenSSL's
    100 KiB certificate-message cap fails the handshake, as it does for every
    OpenSSL-based sender: a classified result either way, with bounded memory."""
    issued = pki.issue([f"mx.chain-{certificates}.smtp.test"], kind="valid")
    padding = pki.intermediate.pem() * (certificates - 2)  # the intermediate again and again
    spec = HostSpec(
        name=f"mx.chain-{certificates}.smtp.test",
        address=f"127.77.10.{certificates % 200 + 1}",
        behaviour="good",
        tls=server_context(issued.chain_pem + padding, issued.key_pem),
    )
    settings = SmtpSettings(
        ehlo_name="scanner.mxscan.test", verifier=Verifier(trust), port=PORT, timeouts=TIMEOUTS
    )

    async def main() -> SmtpResult:
        async with SmtpFleet([spec], PORT):
            return (await SmtpProber(settings).probe(spec.name, spec.address)).result

    result = uvloop.run(main())
    assert result.starttls is Starttls.YES
    if certificates <= 100:
        assert result.status is Status.SUCCESS and result.tls is not None
        assert result.tls.chain.presented == certificates and result.tls.chain.truncated
        assert len(result.tls.chain.certs) == 16
        assert result.pkix is not None and result.pkix.valid
    else:
        assert result.status is Status.TLS_HANDSHAKE_ERROR and result.phase is Phase.TLS
        assert "excessive message size" in result.detail.lower()


def test_whole_host_deadline_ends_a_slow_drip(trust) -> None:
    """Each phase may be generous; the whole exchange with one host still has a deadline."""
    spec = HostSpec(name="mx.drip.smtp.test", address="127.77.9.5", behaviour="slow-drip")
    settings = SmtpSettings(
        ehlo_name="scanner.mxscan.test",
        verifier=Verifier(trust),
        port=PORT,
        timeouts=SmtpTimeouts(connect=2, banner=30, command=30, handshake=30, quit=0.5, total=1.0),
    )

    async def main() -> SmtpResult:
        async with SmtpFleet([spec], PORT):
            return (await SmtpProber(settings).probe(spec.name, spec.address)).result

    result = uvloop.run(main())
    assert result.status is Status.IO_TIMEOUT and result.phase is Phase.BANNER
    assert result.starttls is Starttls.UNKNOWN and result.duration_ms < 5_000


def test_batched_certificate_work_records_what_unbatched_work_records(pki: TestPki, trust) -> None:
    """Batching only moves when certificate work runs, never what a probe records."""
    import dataclasses

    specs = _specs(pki)
    untimed = {"duration_ms": 0.0, "phase_ms": {}, "attempt_log": ()}

    async def probe_all(batch: int) -> dict[str, SmtpResult]:
        # A verifier of its own: each run starts with nothing verified.
        settings = SmtpSettings(
            ehlo_name="scanner.mxscan.test", verifier=Verifier(trust), port=PORT, timeouts=TIMEOUTS
        )
        prober = SmtpProber(settings, batch=batch)
        names = sorted(specs)
        found = await asyncio.gather(*(prober.probe(specs[n].name, specs[n].address) for n in names))
        if prober.analysis is not None:
            assert prober.analysis.items == len(names)
        return {n: dataclasses.replace(f.result, **untimed) for n, f in zip(names, found, strict=True)}

    async def main() -> tuple[dict[str, SmtpResult], dict[str, SmtpResult]]:
        async with SmtpFleet(specs.values(), PORT):
            return await probe_all(0), await probe_all(3)

    inline, batched = asyncio.run(main())
    assert batched == inline
