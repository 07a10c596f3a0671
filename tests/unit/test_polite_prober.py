"""The polite prober (probes/smtp/polite.py) on a scripted SMTP exchanger and an injected
clock: what it retries and after which pause, what it tells a provider's back-off, what it
remembers of an address, and what it never contacts.  No sockets and no real sleeps: the
pauses are recorded and move the clock (the real-server side is
tests/integration/test_politeness.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable

from engine.backoff import AimdPolicy
from engine.exclude import ExcludeList
from engine.limits import KeyedLimiter, Limit
from engine.status import Status
from probes.mtasts.fetch import TIMEOUT_DETAIL, policy_url
from probes.mtasts.records import PolicyFetch
from probes.retry import CorrelatedSignals, RetryPolicy, UnreachableAddresses
from probes.smtp.polite import PoliteProber, Unresponsive
from probes.smtp.probe import Exchange, SmtpProbe
from probes.smtp.records import Phase, Signal, SmtpResult, Starttls
from probes.smtp.session import Observation
from tests.unit.fakeclock import FakeClock

PROVIDER = "prov.test"
MX_A, MX_B, MX_C = (f"{n}.{PROVIDER}" for n in ("a", "b", "c"))
ADDRESS = "192.0.2.25"
DELAY = 5.0
BASE_RATE = 8.0

Step = tuple[Status, Phase, int | None]
OK: Step = (Status.SUCCESS, Phase.DONE, 221)
GREYLISTED: Step = (Status.APPLICATION_ERROR, Phase.BANNER, 450)
BUSY: Step = (Status.APPLICATION_ERROR, Phase.BANNER, 421)
SILENT: Step = (Status.IO_TIMEOUT, Phase.BANNER, None)
DROPPED: Step = (Status.CONNECTION_TIMEOUT, Phase.CONNECT, None)
REFUSED: Step = (Status.CONNECTION_REFUSED, Phase.CONNECT, None)


class Clock(FakeClock):
    """Time moves only when the prober pauses (``sleep``: recorded) or a limiter waits."""

    @property
    def pauses(self) -> list[float]:
        return self.sleeps

    async def wait(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@dataclasses.dataclass(frozen=True)
class Port:
    port: int = 25


class Exchanger:
    """The SMTP prober: each (host, address) answers its script in order, the last step
    repeating; every connection kept."""

    settings = Port()

    def __init__(self, **scripts: Iterable[Step]) -> None:
        self.scripts = {host: list(steps) for host, steps in scripts.items()}
        self.calls: list[tuple[str, str]] = []

    async def exchange(self, host: str, address: str, /) -> Exchange:
        self.calls.append((host, address))
        steps = self.scripts[host.split(".")[0]]
        status, phase, code = steps.pop(0) if len(steps) > 1 else steps[0]
        starttls = Starttls.YES if status is Status.SUCCESS else Starttls.UNKNOWN
        obs = Observation(phase=phase, status=status, last_code=code, starttls=starttls)
        await asyncio.sleep(0)
        return Exchange(host, address, obs, 10.0)

    async def analyse(self, done: Exchange, /) -> SmtpProbe:
        obs = done.obs
        base = SmtpResult.not_measured(done.host, done.address, 25, obs.status, obs.detail)
        result = dataclasses.replace(
            base,
            phase=obs.phase,
            starttls=obs.starttls,
            last_code=obs.last_code,
            attempts=1,
            duration_ms=10.0,
        )
        return SmtpProbe(result, ())


def polite(
    exchanger: Exchanger,
    clock: Clock,
    *,
    retry: RetryPolicy | None = None,
    hosts: int = 3,
    cooldown: float = 0.0,
    exclude: ExcludeList | None = None,
) -> PoliteProber:
    addresses = KeyedLimiter(lambda _key: Limit(concurrency=1), clock=clock, sleep=clock.wait)
    providers = KeyedLimiter(
        lambda _key: Limit(concurrency=10, rate=BASE_RATE), clock=clock, sleep=clock.wait
    )
    return PoliteProber(
        prober=exchanger,
        address_limits=addresses,
        provider_limits=providers,
        backoff=AimdPolicy(
            providers,
            base_rate_for=lambda _key: BASE_RATE,
            floor=1.0,
            increase=1.0,
            cooldown=cooldown,
            clock=clock,
        ),
        provider_of=lambda host: host.split(".", 1)[1],
        active=asyncio.Semaphore(10),
        sockets=asyncio.Semaphore(10),
        retry=retry or RetryPolicy(timeout_retries=1, transient_retries=1, delay=DELAY),
        correlated=CorrelatedSignals(hosts=hosts, window=60.0, clock=clock),
        exclude=exclude,
        unresponsive=Unresponsive(clock),
        sleep=clock.sleep,
        clock=clock,
        unreachable=UnreachableAddresses(ttl=600.0, max_entries=100, clock=clock),
    )


def probe(prober: PoliteProber, host: str, address: str = ADDRESS) -> SmtpResult:
    return asyncio.run(prober.probe(host, address)).result


def throttles(prober: PoliteProber) -> int:
    return sum(s.throttles for s in prober.backoff.statistics() if s.key == PROVIDER)


# --- greylisting and throttles --------------------------------------------------------------


def test_greylisting_is_retried_once_after_the_pause_and_recorded() -> None:
    """RFC 6647 §2.1: a 450 on first contact asks the client to come back; the second
    answer is the result, the first is on the log, and the provider is not slowed."""
    clock, smtp = Clock(), Exchanger(a=[GREYLISTED, OK])
    prober = polite(smtp, clock)
    result = probe(prober, MX_A)
    assert len(smtp.calls) == 2 and clock.pauses == [DELAY]
    assert result.status is Status.SUCCESS and result.greylisted and result.attempts == 2
    assert [a.signal for a in result.attempt_log] == [Signal.GREYLIST, Signal.DEFINITE]
    assert throttles(prober) == 0


def test_greylisting_without_a_transient_retry_is_not_recorded_as_greylisted() -> None:
    """``greylisted`` says a later connection was made; with no transient retry allowed the
    450 stands as the result."""
    clock, smtp = Clock(), Exchanger(a=[GREYLISTED, OK])
    retry = RetryPolicy(timeout_retries=1, transient_retries=0, delay=DELAY)
    result = probe(polite(smtp, clock, retry=retry), MX_A)
    assert len(smtp.calls) == 1 and clock.pauses == []
    assert result.status is Status.APPLICATION_ERROR and not result.greylisted and result.attempts == 1


def test_the_duration_spans_the_retries_and_the_pause() -> None:
    clock = Clock()
    result = probe(polite(Exchanger(a=[GREYLISTED, OK]), clock), MX_A)
    assert result.duration_ms == DELAY * 1000


def test_a_second_refusal_after_greylisting_is_not_retried_and_is_a_throttle() -> None:
    """After the one transient retry, a 450 is no longer first contact: a throttle, which
    the provider's back-off hears; no third connection."""
    clock, smtp = Clock(), Exchanger(a=[GREYLISTED, GREYLISTED, OK])
    prober = polite(smtp, clock)
    result = probe(prober, MX_A)
    assert len(smtp.calls) == 2
    assert result.status is Status.APPLICATION_ERROR and result.greylisted and result.attempts == 2
    assert [a.signal for a in result.attempt_log] == [Signal.GREYLIST, Signal.THROTTLE]
    assert throttles(prober) == 1


