"""The SMTP probe of one (MX host, address): one connection's exchange, certificate facts
and PKIX verdict.  Retries (probes/retry.py), scheduling, sharing and politeness belong to
the caller."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import load_der_x509_certificate

from engine.batching import Batcher
from probes.retry import smtp_signal
from probes.smtp.records import SmtpAttempt, SmtpResult, TlsSession
from probes.smtp.session import Observation, SmtpTimeouts, client_tls_context, converse
from probes.tls.certs import chain_facts
from probes.tls.verify import PkixResult, Verifier

__all__ = ["ANALYSIS_BATCH", "Exchange", "SmtpProbe", "SmtpProber", "SmtpSettings"]

#: Certificate work of up to this many finished exchanges runs back to back, waiting at most
#: ANALYSIS_WAIT seconds for company (engine/batching.py says why; benchmarks/README.md has the
#: measurements: 64 at once used ~17% less CPU per probe than none, 16 and 32 less than 64).
ANALYSIS_BATCH = 64
ANALYSIS_WAIT = 0.02


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """How to probe; one frozen value per scan."""

    ehlo_name: str
    #: The scan's PKIX verifier (trust store, known intermediates, what already verified),
    #: shared with the MTA-STS policy fetcher.
    verifier: Verifier
    port: int = 25
    timeouts: SmtpTimeouts = field(default_factory=SmtpTimeouts)
    keep_certs: bool = False


@dataclass(frozen=True, slots=True)
class SmtpProbe:
    """The recorded result plus the raw presented chain (DER, leaf first), which
    DANE needs per domain but the results file keeps only as facts.

    ``host_line``: the result's results-file line, when a probe process encoded it
    (then ``result`` is slimmed to what the scan process reads; see
    mxscan/probeservice.py); empty when the writer encodes ``result`` itself.
    """

    result: SmtpResult
    chain_der: tuple[bytes, ...]
    host_line: bytes = b""


@dataclass(frozen=True, slots=True)
class Exchange:
    """A finished exchange (one connection), waiting for its certificate work.  Retries are
    the polite prober's (probes/smtp/polite.py), which counts the connections it made."""

    host: str
    address: str
    obs: Observation
    duration_ms: float


class SmtpProber:
    """Probes (host, address) pairs; certificate work of exchanges that finish close
    together runs back to back (``engine.batching``)."""

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        now: Callable[[], dt.datetime] | None = None,
        batch: int = ANALYSIS_BATCH,
        batch_wait: float = ANALYSIS_WAIT,
    ) -> None:
        self.settings = settings
        self._tls = client_tls_context()
        self._now = now or (lambda: dt.datetime.now(dt.UTC))
        #: None (``batch=0``): each probe's certificate work runs as soon as its exchange ends.
        self.analysis: Batcher[Exchange, SmtpProbe] | None = (
            Batcher(self._analyse, size=batch, wait=batch_wait) if batch > 0 else None
        )

    async def probe(self, host: str, address: str) -> SmtpProbe:
        return await self.analyse(await self.exchange(host, address))

    async def analyse(self, done: Exchange) -> SmtpProbe:
        """Certificate facts and verdicts of a finished exchange, batched with others'
        (callers holding a connection slot release it before awaiting this)."""
        if self.analysis is None:
            return self._analyse(done)
        return await self.analysis.run(done)

    async def exchange(self, host: str, address: str) -> Exchange:
        """One connection to ``address`` for ``host``: every byte exchanged, no analysis."""
        settings = self.settings
        started = time.perf_counter()
        with self.analysis.upcoming() if self.analysis is not None else nullcontext():
            obs = await converse(
                address,
                settings.port,
                host,
                ehlo_name=settings.ehlo_name,
                tls_context=self._tls,
                timeouts=settings.timeouts,
            )
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        return Exchange(host, address, obs, duration_ms)

    def _analyse(self, done: Exchange) -> SmtpProbe:
        result = self._result(done.host, done.address, done.obs, done.duration_ms)
        return SmtpProbe(result, tuple(done.obs.chain))

    def _result(self, host: str, address: str, obs: Observation, duration_ms: float) -> SmtpResult:
        tls = None
        pkix: PkixResult | None = None
        if obs.chain or obs.tls_version:
            pem: tuple[str, ...] = ()
            if self.settings.keep_certs:
                pem = tuple(_pem(der) for der in obs.chain)
            tls = TlsSession(
                version=obs.tls_version,
                cipher=obs.tls_cipher,
                cipher_bits=obs.tls_bits,
                chain=chain_facts(obs.chain),
                chain_pem=pem,
            )
        if obs.chain:
            pkix = self.settings.verifier.verify(obs.chain, host, self._now())
        result = SmtpResult(
            host=host,
            address=address,
            port=self.settings.port,
            status=obs.status,
            phase=obs.phase,
            starttls=obs.starttls,
            banner_code=obs.banner_code,
            banner=obs.banner,
            ehlo=obs.ehlo,
            ehlo_tls=obs.ehlo_tls,
            last_code=obs.last_code,
            last_text=obs.last_text,
            tls=tls,
            pkix=pkix,
            plaintext_injection=obs.plaintext_injection,
            attempts=1,  # this exchange's one connection
            detail=obs.detail,
            duration_ms=duration_ms,
            phase_ms=obs.phase_ms,
        )
        attempt = SmtpAttempt(
            obs.status, obs.phase, obs.last_code, smtp_signal(result, first_contact=True), duration_ms
        )
        return replace(result, attempt_log=(attempt,))


def _pem(der: bytes) -> str:
    try:
        return load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode("ascii")
    except ValueError:
        return ""
