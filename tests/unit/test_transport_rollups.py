"""Domain roll-ups over per-host observations (probes/transport.py): case tables.

A host counts as offering STARTTLS when any address advertised it; as PKIX-valid when any
address presented a valid chain; an unknown host only matters when it could change the
answer (all / some / none / unknown / not-applicable).
"""

from __future__ import annotations

import dataclasses

import pytest

from engine.status import Status
from probes.dane.tlsa import DaneResult, DaneStatus
from probes.smtp.records import Phase, SmtpResult, Starttls, TlsSession
from probes.tls.certs import ChainFacts
from probes.tls.verify import PkixReason, PkixResult
from probes.transport import Coverage3, host_pkix_valid, no_tls_reason, posture, smtp_ref

Y, N, U = Starttls.YES, Starttls.NO, Starttls.UNKNOWN
VALID = PkixResult(True, PkixReason.OK, "", "Root")
INVALID = PkixResult(False, PkixReason.EXPIRED, "leaf expired", "")
SESSION = TlsSession("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, ChainFacts((), 0, False, ()), ())


def r(
    starttls: Starttls = U,
    *,
    status: Status = Status.SUCCESS,
    phase: Phase = Phase.DONE,
    pkix: PkixResult | None = None,
    tls: TlsSession | None = None,
    address: str = "192.0.2.1",
) -> SmtpResult:
    base = SmtpResult.not_measured("mx.example.com", address, 25, status, "")
    return dataclasses.replace(base, starttls=starttls, phase=phase, pkix=pkix, tls=tls)


def rolled(hosts: list[list[SmtpResult]]) -> tuple[Coverage3, Coverage3]:
    p = posture(
        [(h, None) for h in hosts], dnssec_mx="insecure", dane_published=False, mta_sts_mode=None, tlsrpt=None
    )
    return p.starttls, p.pkix_valid


A, S, NO, UNK, NA = Coverage3.ALL, Coverage3.SOME, Coverage3.NONE, Coverage3.UNKNOWN, Coverage3.NOT_APPLICABLE

STARTTLS_CASES = [
    ([], NA, "no-hosts"),
    ([[r(Y)]], A, "one-yes"),
    ([[r(N)]], NO, "one-no"),
    ([[r(U)]], UNK, "one-unknown"),
    ([[r(Y)], [r(N)]], S, "yes-and-no"),
    ([[r(Y)], [r(U)]], S, "yes-settles-some-despite-unknown"),
    ([[r(N)], [r(U)]], UNK, "no-and-unknown-could-be-some"),
    ([[r(N), r(Y)]], A, "any-address-yes-makes-the-host-yes"),
    ([[r(N), r(U)]], UNK, "host-no-only-when-every-address-says-no"),
    ([[r(N), r(N)]], NO, "every-address-no"),
    ([[]], UNK, "host-without-results-is-unknown"),
    ([[r(Y)], [r(Y)], [r(N)]], S, "two-of-three"),
]


@pytest.mark.parametrize(
    ("hosts", "expected"), [c[:2] for c in STARTTLS_CASES], ids=[c[2] for c in STARTTLS_CASES]
)
def test_starttls_roll_up(hosts: list[list[SmtpResult]], expected: Coverage3) -> None:
    assert rolled(hosts)[0] is expected


PKIX_CASES = [
    ([r(Y, pkix=VALID)], True, "valid-chain"),
    ([r(Y, pkix=INVALID)], False, "invalid-chain"),
    ([r(N)], False, "no-starttls-settles-it"),
    ([r(U)], None, "unmeasured-is-unknown"),
    ([r(Y, pkix=INVALID), r(Y, pkix=VALID)], True, "any-address-valid"),
    ([r(Y, pkix=INVALID), r(U)], None, "one-unsettled-address-leaves-it-unknown"),
    ([r(Y, pkix=INVALID), r(N)], False, "every-address-settled-invalid"),
    ([], None, "no-addresses"),
]


@pytest.mark.parametrize(("results", "expected"), [c[:2] for c in PKIX_CASES], ids=[c[2] for c in PKIX_CASES])
def test_host_pkix_valid(results: list[SmtpResult], expected: bool | None) -> None:
    assert host_pkix_valid(results) is expected


def test_pkix_roll_up_over_hosts() -> None:
    good, bad, unknown = [r(Y, pkix=VALID)], [r(Y, pkix=INVALID)], [r(U)]
    assert rolled([good, good])[1] is A
    assert rolled([good, bad])[1] is S
    assert rolled([bad, bad])[1] is NO
    assert rolled([bad, unknown])[1] is UNK
    assert rolled([good, unknown])[1] is S


NO_TLS_CASES = [
    ([], None, "no-addresses"),
    ([r(N)], "STARTTLS not offered", "not-offered"),
    ([r(N), r(N, address="192.0.2.2")], "STARTTLS not offered", "reasons-deduplicated"),
    (
        [r(Y, status=Status.TLS_HANDSHAKE_ERROR, phase=Phase.TLS)],
        "tls-handshake-error at tls",
        "handshake-failed",
    ),
    (
        [r(N), r(U, status=Status.CONNECTION_TIMEOUT, phase=Phase.CONNECT)],
        "STARTTLS not offered; connection-timeout at connect",
        "reasons-in-order",
    ),
    ([r(N), r(Y, tls=SESSION)], None, "one-address-gave-tls"),
    ([r(N), r(U, status=Status.SKIPPED)], None, "skipped-address-is-not-settled"),
    ([r(N), r(U, status=Status.UNKNOWN_ERROR)], None, "crashed-probe-is-not-settled"),
]


@pytest.mark.parametrize(
    ("results", "expected"), [c[:2] for c in NO_TLS_CASES], ids=[c[2] for c in NO_TLS_CASES]
)
def test_no_tls_reason(results: list[SmtpResult], expected: str | None) -> None:
    """RFC 7672 §2.2: "no-tls" only once every address settled that no TLS session is possible."""
    assert no_tls_reason(results) == expected


def test_smtp_ref_brackets_ipv6_only() -> None:
    assert smtp_ref(r(address="192.0.2.1")) == "smtp:mx.example.com@192.0.2.1:25"
    assert smtp_ref(r(address="2001:db8::1")) == "smtp:mx.example.com@[2001:db8::1]:25"


def test_posture_carries_the_domain_facts_through() -> None:
    valid = DaneResult(DaneStatus.VALID, "3 1 1 00", 1, "")
    p = posture(
        [([r(Y, pkix=VALID)], valid)],
        dnssec_mx="secure",
        dane_published=True,
        mta_sts_mode="enforce",
        tlsrpt=False,
    )
    assert (p.starttls, p.pkix_valid, p.dane_valid) == (A, A, A)
    assert (p.dane_published, p.dnssec_mx, p.mta_sts_mode, p.tlsrpt) == (True, "secure", "enforce", False)
