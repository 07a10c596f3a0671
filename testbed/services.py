"""World -> the SMTP hosts and MTA-STS policy sites the mail processes serve.

Theory of operation
-------------------
Every listening socket belongs to one *listener*: an MX host's address (SMTP)
or a policy host's address (HTTPS).  A world's listeners are split into
shards of at most ``MAX_SOCKETS_PER_PROCESS``, one mail process per shard,
because a process may hold at most 20,000 open files here (measured) and a
100k-domain world has ~27,000 listeners.  The split is a pure function of the
world.  ``up`` computes every shard in one pass (``shards``) and hands each mail
process its own in a *shard file* (``write_shard``/``read_shard``): the hosts,
policy sites and conditions of that shard only, so a mail process neither
rebuilds the world (~9 s of CPU and ~400 MB at 1M domains, 34 times over) nor
holds it.  ``serve-mail`` given a world spec instead computes its shard itself.

Listeners are per *address*: an MX host may have many (``Host.extra``, each
with its own behaviour), and hosts may share one (several on ::1); each address
is bound by exactly one shard (``Shard.addresses``), with every host on it.  A
"syn-drop" address costs two sockets (its listener and the connection that
fills its accept queue, ``smtpfleet``).

Hosts without a listener: an SMTP behaviour "refused" (nothing listens, so the
connection is refused), a policy "no-server", hosts without an address.

TLS: contexts are built on first use (``ContextCache``): SMTP on the first
STARTTLS, one per certificate, so a provider's hosts that share one share the
context; a policy site on its first handshake (~8,500 sites at 1M domains, ~2 ms
each, were built at start before).
"""

from __future__ import annotations

import functools
import os
import pickle
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from testbed.httpsserver import PolicySite
from testbed.smtpfleet import HostSpec
from testbed.world import (
    CertKind,
    Conditions,
    Domain,
    Host,
    HostAddress,
    HostRole,
    PolicyHttp,
    SmtpBehaviour,
    World,
)
from testbed.worldpki import CertSpec, ContextCache, cert_spec

__all__ = [
    "MAX_SOCKETS_PER_PROCESS",
    "Shard",
    "host_spec",
    "policy_hosts",
    "policy_site",
    "probe_address",
    "read_shard",
    "shard",
    "shard_count",
    "shards",
    "smtp_hosts",
    "write_shard",
]

#: Listening sockets per mail process: well under the 20,000 open-files hard limit,
#: leaving room for the connections a scan opens at once.
MAX_SOCKETS_PER_PROCESS = 8000


class Shard(NamedTuple):
    #: Hosts with at least one address this shard binds.
    smtp: list[Host]
    policy: list[tuple[Domain, Host]]
    #: The SMTP addresses this shard binds (every host on each of them is in ``smtp``).
    addresses: frozenset[str] = frozenset()


def _listens(address: HostAddress) -> bool:
    return address.smtp not in (None, SmtpBehaviour.REFUSED)


def smtp_hosts(world: World) -> Iterator[Host]:
    """MX hosts with at least one listening SMTP address, in world order, one per name."""
    for host in world.hosts:
        if host.role is not HostRole.MX or host.smtp is None:
            continue
        if any(_listens(a) for a in host.smtp_addresses()):
            yield host


def policy_hosts(world: World) -> Iterator[tuple[Domain, Host]]:
    """(domain, mta-sts.<domain> host) for every policy that is served by a listener."""
    hosts = {h.name: h for h in world.hosts if h.role is HostRole.POLICY}
    for domain in world.domains:
        policy = domain.policy
        if policy is None or policy.http is PolicyHttp.NO_SERVER:
            continue
        host = hosts.get(f"mta-sts.{domain.name}")
        if host is not None and host.ipv4 is not None:
            yield domain, host


class _Listener(NamedTuple):
    kind: str  # "policy" or "smtp"
    #: (domain, policy host) for "policy"; the address for "smtp".
    item: object
    #: Sockets it holds open.
    sockets: int


def _listeners(world: World) -> tuple[list[_Listener], dict[str, list[Host]]]:
    """Every listener in a fixed order, and the hosts on each SMTP address."""
    # Policy sites first: the first shard holds them, and every shard's size is bounded all the same.
    out = [_Listener("policy", p, 1) for p in policy_hosts(world)]
    on: dict[str, list[Host]] = {}
    for host in smtp_hosts(world):
        for a in host.smtp_addresses():
            if not _listens(a):
                continue
            if a.address not in on:  # one socket per address (::1 may be shared)
                on[a.address] = []
                out.append(_Listener("smtp", a.address, 2 if a.smtp is SmtpBehaviour.SYN_DROP else 1))
            on[a.address].append(host)
    return out, on


def shard_count(world: World, per_process: int = MAX_SOCKETS_PER_PROCESS) -> int:
    return _count(sum(listener.sockets for listener in _listeners(world)[0]), per_process)


