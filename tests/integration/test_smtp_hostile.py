"""The SMTP probe against hostile peers (issue #13 items 1, 2 and 12): plaintext after
the 220 to STARTTLS, junk after a valid reply, and retries that must count in the
probe's duration.  Servers are scripted on loopback (tests/integration/hostile_smtp.py);
every run also checks that nothing reached the event loop's exception handler or stderr.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

from engine.backoff import AimdPolicy
from engine.limits import KeyedLimiter, Limit
from engine.status import Status
from probes.retry import RetryPolicy
from probes.smtp.polite import PoliteProber
from probes.smtp.probe import SmtpProber, SmtpSettings
from probes.smtp.records import Phase, Starttls
from probes.smtp.session import Observation, SmtpTimeouts, client_tls_context, converse
from probes.tls.truststore import TrustStore, load_trust_store
from probes.tls.verify import Verifier
from testbed.pki import TestPki
from testbed.smtpfleet import server_context
from tests.integration.hostile_smtp import Script, hostile_server

HOST = "mx.hostile.test"
#: Short phase deadlines; the whole-host deadline far away, so that reaching it shows.
TIMEOUTS = SmtpTimeouts(connect=2.0, banner=2.0, command=2.0, handshake=2.0, quit=0.5, total=60.0)
MARGIN = 2.0
LOOPS = ["asyncio", "uvloop"]
SPLITS = ["one-write", "two-writes", "after-client-hello"]

T = TypeVar("T")


@pytest.fixture(scope="module")
def pki() -> TestPki:
    return TestPki()


@pytest.fixture(scope="module")
def server_tls(pki: TestPki) -> Any:
    issued = pki.issue([HOST], kind="valid")
    return server_context(issued.chain_pem, issued.key_pem)


@pytest.fixture(scope="module")
def trust(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> TrustStore:
    root = Path(tmp_path_factory.mktemp("pki")) / "root.pem"
    root.write_bytes(pki.root_pem())
    return load_trust_store("none", [str(root)])


def _quietly(loop_name: str, main: Callable[[], Awaitable[T]], capfd: pytest.CaptureFixture[str]) -> T:
    """Run ``main`` and insist that nothing went to the loop's exception handler or stderr
    (the old shell printed uvloop's SSLProtocol tracebacks while it waited)."""
    handled: list[dict[str, Any]] = []

    async def wrapped() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: handled.append(context))
        return await main()

    run = uvloop.run if loop_name == "uvloop" else asyncio.run
    result = run(wrapped())
    assert handled == []
    assert capfd.readouterr().err == ""
    return result


def _exchange(
    script: Script, tls: Any, loop_name: str, capfd: pytest.CaptureFixture[str]
) -> tuple[Observation, float]:
    async def main() -> tuple[Observation, float]:
        async with hostile_server(script, tls) as (port, _):
            started = time.monotonic()
            obs = await converse(
                "127.0.0.1",
                port,
                HOST,
                ehlo_name="scanner.mxscan.test",
                tls_context=client_tls_context(),
                timeouts=TIMEOUTS,
            )
            return obs, time.monotonic() - started

    return _quietly(loop_name, main, capfd)


