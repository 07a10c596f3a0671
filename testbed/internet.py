"""The Internet-like conditions of the test world: latency, hostile hosts, their scenario set.

Theory of operation
-------------------
A scan on the Internet meets latency on every protocol and a tail of hosts that
set its wall time: they accept and never greet, drop SYNs, tarpit, greylist,
answer 421 above a few connections, have hundreds of addresses, or publish an
AAAA that never answers; MTA-STS policy hosts that stay silent or trickle
their body.  This module brings those into the test world in two forms:

* **The profile** (``internet.toml``; ``testbed up --domains N --profile
  internet``): the study's scale world, its self-hosted MX hosts (one operator
  each) turned hostile at the profile's shares, its policy hosts silent or slow,
  and latency on DNS, SMTP and HTTPS (``Conditions``).  The hostile draws use an
  RNG of their own (``Hostile``), so the world's domains, providers and
  certificates are those of the same seed without them: a profile with the
  shares set to 0 is the same world with no unresponsive hosts.  A profile file
  may say ``extends = "internet"`` and override any value.
* **The scenario set** (``testbed up --scenarios internet``): one domain per
  behaviour, named for what it shows, served under the profile's latency.  Apart
  from the catalogue's scenario world, so the e2e tests that scan that world
  with short timeouts stay fast.

How each behaviour is served (``smtpfleet.py``, ``httpsserver.py``): silent is
a listener that never writes; SYN drop a listener whose one-place accept queue
the fleet fills itself and never accepts from, so the kernel drops later SYNs
and a connect times out (loopback never answers them with RST); IPv6: loopback
has only ::1, so in this world ::1 is a SYN-drop address, and a host "with a
silent IPv6 address" has its own 127.x address working plus AAAA ::1.

What a correct scan reports for each is the truth's (``truth.py``), under the
scanner's documented policy (``scanpolicy.py``).  Delays are drawn clear of
that policy's deadlines (``ScanPolicy.margin``) so jitter cannot turn a verdict.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from testbed.addressing import IPV6_LOOPBACK
from testbed.scanpolicy import DEFAULT_POLICY, ScanPolicy
from testbed.scenarios import SCENARIO_SUFFIX, Builder, Scenario, policy_body, sts_txt
from testbed.world import (
    CertKind,
    Conditions,
    Domain,
    HostAddress,
    HostRole,
    Latency,
    MtaStsPolicy,
    Mx,
    PolicyHttp,
    SmtpBehaviour,
    World,
)

if TYPE_CHECKING:
    from testbed.scale import Profile

__all__ = [
    "BUILTIN_PROFILES",
    "HOSTILE_SHARES",
    "INTERNET_SCENARIOS",
    "Hostile",
    "conditions",
    "internet_scenario_world",
    "profile_file",
]

#: Profiles shipped with the world, by name (``--profile internet``).
BUILTIN_PROFILES = {"internet": Path(__file__).with_name("internet.toml")}
#: The profile fields that are shares of hostile hosts (recorded in the world's conditions).
HOSTILE_SHARES = (
    "silent",
    "syn_drop",
    "tarpit",
    "greylist",
    "client_limit",
    "many_addresses",
    "ipv6_silent",
    "sts_silent",
    "sts_slow_body",
)
#: Tail-host kinds drawn with one number (mutually exclusive), in this order.
_TAIL_KINDS = ("silent", "syn_drop", "tarpit", "greylist", "client_limit", "many_addresses")
_S = SmtpBehaviour
#: The behaviours of a many-address host's addresses, drawn evenly (refused, silent, working).
_MANY_MIX = (_S.REFUSED, _S.BLACKHOLE, _S.SYN_DROP, _S.GOOD, _S.GOOD, _S.REFUSED)


def profile_file(name_or_path: str | Path) -> Path:
    """The TOML file of a built-in profile name, else the path itself."""
    text = str(name_or_path)
    if text in BUILTIN_PROFILES and not Path(text).exists():
        return BUILTIN_PROFILES[text]
    return Path(name_or_path)


def conditions(p: Profile) -> Conditions:
    """The world-level conditions a profile asks for (latency, shares, sources)."""
    return Conditions(
        dns=Latency(p.dns_rtt, p.dns_jitter),
        smtp=Latency(p.smtp_rtt, p.smtp_jitter),
        https=Latency(p.https_rtt, p.https_jitter),
        shares=tuple((k, float(getattr(p, k))) for k in HOSTILE_SHARES),
        sources=tuple(sorted(p.sources.items())),
        profile=p.name,
    )


class Hostile:
    """Draws which self-hosted hosts and policy hosts misbehave, and how (own RNG)."""

    def __init__(self, p: Profile, seed: int, policy: ScanPolicy = DEFAULT_POLICY) -> None:
        self.p = p
        self.policy = policy
        self.active = any(getattr(p, k) > 0 for k in HOSTILE_SHARES)
        self.rng = random.Random(f"internet:{seed}")
        cum, total = [], 0.0
        for kind in _TAIL_KINDS:
            total += getattr(p, kind)
            cum.append((total, kind))
        self._cum = cum

    def tail_host(self, b: Builder, kw: dict[str, object]) -> None:
        """Turn the keyword arguments of a self-hosted MX host hostile, at the profile's shares."""
        if not self.active:
            return
        x = self.rng.random()
        kind = next((k for c, k in self._cum if x < c), "")
        if kind == "silent":
            kw["smtp"] = _S.BLACKHOLE
        elif kind == "syn_drop":
            kw["smtp"] = _S.SYN_DROP
        elif kind == "tarpit":
            kw.update(tarpit_kwargs(self.rng, self.p, self.policy))
        elif kind == "greylist":
            kw["smtp"] = _S.GREYLIST
        elif kind == "client_limit":
            kw.update(smtp=_S.CLIENT_LIMIT, client_limit=max(int(self.p.client_limit_n), 1))
        elif kind == "many_addresses":
            low, high = math.log(max(self.p.many_min, 2)), math.log(max(self.p.many_max, self.p.many_min, 2))
            n = round(math.exp(self.rng.uniform(low, high)))
            kw["smtp"] = self.rng.choice(_MANY_MIX)
            kw["extra"] = tuple(HostAddress(b.alloc.next(), self.rng.choice(_MANY_MIX)) for _ in range(n - 1))
        elif self.rng.random() < self.p.ipv6_silent:
            kw["extra"] = (HostAddress(IPV6_LOOPBACK, _S.SYN_DROP),)

    def policy_http(self, policy: MtaStsPolicy) -> MtaStsPolicy:
        """An MTA-STS policy served silent or slow, at the profile's shares."""
        if not self.active:
            return policy
        x = self.rng.random()
        if x < self.p.sts_silent:
            return replace(policy, http=PolicyHttp.SILENT, mode=None, valid=False, reasons=("timeout-tls",))
        if x < self.p.sts_silent + self.p.sts_slow_body:
            seconds = self.rng.uniform(self.p.sts_slow_min, max(self.p.sts_slow_max, self.p.sts_slow_min))
            seconds = self.policy.clear_of(seconds, min(self.policy.fetch_body, self.policy.fetch_total))
            return replace(policy, http=PolicyHttp.SLOW_BODY, body_seconds=round(seconds, 3))
        return policy