def _count(sockets: int, per_process: int = MAX_SOCKETS_PER_PROCESS) -> int:
    return max(1, -(-sockets // per_process))


def shards(world: World, count: int | None = None) -> list[Shard]:
    """Every shard of ``count`` (None: ``shard_count``'s) at once, in one pass over the world
    (``up`` needs them all: one ``shard`` per index walked the whole world each time, 34
    times at 1M domains).

    Shard ``i`` is a contiguous run of listeners holding about 1/count of the sockets, with
    every host on each of its SMTP addresses.
    """
    listeners, on = _listeners(world)
    total = sum(listener.sockets for listener in listeners)
    count = count or _count(total)
    size = -(-total // count) if total else 0
    policy: list[list[tuple[Domain, Host]]] = [[] for _ in range(count)]
    addresses: list[set[str]] = [set() for _ in range(count)]
    hosts: list[dict[str, Host]] = [{} for _ in range(count)]
    start = 0
    for listener in listeners:
        index = start // size  # start < total <= count * size: always a shard
        start += listener.sockets
        if listener.kind == "policy":
            policy[index].append(listener.item)  # type: ignore[arg-type]
            continue
        address = str(listener.item)
        addresses[index].add(address)
        for host in on[address]:
            hosts[index].setdefault(host.name, host)
    return [Shard(list(hosts[i].values()), policy[i], frozenset(addresses[i])) for i in range(count)]


def shard(world: World, index: int, count: int) -> Shard:
    """Shard ``index`` of ``count`` (``shards``)."""
    return shards(world, count)[index]


def write_shard(path: Path, part: Shard, conditions: Conditions) -> None:
    """Save one mail process's shard and the world's conditions, atomically (temp, rename).

    Pickle, because the file is ``up``'s message to its own child process: written in
    the state dir ``up`` uses for the PIDs it signals (the same trust), read once, by
    the same code.  It holds the shard's hosts and policy sites, a few MB at most.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as out:
        pickle.dump((part, conditions), out, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def read_shard(path: Path) -> tuple[Shard, Conditions]:
    """What ``write_shard`` saved; ValueError when the file is not a shard file."""
    with path.open("rb") as stream:
        try:
            loaded = pickle.load(stream)  # our own file: see write_shard
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise ValueError(f"{path}: not a shard file ({exc})") from None
    if not (isinstance(loaded, tuple) and len(loaded) == 2):
        raise ValueError(f"{path}: not a shard file")
    part, conditions = loaded
    if not isinstance(part, Shard) or not isinstance(conditions, Conditions):
        raise ValueError(f"{path}: not a shard file")
    return part, conditions


#: Behaviours ``status`` may connect to: they accept, and one connection from 127.0.0.1
#: changes nothing a scan then sees (a greylisting host would pass that client from then on).
_QUIET = frozenset(SmtpBehaviour) - {SmtpBehaviour.SYN_DROP, SmtpBehaviour.REFUSED, SmtpBehaviour.GREYLIST}


def probe_address(part: Shard) -> tuple[str, str] | None:
    """("smtp"|"https", address) of one listener of the shard: ``status`` connects to it."""
    for host in part.smtp:
        for a in host.smtp_addresses():
            if a.address in part.addresses and a.smtp in _QUIET:
                return "smtp", a.address
    for _, site in part.policy:
        if site.ipv4:
            return "https", site.ipv4
    return None


def host_spec(host: Host, contexts: ContextCache) -> list[HostSpec]:
    """The SMTP fleet's spec(s) for ``host``: one per address it listens on."""
    assert host.smtp is not None
    spec = cert_spec(host)
    factory: Callable[[], ssl.SSLContext] | None = None
    if spec is not None:  # hosts sharing a certificate share its context (``ContextCache``)
        factory = functools.partial(contexts.for_cert, spec)
    return [
        HostSpec(
            name=host.name,
            address=a.address,
            behaviour=a.smtp.value,
            banner=host.banner,
            provider=host.provider,
            tls_factory=factory,
            provider_limit=host.connection_limit,
            greeting_delay=host.greeting_delay,
            reply_delay=host.reply_delay,
            client_limit=host.client_limit,
        )
        for a in host.smtp_addresses()
        if a.smtp is not None
    ]


def policy_cert_spec(domain: Domain, host: Host) -> CertSpec:
    """The certificate the policy host of ``domain`` presents (issued for its name alone)."""
    assert domain.policy is not None
    wrong = domain.policy.http is PolicyHttp.WRONG_CERT
    kind = CertKind.WRONG_NAME if wrong else (host.cert or CertKind.VALID)
    return CertSpec((host.name,), kind.value)


def policy_site(domain: Domain, host: Host, contexts: ContextCache) -> PolicySite:
    """The HTTPS site of ``domain``'s policy; its TLS context is built on the first handshake
    unless ``ContextCache.prebuild`` built it before."""
    assert domain.policy is not None and host.ipv4 is not None
    return PolicySite(
        host_name=host.name,
        address=host.ipv4,
        body=domain.policy.body,
        behaviour=domain.policy.http.value,
        tls=None,
        tls_factory=functools.partial(contexts.for_cert, policy_cert_spec(domain, host)),
        body_seconds=domain.policy.body_seconds,
    )


def cert_specs(part: Shard) -> set[CertSpec]:
    """Every certificate the mail process of ``part`` presents: its SMTP hosts' on the
    addresses it binds, and its policy hosts'."""
    specs = {
        spec
        for host in part.smtp
        if (spec := cert_spec(host)) is not None
        and any(a.address in part.addresses and a.smtp is not None for a in host.smtp_addresses())
    }
    return specs | {policy_cert_spec(domain, host) for domain, host in part.policy}