def test_a_421_is_retried_after_the_pause_and_halves_the_provider_rate() -> None:
    """RFC 5321 §3.8: 421 closes the channel, "slow down" for the provider at once."""
    clock, smtp = Clock(), Exchanger(a=[BUSY, OK])
    prober = polite(smtp, clock, cooldown=60.0)  # no recovery within the test
    result = probe(prober, MX_A)
    assert len(smtp.calls) == 2 and clock.pauses == [DELAY]
    assert result.status is Status.SUCCESS and not result.greylisted
    assert [a.signal for a in result.attempt_log] == [Signal.THROTTLE, Signal.DEFINITE]
    assert prober.backoff.rate(PROVIDER) == BASE_RATE / 2


def test_the_pause_doubles_with_each_421_already_seen() -> None:
    clock, smtp = Clock(), Exchanger(a=[BUSY, BUSY, BUSY, OK])
    retry = RetryPolicy(timeout_retries=1, transient_retries=3, delay=DELAY)
    result = probe(polite(smtp, clock, retry=retry), MX_A)
    assert clock.pauses == [DELAY, 2 * DELAY, 4 * DELAY]
    assert result.status is Status.SUCCESS and result.attempts == 4


def test_a_definite_answer_lets_a_throttled_provider_recover() -> None:
    """Additive increase: after the cut and a quiet cooldown, a success raises the rate."""
    clock = Clock()
    prober = polite(Exchanger(a=[BUSY, OK], b=[OK]), clock, cooldown=1.0)
    probe(prober, MX_A)
    assert prober.backoff.rate(PROVIDER) == BASE_RATE / 2 + 1.0  # the retry's success, DELAY later
    clock.now += 2.0
    probe(prober, MX_B)
    assert prober.backoff.rate(PROVIDER) == BASE_RATE / 2 + 2.0


