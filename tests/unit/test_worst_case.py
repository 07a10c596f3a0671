"""One domain's configured worst case (probes/retry.py DOMAIN_WORST_CASE) is the longest
path the one retry policy (probes/retry.py) allows with the default deadlines: every
sequence of attempt outcomes the policy lets happen, each attempt at the latest its kind can
end, the pauses the policy asks for between them.  The README and benchmarks/internet.py
quote this constant; 185 s (two whole exchanges and one pause) missed a transient refusal
before them, which costs one more attempt and one more pause."""

from __future__ import annotations

from collections.abc import Iterator

from probes.retry import (
    DOMAIN_WORST_CASE,
    SMTP_REFUSAL_WORST_CASE,
    SMTP_RETRIES,
    SMTP_RETRY_DELAY,
    RetryPolicy,
    Signal,
)
from probes.smtp.session import SMTP_CONNECT_TIMEOUT, SMTP_HOST_TIMEOUT, SMTP_TIMEOUT

#: The latest an attempt with each outcome ends (probes/retry.py smtp_signal): silence at the
#: whole-exchange deadline, a reset before the banner's, a refusal by the end of EHLO, any
#: definite outcome (a slow, complete exchange) at the whole-exchange deadline.
LATEST = {
    Signal.TIMEOUT: SMTP_HOST_TIMEOUT,
    Signal.RESET: SMTP_CONNECT_TIMEOUT + SMTP_TIMEOUT,
    Signal.GREYLIST: SMTP_REFUSAL_WORST_CASE,
    Signal.THROTTLE: SMTP_REFUSAL_WORST_CASE,
    Signal.DEFINITE: SMTP_HOST_TIMEOUT,
}
POLICY = RetryPolicy(
    timeout_retries=SMTP_RETRIES,
    transient_retries=SMTP_RETRIES,
    delay=SMTP_RETRY_DELAY,
)


def _paths(
    signals: tuple[Signal, ...] = (), spent: float = 0.0
) -> Iterator[tuple[tuple[Signal, ...], float]]:
    """Every finished sequence of outcomes the policy allows, with its latest end."""
    for signal in Signal:
        if signal is Signal.GREYLIST and signals:
            continue  # greylisting is a first contact's 450/451; later it is a throttle
        path, cost = (*signals, signal), spent + LATEST[signal]
        decision = POLICY.decide(path)
        if decision.retry:
            yield from _paths(path, cost + decision.delay)
        else:
            yield path, cost


def test_the_configured_worst_case_is_the_longest_path_the_retry_policy_allows() -> None:
    longest, cost = max(_paths(), key=lambda found: found[1])
    assert cost == DOMAIN_WORST_CASE == 240.0
    assert len(longest) == POLICY.max_attempts == 3
    assert sum(s in (Signal.GREYLIST, Signal.THROTTLE) for s in longest) == SMTP_RETRIES


def test_a_transient_refusal_before_two_whole_exchanges_exceeds_185_seconds() -> None:
    refused_then_silent = (Signal.GREYLIST, Signal.TIMEOUT, Signal.TIMEOUT)
    (cost,) = (c for path, c in _paths() if path == refused_then_silent)
    assert cost > 2 * SMTP_HOST_TIMEOUT + SMTP_RETRY_DELAY == 185.0