def tarpit_kwargs(rng: random.Random, p: Profile, policy: ScanPolicy = DEFAULT_POLICY) -> dict[str, object]:
    """A tarpit: greeting after tarpit_min..max s, each reply after tarpit_reply_min..max s,
    both clear of the policy's phase deadline."""
    greeting = policy.clear_of(
        rng.uniform(p.tarpit_min, max(p.tarpit_max, p.tarpit_min)), policy.phase_timeout
    )
    reply = rng.uniform(p.tarpit_reply_min, max(p.tarpit_reply_max, p.tarpit_reply_min))
    reply = policy.clear_of(reply, policy.phase_timeout)
    return {"smtp": _S.TARPIT_GREETING, "greeting_delay": round(greeting, 3), "reply_delay": round(reply, 3)}


# -- the scenario set -----------------------------------------------------------------------


def _mx(name: str, b: Builder, **kw: object) -> Domain:
    """A domain whose single MX ``mx.<name>`` is its own (self-hosted) host."""
    mx = f"mx.{name}"
    b.host(mx, banner=f"{mx} ESMTP mxscan-testbed", **kw)  # type: ignore[arg-type]
    return Domain(name, mx=(Mx(10, mx),))


def _smtp(**kw: object) -> Callable[[str, Builder], Domain]:
    return lambda name, b: _mx(name, b, **kw)


def _many(pattern: tuple[SmtpBehaviour, ...], count: int) -> Callable[[str, Builder], Domain]:
    """An MX host with ``count`` IPv4 addresses whose behaviours cycle through ``pattern``."""

    def build(name: str, b: Builder) -> Domain:
        extra = tuple(HostAddress(b.alloc.next(), pattern[i % len(pattern)]) for i in range(1, count))
        return _mx(name, b, smtp=pattern[0], extra=extra)

    return build