# --- silence: the host's problem, a provider's only when correlated -----------------------------


def test_a_silent_host_is_retried_once_and_never_slows_its_provider_alone() -> None:
    clock, smtp = Clock(), Exchanger(a=[SILENT])
    prober = polite(smtp, clock)
    result = probe(prober, MX_A)
    assert len(smtp.calls) == 2 and clock.pauses == [DELAY]
    assert result.status is Status.IO_TIMEOUT and result.attempts == 2
    assert [a.signal for a in result.attempt_log] == [Signal.TIMEOUT, Signal.TIMEOUT]
    assert throttles(prober) == 0 and prober.backoff.rate(PROVIDER) == BASE_RATE
    assert prober.slow_lane.is_slow(MX_A)


def test_timeouts_at_enough_distinct_hosts_of_a_provider_slow_it_down() -> None:
    """Correlated across hosts=2 distinct hosts within the window: a provider-level signal."""
    clock = Clock()
    retry = RetryPolicy(timeout_retries=0, transient_retries=1, delay=DELAY)
    prober = polite(Exchanger(a=[SILENT], b=[SILENT]), clock, retry=retry, hosts=2)
    probe(prober, MX_A, "192.0.2.1")
    assert throttles(prober) == 0
    probe(prober, MX_B, "192.0.2.2")
    assert throttles(prober) == 1 and prober.backoff.rate(PROVIDER) == BASE_RATE / 2


def test_timeouts_of_one_host_at_many_addresses_stay_that_hosts_problem() -> None:
    clock = Clock()
    retry = RetryPolicy(timeout_retries=0, transient_retries=1, delay=DELAY)
    prober = polite(Exchanger(a=[SILENT]), clock, retry=retry, hosts=2)
    for n in range(1, 5):
        probe(prober, MX_A, f"192.0.2.{n}")
    assert throttles(prober) == 0


def test_timeouts_further_apart_than_the_window_do_not_correlate() -> None:
    clock = Clock()
    retry = RetryPolicy(timeout_retries=0, transient_retries=1, delay=DELAY)
    prober = polite(Exchanger(a=[SILENT], b=[SILENT]), clock, retry=retry, hosts=2)
    probe(prober, MX_A, "192.0.2.1")
    clock.now += 61.0
    probe(prober, MX_B, "192.0.2.2")
    assert throttles(prober) == 0


# --- unreachable addresses ------------------------------------------------------------------