INJECTIONS = {
    "junk-line": b"JUNK\r\n",
    "fake-reply": b"250 2.0.0 injected before the handshake\r\n",
    "no-line-end": b"plaintext without a line end",
}


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("injected", sorted(INJECTIONS))
def test_plaintext_after_the_starttls_220_is_discarded_and_the_handshake_succeeds(
    injected: str, split: Any, loop_name: str, server_tls: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """RFC 3207 §4.2: bytes between the 220 and the TLS handshake are discarded, never fed to
    TLS nor parsed as replies, and recorded; a handshake that then succeeds is success."""
    script = Script(after_220=INJECTIONS[injected], split=split)
    obs, _ = _exchange(script, server_tls, loop_name, capfd)
    assert (obs.status, obs.phase, obs.starttls) == (Status.SUCCESS, Phase.DONE, Starttls.YES), obs.detail
    assert obs.plaintext_injection
    assert obs.tls_version.startswith("TLSv1.") and obs.chain
    assert obs.ehlo_tls is not None and not obs.ehlo_tls.starttls


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_clean_starttls_records_no_injection(
    loop_name: str, server_tls: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    obs, _ = _exchange(Script(), server_tls, loop_name, capfd)
    assert obs.status is Status.SUCCESS and not obs.plaintext_injection


RANDOM = random.Random(13).randbytes(600)
#: name -> (script, injection expected)
GARBAGE = {
    "random-bytes-one-write": (Script(after_220=RANDOM, split="one-write", then="silence"), True),
    "random-bytes-two-writes": (Script(after_220=RANDOM, split="two-writes", then="silence"), True),
    "plaintext-line-then-nothing": (Script(after_220=b"hello\r\n", then="silence"), True),
    "plaintext-after-client-hello": (
        Script(after_220=b"554 no TLS for you\r\n", split="after-client-hello", then="silence"),
        True,
    ),
    "garbage-record-for-server-hello": (Script(then="garbage-record"), False),
}


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_garbage_instead_of_tls_is_a_handshake_error_within_the_tls_deadline(
    name: str, loop_name: str, server_tls: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """Not the whole-host deadline (60 s here, 90 s by default): the TLS phase's (2 s)."""
    script, injection = GARBAGE[name]
    obs, elapsed = _exchange(script, server_tls, loop_name, capfd)
    assert (obs.status, obs.phase) == (Status.TLS_HANDSHAKE_ERROR, Phase.TLS), obs.detail
    assert obs.plaintext_injection is injection
    assert elapsed < TIMEOUTS.handshake + MARGIN
    assert obs.starttls is Starttls.YES and obs.ehlo is not None and obs.tls_version == ""


#: name -> (script, phase where the junk is met, junk)
JUNK_AFTER_A_REPLY = {
    "after-the-banner": (Script(banner=b"220 mx.hostile.test ESMTP\r\nJUNK LINE\r\n"), Phase.EHLO),
    "after-the-ehlo-reply": (
        Script(ehlo=b"250-mx.hostile.test\r\n250 STARTTLS\r\n<html>not smtp</html>\r\n"),
        Phase.STARTTLS,
    ),
}


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("name", sorted(JUNK_AFTER_A_REPLY))
def test_a_junk_line_read_with_a_valid_reply_is_a_protocol_error(
    name: str, loop_name: str, server_tls: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """Not "connection-closed: connection already closed": that close was our own abort."""
    script, phase = JUNK_AFTER_A_REPLY[name]
    obs, elapsed = _exchange(script, server_tls, loop_name, capfd)
    assert (obs.status, obs.phase) == (Status.PROTOCOL_ERROR, phase), obs.detail
    assert obs.detail.startswith("not-a-reply")
    assert obs.banner_code == 220 and obs.banner == "mx.hostile.test ESMTP"
    assert elapsed < TIMEOUTS.command + MARGIN


def _settings(trust: TrustStore, port: int) -> SmtpSettings:
    return SmtpSettings(
        ehlo_name="scanner.mxscan.test", verifier=Verifier(trust), port=port, timeouts=TIMEOUTS
    )


def _polite(prober: SmtpProber, delay: float) -> PoliteProber:
    """Production's retry loop (mxscan.wiring.polite_prober), with a short pause."""
    limit = Limit(concurrency=4)
    provider_limits = KeyedLimiter(lambda _key: limit)
    return PoliteProber(
        prober=prober,
        address_limits=KeyedLimiter(lambda _key: Limit(concurrency=1)),
        provider_limits=provider_limits,
        backoff=AimdPolicy(
            provider_limits, base_rate_for=lambda _key: limit.rate, floor=2.0, increase=1.0, cooldown=0.1
        ),
        provider_of=lambda _host: "hostile.test",
        active=asyncio.Semaphore(8),
        sockets=asyncio.Semaphore(8),
        retry=RetryPolicy(timeout_retries=1, transient_retries=3, delay=delay),
    )


def test_duration_includes_retries_and_the_pauses_between_them(
    server_tls: Any, trust: TrustStore, capfd: pytest.CaptureFixture[str]
) -> None:
    """SmtpResult.duration_ms is "including retries": a probe throttled twice, pausing 0.25 s
    and 0.5 s before its third connection, lasted at least 0.75 s."""
    delay = 0.25

    async def main() -> tuple[Any, int, float]:
        async with hostile_server(Script(throttle_first=2), server_tls) as (port, state):
            started = time.monotonic()
            probe = await _polite(SmtpProber(_settings(trust, port)), delay).probe(HOST, "127.0.0.1")
            return probe.result, state.connections, time.monotonic() - started

    result, connections, elapsed = _quietly("uvloop", main, capfd)
    assert result.status is Status.SUCCESS and result.attempts == 3 == connections
    assert 3 * delay * 1000 <= result.duration_ms <= elapsed * 1000 + 1