def _sts(http: PolicyHttp, seconds: float = 0.0) -> Callable[[str, Builder], Domain]:
    """A working self-hosted MX with an enforce policy whose host is silent or slow."""

    def build(name: str, b: Builder) -> Domain:
        domain = _mx(name, b)
        b.host(f"mta-sts.{name}", role=HostRole.POLICY, smtp=None, cert=CertKind.VALID)
        body = policy_body("enforce", (f"mx.{name}",))
        if http is PolicyHttp.SILENT:
            policy = MtaStsPolicy(body, http, None, False, ("timeout-tls",))
        else:  # the truth decides from the fetch deadlines whether the body arrives in time
            policy = MtaStsPolicy(body, http, "enforce", body_seconds=seconds)
        return replace(domain, sts_txt=(sts_txt(),), policy=policy)

    return build


#: Mixed: the first four (what a scan probes) are refused, silent, working, SYN-dropping.
_MIXED = (_S.REFUSED, _S.BLACKHOLE, _S.GOOD, _S.SYN_DROP, _S.GOOD, _S.REFUSED, _S.BLACKHOLE, _S.GOOD)

INTERNET_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "latency-only", "internet", "a well-behaved self-hosted MX behind the profile's latency", _smtp()
    ),
    Scenario("silent-after-accept", "internet", "accepts TCP and never greets", _smtp(smtp=_S.BLACKHOLE)),
    Scenario(
        "syn-drop", "internet", "never completes the TCP handshake (SYNs dropped)", _smtp(smtp=_S.SYN_DROP)
    ),
    Scenario(
        "tarpit-short",
        "internet",
        "greets after 12 s, each reply after 3 s: inside a 20 s phase deadline",
        _smtp(smtp=_S.TARPIT_GREETING, greeting_delay=12.0, reply_delay=3.0),
    ),
    Scenario(
        "tarpit-long",
        "internet",
        "greets after 30 s: past a 20 s phase deadline",
        _smtp(smtp=_S.TARPIT_GREETING, greeting_delay=30.0, reply_delay=3.0),
    ),
    Scenario(
        "greylist", "internet", "451 to a client's first connection, 220 after", _smtp(smtp=_S.GREYLIST)
    ),
    Scenario(
        "421-above-2",
        "internet",
        "421 above 2 connections at once from one client",
        _smtp(smtp=_S.CLIENT_LIMIT, client_limit=2),
    ),
    Scenario(
        "many-addresses",
        "internet",
        "an MX host with 40 addresses: refused, silent, working",
        _many(_MIXED, 40),
    ),
    Scenario(
        "many-addresses-refused",
        "internet",
        "an MX host with 200 refused addresses",
        _many((_S.REFUSED,), 200),
    ),
    Scenario(
        "many-addresses-silent",
        "internet",
        "an MX host with 100 addresses that accept and never greet",
        _many((_S.BLACKHOLE,), 100),
    ),
    Scenario(
        "ipv6-silent",
        "internet",
        "IPv4 works; the AAAA (::1) never completes a TCP handshake",
        _smtp(extra=(HostAddress(IPV6_LOOPBACK, _S.SYN_DROP),)),
    ),
    Scenario(
        "sts-policy-silent", "internet", "the policy host accepts TCP, never answers", _sts(PolicyHttp.SILENT)
    ),
    Scenario(
        "sts-policy-slow-body",
        "internet",
        "the policy body trickles over 25 s: past a 10 s body deadline",
        _sts(PolicyHttp.SLOW_BODY, 25.0),
    ),
    Scenario(
        "sts-policy-slow-ok",
        "internet",
        "the policy body trickles over 4 s: inside a 10 s body deadline",
        _sts(PolicyHttp.SLOW_BODY, 4.0),
    ),
)


def internet_scenario_world(profile: Profile | None = None) -> World:
    """One domain per Internet-like scenario, ``<key>.scenario.test``, under ``profile``'s
    latency (default: the internet profile's)."""
    from testbed.scale import PROVIDERS, load_profile

    p = profile or load_profile("internet")
    b = Builder()
    domains = tuple(
        replace(s.build(f"{s.key}.{SCENARIO_SUFFIX}", b), scenario=s.key) for s in INTERNET_SCENARIOS
    )
    net = replace(conditions(p), shares=())  # one domain per behaviour: no shares
    return World(
        "internet-scenarios", domains, tuple(b.hosts), tuple(b.zones.values()), PROVIDERS, conditions=net
    )