def test_a_refused_address_is_not_retried_and_is_remembered_for_other_names() -> None:
    clock, smtp = Clock(), Exchanger(a=[REFUSED], b=[OK])
    prober = polite(smtp, clock)
    first = probe(prober, MX_A)
    second = probe(prober, MX_B)
    assert smtp.calls == [(MX_A, ADDRESS)] and clock.pauses == []
    assert first.status is Status.CONNECTION_REFUSED and first.attempts == 1
    assert second.status is Status.CONNECTION_REFUSED and second.attempts == 0
    assert f"smtp:{MX_A}@{ADDRESS}:25" in second.detail and second.phase is Phase.CONNECT


def test_dropped_syns_are_retried_once_and_then_remembered() -> None:
    clock, smtp = Clock(), Exchanger(a=[DROPPED], b=[OK])
    prober = polite(smtp, clock)
    assert probe(prober, MX_A).attempts == 2
    second = probe(prober, MX_B)
    assert smtp.calls == [(MX_A, ADDRESS)] * 2
    assert second.status is Status.CONNECTION_TIMEOUT and second.attempts == 0


def test_an_address_that_answers_on_the_retry_is_not_remembered() -> None:
    clock, smtp = Clock(), Exchanger(a=[DROPPED, OK], b=[OK])
    prober = polite(smtp, clock)
    probe(prober, MX_A)
    assert probe(prober, MX_B).status is Status.SUCCESS
    assert smtp.calls[-1] == (MX_B, ADDRESS) and len(prober.unreachable) == 0


def test_names_at_an_address_whose_verdict_is_pending_wait_instead_of_connecting() -> None:
    """While the first probe pauses between two dropped connects, the other names at the
    address wait for its verdict and are then recorded without a connection of their own."""
    clock, smtp = Clock(), Exchanger(a=[DROPPED], b=[OK], c=[OK])
    prober = polite(smtp, clock)

    async def together() -> list[SmtpProbe]:
        return await asyncio.gather(*(prober.probe(h, ADDRESS) for h in (MX_A, MX_B, MX_C)))

    first, second, third = (p.result for p in asyncio.run(together()))
    assert smtp.calls == [(MX_A, ADDRESS)] * 2
    assert first.attempts == 2
    assert (second.status, second.attempts) == (Status.CONNECTION_TIMEOUT, 0)
    assert (third.status, third.attempts) == (Status.CONNECTION_TIMEOUT, 0)
    assert prober.unresponsive.targets() == []


# --- exclusions and the visible tail ----------------------------------------------------------


def test_excluded_names_and_addresses_are_never_contacted() -> None:
    clock, smtp = Clock(), Exchanger(a=[OK], b=[OK])
    exclude = ExcludeList.from_lines([MX_A, "198.51.100.0/24"])
    prober = polite(smtp, clock, exclude=exclude)
    by_name = probe(prober, MX_A)
    by_address = probe(prober, MX_B, "198.51.100.7")
    assert smtp.calls == []
    for result in (by_name, by_address):
        assert (result.status, result.detail, result.starttls) == (
            Status.SKIPPED,
            "excluded",
            Starttls.UNKNOWN,
        )


def test_a_target_pausing_before_its_retry_is_unresponsive_until_its_deadline() -> None:
    clock, smtp = Clock(), Exchanger(a=[SILENT, OK])
    prober = polite(smtp, clock)
    seen: list[tuple[list[tuple[str, str]], float | None]] = []

    async def pause(seconds: float) -> None:
        seen.append((prober.unresponsive.targets(), prober.unresponsive.latest()))
        await clock.sleep(seconds)

    prober.sleep = pause
    probe(prober, MX_A)
    assert seen == [([(MX_A, ADDRESS)], DELAY + prober.exchange_bound)]
    assert prober.unresponsive.targets() == []


# --- active slots: CPU work, not waiting ------------------------------------------------------


