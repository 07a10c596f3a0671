"""World -> the SMTP hosts and MTA-STS policy sites the mail processes serve.

Theory of operation
-------------------
Every listening socket belongs to one *listener*: an MX host's address (SMTP)
or a policy host's address (HTTPS).  A world's listeners are split into
shards of at most ``MAX_SOCKETS_PER_PROCESS``, one mail process per shard,
because a process may hold at most 20,000 open files here (measured) and a
100k-domain world has ~27,000 listeners.  The split is a pure function of the
world, so ``up`` (which starts the processes and checks them) and each mail
process (which serves its shard) compute the same one independently.

Listeners are per *address*: an MX host may have many (``Host.extra``, each
with its own behaviour), and hosts may share one (several on ::1); each address
is bound by exactly one shard (``Shard.addresses``), with every host on it.  A
"syn-drop" address costs two sockets (its listener and the connection that
fills its accept queue, ``smtpfleet``).

Hosts without a listener: an SMTP behaviour "refused" (nothing listens, so the
connection is refused), a policy "no-server", hosts without an address.

TLS: SMTP contexts are built on the first STARTTLS (``ContextCache``), one
per certificate, so a provider's hosts that share one share the context;
policy sites, a few hundred even at 100k domains, get theirs at start.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Iterator
from typing import NamedTuple

from testbed.httpsserver import PolicySite
from testbed.smtpfleet import HostSpec
from testbed.world import CertKind, Domain, Host, HostAddress, HostRole, PolicyHttp, SmtpBehaviour, World
from testbed.worldpki import ContextCache, cert_spec

__all__ = [
    "MAX_SOCKETS_PER_PROCESS",
    "Shard",
    "host_spec",
    "policy_hosts",
    "policy_site",
    "probe_address",
    "shard",
    "shard_count",
    "smtp_hosts",
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
    sockets = sum(listener.sockets for listener in _listeners(world)[0])
    return max(1, -(-sockets // per_process))


def shard(world: World, index: int, count: int) -> Shard:
    """The listeners of shard ``index`` of ``count``: a contiguous run holding about 1/count
    of the sockets, with every host on each of its SMTP addresses."""
    listeners, on = _listeners(world)
    total = sum(listener.sockets for listener in listeners)
    size = -(-total // count) if total else 0
    result = Shard([], [], frozenset())
    addresses: set[str] = set()
    hosts: dict[str, Host] = {}
    start = 0
    for listener in listeners:
        mine = index * size <= start < (index + 1) * size
        start += listener.sockets
        if not mine:
            continue
        if listener.kind == "policy":
            result.policy.append(listener.item)  # type: ignore[arg-type]
            continue
        address = str(listener.item)
        addresses.add(address)
        for host in on[address]:
            hosts.setdefault(host.name, host)
    result.smtp.extend(hosts.values())
    return result._replace(addresses=frozenset(addresses))


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


def policy_site(domain: Domain, host: Host, contexts: ContextCache) -> PolicySite:
    assert domain.policy is not None and host.ipv4 is not None
    wrong = domain.policy.http is PolicyHttp.WRONG_CERT
    kind = CertKind.WRONG_NAME if wrong else (host.cert or CertKind.VALID)
    return PolicySite(
        host_name=host.name,
        address=host.ipv4,
        body=domain.policy.body,
        behaviour=domain.policy.http.value,
        tls=contexts.get(host.name, kind.value),
        body_seconds=domain.policy.body_seconds,
    )
