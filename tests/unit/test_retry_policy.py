"""The one retry policy (probes/retry.py): case tables over classified outcomes, and the
correlation rule that keeps one silent host from lowering a provider's rate (issue #12,
issue #15 item 3).  An injectable clock; no sleeps."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.status import Status
from probes.dns.records import Answer, Dnssec, MxHost, Outcome
from probes.plan import capped_addresses
from probes.retry import CorrelatedSignals, Decision, RetryPolicy, fetch_signal, smtp_signal
from probes.smtp.records import Phase, Signal, SmtpResult, Starttls
from tests.unit.fakeclock import FakeClock

T, R, G, X, D = Signal.TIMEOUT, Signal.RESET, Signal.GREYLIST, Signal.THROTTLE, Signal.DEFINITE


def _result(status: Status, phase: Phase, code: int | None = None) -> SmtpResult:
    return SmtpResult(
        host="mx.example.test",
        address="192.0.2.1",
        port=25,
        status=status,
        phase=phase,
        starttls=Starttls.UNKNOWN,
        banner_code=None,
        banner="",
        ehlo=None,
        ehlo_tls=None,
        last_code=code,
        last_text="",
        tls=None,
        pkix=None,
        plaintext_injection=False,
        attempts=1,
        detail="",
        duration_ms=0.0,
        phase_ms={},
    )


@pytest.mark.parametrize(
    ("status", "phase", "code", "first", "signal"),
    [
        (Status.SUCCESS, Phase.DONE, 250, True, D),
        (Status.CONNECTION_REFUSED, Phase.CONNECT, None, True, D),
        (Status.CONNECTION_TIMEOUT, Phase.CONNECT, None, True, T),
        (Status.IO_TIMEOUT, Phase.BANNER, None, True, T),
        (Status.IO_TIMEOUT, Phase.TLS, None, False, T),
        (Status.CONNECTION_CLOSED, Phase.BANNER, None, True, R),
        (Status.CONNECTION_CLOSED, Phase.STARTTLS, None, True, D),
        (Status.APPLICATION_ERROR, Phase.BANNER, 451, True, G),
        (Status.APPLICATION_ERROR, Phase.BANNER, 450, True, G),
        (Status.APPLICATION_ERROR, Phase.BANNER, 451, False, X),
        (Status.APPLICATION_ERROR, Phase.BANNER, 421, True, X),
        (Status.APPLICATION_ERROR, Phase.EHLO, 452, True, X),
        (Status.APPLICATION_ERROR, Phase.BANNER, 554, True, D),
        (Status.APPLICATION_ERROR, Phase.STARTTLS, 451, True, D),
        (Status.PROTOCOL_ERROR, Phase.BANNER, None, True, D),
    ],
)
def test_smtp_outcomes_map_to_retry_signals(
    status: Status, phase: Phase, code: int | None, first: bool, signal: Signal
) -> None:
    assert smtp_signal(_result(status, phase, code), first_contact=first) is signal


def test_a_timeout_after_a_completed_handshake_is_definite() -> None:
    from probes.smtp.records import TlsSession
    from probes.tls.certs import chain_facts

    tls = TlsSession(version="TLSv1.3", cipher="x", cipher_bits=256, chain=chain_facts([]), chain_pem=())
    result = replace(_result(Status.IO_TIMEOUT, Phase.EHLO_TLS), tls=tls)
    assert smtp_signal(result, first_contact=True) is D


@pytest.mark.parametrize(
    ("signals", "decision"),
    [
        ([D], Decision(False, 0.0, False)),
        ([T], Decision(True, 5.0, False)),
        ([T, T], Decision(False, 0.0, False)),  # timed out twice: the finding
        ([R], Decision(True, 5.0, False)),
        ([R, T], Decision(False, 0.0, False)),  # resets and timeouts share one budget
        ([G], Decision(True, 5.0, False)),  # greylisting is no provider signal
        ([G, X], Decision(False, 0.0, True)),
        ([X], Decision(True, 5.0, True)),
        ([G, T], Decision(True, 5.0, False)),  # separate budgets: a timeout after greylisting
        ([G, T, T], Decision(False, 0.0, False)),
    ],
)
def test_retry_decisions_by_outcome_history(signals: list[Signal], decision: Decision) -> None:
    assert RetryPolicy(timeout_retries=1, transient_retries=1, delay=5.0).decide(signals) == decision


def test_a_throttle_pause_doubles_per_throttle_seen() -> None:
    policy = RetryPolicy(timeout_retries=0, transient_retries=3, delay=2.0)
    assert [policy.decide([X] * n).delay for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert not policy.decide([X] * 4).retry


def test_the_default_policy_costs_at_most_three_connections_and_five_seconds_of_pause() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 3 and policy.worst_case_pause() == 10.0
    assert RetryPolicy(timeout_retries=1, transient_retries=0).max_attempts == 2


def test_zero_retries_never_retries() -> None:
    policy = RetryPolicy(timeout_retries=0, transient_retries=0)
    assert not any(policy.decide([s]).retry for s in Signal)


def test_bad_policy_values_are_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(delay=-1)
    with pytest.raises(ValueError):
        CorrelatedSignals(hosts=1, window=10)


def test_policy_fetch_timeouts_and_resets_are_retried_answers_are_not() -> None:
    from probes.mtasts.fetch import TIMEOUT_DETAIL
    from probes.mtasts.records import PolicyFetch

    fetch = PolicyFetch(
        "u", "192.0.2.1", Status.SUCCESS, 200, "text/plain", "", 10, "TLSv1.3", None, None, "", 1.0
    )
    assert fetch_signal(fetch) is D
    assert fetch_signal(replace(fetch, status=Status.IO_TIMEOUT, detail=f"{TIMEOUT_DETAIL} body")) is T
    assert (
        fetch_signal(replace(fetch, status=Status.TLS_HANDSHAKE_ERROR, detail=f"{TIMEOUT_DETAIL} tls")) is T
    )
    assert fetch_signal(replace(fetch, status=Status.CONNECTION_CLOSED, tls_version="")) is R
    assert fetch_signal(replace(fetch, status=Status.SUCCESS, http_status=404)) is D


def test_timeouts_at_one_host_never_become_a_provider_signal() -> None:
    clock = FakeClock()
    correlated = CorrelatedSignals(hosts=3, window=60.0, clock=clock)
    assert not any(correlated.observe("self.example", "mx.self.example") for _ in range(100))


def test_timeouts_at_many_hosts_of_one_provider_within_the_window_are_a_provider_signal() -> None:
    clock = FakeClock()
    correlated = CorrelatedSignals(hosts=3, window=60.0, clock=clock)
    assert not correlated.observe("big.example", "mx1.big.example")
    assert not correlated.observe("big.example", "mx2.big.example")
    assert not correlated.observe("other.example", "mx3.other.example")  # another provider
    assert correlated.observe("big.example", "mx3.big.example")
    assert not correlated.observe("big.example", "mx4.big.example")  # evidence starts afresh


def test_timeouts_spread_wider_than_the_window_are_not_correlated() -> None:
    clock = FakeClock()
    correlated = CorrelatedSignals(hosts=3, window=60.0, clock=clock)
    for i in range(10):
        assert not correlated.observe("big.example", f"mx{i}.big.example")
        clock.now += 31.0


def _answer(name: str, rrtype: str, data: tuple[str, ...]) -> Answer:
    return Answer(name, rrtype, Outcome.OK, Dnssec.INSECURE, False, 300, (), data, "NOERROR", (), "")


def _host(name: str, v4: int, v6: int = 0) -> MxHost:
    a = _answer(name, "A", tuple(f"192.0.{i // 250}.{i % 250 + 1}" for i in range(v4)))
    aaaa = _answer(name, "AAAA", tuple(f"2001:db8::{i + 1}" for i in range(v6)))
    return MxHost(preference=10, host=name, a=a, aaaa=aaaa, tlsa=None, tlsa_skipped=None)


def test_addresses_beyond_the_caps_are_counted_not_dropped() -> None:
    """200 addresses on one host: 4 probed; a domain budget spent in preference order."""
    hosts = (_host("mx1.test", 200, 6), _host("mx2.test", 3), _host("mx3.test", 2))
    selected = capped_addresses(hosts, ipv6=True, per_host=4, per_domain=10)
    assert [len(p) for p, _ in selected] == [8, 2, 0]
    assert selected[0][0] == [
        *(f"192.0.0.{i}" for i in (1, 2, 3, 4)),
        *(f"2001:db8::{i}" for i in (1, 2, 3, 4)),
    ]
    assert selected[0][1] == {"host-cap": 198}
    assert selected[1][1] == {"domain-cap": 1}
    assert selected[2][1] == {"domain-cap": 2}
    assert sum(len(p) + sum(s.values()) for p, s in selected) == 200 + 6 + 3 + 2