class Gated(Exchanger):
    """``a`` waits for ``gate`` before answering (a host slow to greet)."""

    def __init__(self) -> None:
        super().__init__(a=[OK], b=[OK])
        self.gate = asyncio.Event()

    async def exchange(self, host: str, address: str, /) -> Exchange:
        if host == MX_A:
            await self.gate.wait()
        return await super().exchange(host, address)


def test_a_connection_past_its_active_grace_gives_its_active_slot_to_others() -> None:
    """One active slot: the second probe can only run (and open the gate the first waits
    for) once the first has handed its slot back after ``active_grace``."""
    smtp = Gated()
    prober = polite(smtp, Clock())
    prober.active = asyncio.Semaphore(1)
    prober.active_grace = 0.01

    async def both() -> tuple[SmtpProbe, SmtpProbe]:
        slow = asyncio.create_task(prober.probe(MX_A, "192.0.2.1"))
        await asyncio.sleep(0)
        fast = await prober.probe(MX_B, "192.0.2.2")
        smtp.gate.set()
        return await slow, fast

    slow, fast = asyncio.run(asyncio.wait_for(both(), 30))
    assert slow.result.status is fast.result.status is Status.SUCCESS


def test_a_host_in_the_slow_lane_never_takes_an_active_slot() -> None:
    smtp = Gated()
    smtp.gate.set()
    prober = polite(smtp, Clock())
    prober.active = asyncio.Semaphore(0)  # nobody may take one
    prober.slow_lane.observe(MX_A, greeting_delay=None, timed_out=True)
    result = asyncio.run(asyncio.wait_for(prober.probe(MX_A, ADDRESS), 30)).result
    assert result.status is Status.SUCCESS


# --- policy fetches -------------------------------------------------------------------------


class PolicyHost:
    """The policy fetch: the first ``silent`` fetches time out, later ones get the policy;
    a third fetch is a failure of the retry policy."""

    def __init__(self, silent: int) -> None:
        self.silent = silent
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, domain: str, address: str, /) -> tuple[PolicyFetch, bytes | None]:
        self.calls.append((domain, address))
        if len(self.calls) > 2:
            raise AssertionError("a third fetch")
        url = policy_url(domain)
        if len(self.calls) <= self.silent:
            return PolicyFetch.not_fetched(url, address, Status.IO_TIMEOUT, f"{TIMEOUT_DETAIL} headers"), None
        fetched = PolicyFetch.not_fetched(url, address, Status.SUCCESS, "")
        return dataclasses.replace(fetched, http_status=200), b"body"


def test_a_policy_fetch_that_timed_out_is_retried_once_with_its_duration_spanning_both() -> None:
    clock, host = Clock(), PolicyHost(silent=1)
    fetched, body = asyncio.run(polite(Exchanger(), clock).fetch(host, "example.test", ADDRESS))
    assert host.calls == [("example.test", ADDRESS)] * 2 and clock.pauses == [DELAY]
    assert fetched.status is Status.SUCCESS and body == b"body"
    assert fetched.duration_ms == DELAY * 1000


def test_a_policy_host_silent_twice_is_not_fetched_a_third_time() -> None:
    clock, host = Clock(), PolicyHost(silent=2)
    fetched, body = asyncio.run(polite(Exchanger(), clock).fetch(host, "example.test", ADDRESS))
    assert len(host.calls) == 2 and clock.pauses == [DELAY]
    assert fetched.status is Status.IO_TIMEOUT and body is None


def test_an_excluded_policy_host_is_never_fetched() -> None:
    prober = polite(Exchanger(), Clock(), exclude=ExcludeList.from_lines(["mta-sts.example.test"]))
    host = PolicyHost(silent=0)
    fetched, body = asyncio.run(prober.fetch(host, "example.test", ADDRESS))
    assert host.calls == []
    assert (fetched.status, fetched.detail, body) == (Status.SKIPPED, "excluded", None)
