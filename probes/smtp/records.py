"""Typed SMTP results: one per (MX host, address), shared by every domain using it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.status import Status
from probes.smtp.ehlo import EhloInfo
from probes.tls.certs import ChainFacts
from probes.tls.verify import PkixResult

__all__ = ["Phase", "Signal", "SmtpAttempt", "SmtpResult", "Starttls", "TlsSession"]


class Starttls(StrEnum):
    #: STARTTLS was advertised in the EHLO reply.
    YES = "yes"
    #: EHLO succeeded and did not advertise STARTTLS: a finding, not an error.
    NO = "no"
    #: We could not tell (refused, timeout, 4xx/5xx before EHLO completed).  Never "no".
    UNKNOWN = "unknown"


class Phase(StrEnum):
    """How far the exchange got (STYLE.md habit 3); the status says why it stopped."""

    CONNECT = "connect"
    BANNER = "banner"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    TLS = "tls"
    EHLO_TLS = "ehlo-tls"
    QUIT = "quit"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class TlsSession:
    """What the TLS handshake negotiated and the certificates the server presented.

    Fields:
      version: the negotiated protocol version ("TLSv1.3").
      cipher: the negotiated cipher suite name.
      cipher_bits: the cipher's secret bits.
      chain: facts of every presented certificate, leaf first (bounded; see ChainFacts).
      chain_pem: the presented chain as PEM, only with --keep-certs; else empty.
    """

    version: str
    cipher: str
    cipher_bits: int
    chain: ChainFacts
    chain_pem: tuple[str, ...]


class Signal(StrEnum):
    """What one connection's outcome says about trying again (the vocabulary of the one retry
    policy, probes/retry.py, for SMTP probes and policy fetches alike)."""

    #: An answer that is data (success, a 5xx, no STARTTLS, a handshake failure, a refusal):
    #: another connection would only repeat it.
    DEFINITE = "definite"
    #: No answer within a phase's deadline (connect, banner, a reply, TLS, a body).
    TIMEOUT = "timeout"
    #: The peer closed or reset the connection before greeting.
    RESET = "reset"
    #: 421, or a 4xx before EHLO completed after the first contact: "slow down".
    THROTTLE = "throttle"
    #: 450/451 before EHLO completed on the first contact: greylisting (RFC 6647 §2.1).
    GREYLIST = "greylist"


@dataclass(frozen=True, slots=True)
class SmtpAttempt:
    """One connection of a probe, as the retry policy saw it (probes/retry.py).

    Fields:
      status: how this connection ended (closed vocabulary, engine.status).
      phase: the phase it reached.
      last_code: the last reply code it received, or null.
      signal: what the retry policy read from it: definite, timeout, reset, throttle or greylist.
      duration_ms: milliseconds from its connect to its end (the pause before it excluded).
    """

    status: Status
    phase: Phase
    last_code: int | None
    signal: Signal
    duration_ms: float


@dataclass(frozen=True, slots=True)
class SmtpResult:
    """One SMTP STARTTLS probe of one address of one MX host.

    Fields:
      host: the MX host name (used for EHLO checks, SNI and certificate name checks).
      address: the IP address connected to.
      port: the TCP port connected to.
      status: success or how the exchange failed (closed vocabulary, engine.status).
      phase: the phase the exchange reached (connect, banner, ehlo, starttls, tls, ehlo-tls, quit, done).
      starttls: yes / no / unknown; unknown whenever we could not tell.
      banner_code: the greeting's reply code, or null if none was read.
      banner: the greeting text, sanitised and bounded.
      ehlo: the EHLO reply before TLS, parsed; null if not reached.
      ehlo_tls: the EHLO reply after TLS, parsed; null if not reached.
      last_code: the last reply code received, or null.
      last_text: the last reply text received, sanitised and bounded.
      tls: the negotiated session and presented chain; null without a completed handshake.
      pkix: PKIX verification of the presented chain for the host name; null without a chain.
      plaintext_injection: bytes arrived after the 220 reply to STARTTLS and before the server's
        first TLS record, in the 220's read or later (RFC 3207 §4.2: discarded, never parsed nor
        given to TLS; their presence is a finding, also when the handshake then failed).
      attempts: connections made (retries after timeouts, resets, greylisting and 421/4xx included);
        0 when an earlier probe in this run found the address and port unreachable (connection-timeout
        or connection-refused at connect after its retry): the status is then that probe's, not
        measured again (remembered for a bounded time, see README "Politeness").
      detail: why the status is not success (bounded text), else ""; for an address remembered as
        unreachable it names when and by which probe (its smtp: reference) that was found.
      duration_ms: wall-clock time of the probe including retries, in milliseconds: from the
        first connection attempt to the end of the last, the pauses between them included.
      phase_ms: milliseconds spent in each phase the last attempt reached (connect, banner, ehlo,
        starttls, tls, ehlo-tls, quit), the one it stopped in included.
      greylisted: the first connection got a 450/451 before EHLO completed (greylisting,
        RFC 6647) and a later one was made; the status is the later one's.
      attempt_log: every connection made, oldest first (the last is the one the other fields
        describe); empty for an address never contacted.
    """

    host: str
    address: str
    port: int
    status: Status
    phase: Phase
    starttls: Starttls
    banner_code: int | None
    banner: str
    ehlo: EhloInfo | None
    ehlo_tls: EhloInfo | None
    last_code: int | None
    last_text: str
    tls: TlsSession | None
    pkix: PkixResult | None
    plaintext_injection: bool
    attempts: int
    detail: str
    duration_ms: float
    phase_ms: dict[str, float]
    #: Last, with defaults: optional in lines from before them.
    greylisted: bool = False
    attempt_log: tuple[SmtpAttempt, ...] = ()

    @classmethod
    def not_measured(cls, host: str, address: str, port: int, status: Status, detail: str) -> SmtpResult:
        """The result for an address no exchange measured (excluded, or the probe gave nothing):
        STARTTLS unknown, never "no", so the domain's posture says it could not tell."""
        return cls(
            host=host,
            address=address,
            port=port,
            status=status,
            phase=Phase.CONNECT,
            starttls=Starttls.UNKNOWN,
            banner_code=None,
            banner="",
            ehlo=None,
            ehlo_tls=None,
            last_code=None,
            last_text="",
            tls=None,
            pkix=None,
            plaintext_injection=False,
            attempts=0,
            detail=detail,
            duration_ms=0.0,
            phase_ms={},
        )
