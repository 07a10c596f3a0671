"""World -> the SMTP hosts and MTA-STS policy sites the mail processes serve.

Theory of operation
-------------------
Every listening socket belongs to one *listener*: an MX host's address (SMTP)
or a policy host's address (HTTPS).  A world's listeners are split into
shards of at most ``MAX_SOCKETS_PER_PROCESS``, one mail process per shard,
because a process may hold at most 20,000 open files here (NOTES.md) and a
100k-domain world has ~27,000 listeners.  The split is a pure function of the
world, so ``up`` (which starts the processes and checks them) and each mail
process (which serves its shard) compute the same one independently.

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
from testbed.world import CertKind, Domain, Host, HostRole, PolicyHttp, SmtpBehaviour, World
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
    smtp: list[Host]
    policy: list[tuple[Domain, Host]]


def smtp_hosts(world: World) -> Iterator[Host]:
    """MX hosts with an address and a listening SMTP service, in world order, one per name."""
    for host in world.hosts:
        if host.role is not HostRole.MX or host.smtp in (None, SmtpBehaviour.REFUSED):
            continue
        if host.ipv4 is None and host.ipv6 is None:
            continue
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


def _listeners(world: World) -> list[tuple[str, object]]:
    # Policy sites first: the first shard holds them, and every shard's size is bounded all the same.
    out: list[tuple[str, object]] = [("policy", p) for p in policy_hosts(world)]
    seen: set[str] = set()
    for host in smtp_hosts(world):
        for address in (host.ipv4, host.ipv6):
            if address and address not in seen:  # one socket per address (::1 may be shared)
                seen.add(address)
                out.append(("smtp", host))
                break
        else:
            out.append(("smtp-shared", host))
    return out


def shard_count(world: World, per_process: int = MAX_SOCKETS_PER_PROCESS) -> int:
    sockets = sum(kind != "smtp-shared" for kind, _ in _listeners(world))
    return max(1, -(-sockets // per_process))


def shard(world: World, index: int, count: int) -> Shard:
    """The hosts and sites of shard ``index`` of ``count``: contiguous runs of listeners.

    Hosts sharing an address (listed as "smtp-shared") go with the shard that binds it.
    """
    listeners = _listeners(world)
    sockets = [item for item in listeners if item[0] != "smtp-shared"]
    size = -(-len(sockets) // count) if sockets else 0
    mine = sockets[index * size : (index + 1) * size]
    result = Shard([], [])
    addresses: set[str] = set()
    for kind, item in mine:
        if kind == "policy":
            result.policy.append(item)  # type: ignore[arg-type]
        else:
            assert isinstance(item, Host)
            result.smtp.append(item)
            addresses.update(a for a in (item.ipv4, item.ipv6) if a)
    for kind, item in listeners:
        if kind == "smtp-shared":
            assert isinstance(item, Host)
            if {a for a in (item.ipv4, item.ipv6) if a} & addresses:
                result.smtp.append(item)
    return result


def probe_address(part: Shard) -> tuple[str, str] | None:
    """("smtp"|"https", address) of one listener of the shard: ``status`` connects to it."""
    if part.smtp:
        host = part.smtp[0]
        return "smtp", host.ipv4 or host.ipv6 or ""
    if part.policy:
        return "https", part.policy[0][1].ipv4 or ""
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
            address=address,
            behaviour=host.smtp.value,
            banner=host.banner,
            provider=host.provider,
            tls_factory=factory,
            provider_limit=host.connection_limit,
        )
        for address in (host.ipv4, host.ipv6)
        if address
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
    )
