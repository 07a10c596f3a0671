"""End to end (issue 6 acceptance): per-provider limits against a provider that
enforces its own connection limit.

The scale world gets a throttling provider (profile ``throttled``): its
customers each have their own MX host in ``throttle.prov.test`` (so the
scanner's one-probe-per-host cache does not hide the load), and the provider
greets every connection above ``throttle_limit`` open at once, over all its
hosts, with 421.  All its hosts are served by one mail process, which counts
connections, peak open connections per provider and 421 refusals
(``control.mail_stats``).  The real ``mxscan scan`` runs twice:

* ``--provider-limit`` equal to the server's limit: no 421 at all;
* four times the server's limit: 421s come, the scanner backs off and retries,
  and every customer of the provider still ends with STARTTLS and a valid
  certificate (no "unknown" caused by throttling).

In both runs the world's peak never exceeds the configured limit.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest

from probes.results import read_domain_records
from testbed import control
from testbed.control import WorldSpec
from testbed.harness import RunningWorld, running_world
from testbed.scale import THROTTLE_PROVIDER, THROTTLE_ZONE
from tests.e2e.worldscan import world_scan_argv

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = 300
SEED = 3
SERVER_LIMIT = 4
PROFILE = f"sprinkle = 0.0\nthrottled = 0.5\nthrottle_limit = {SERVER_LIMIT}\n"
#: The provider as the scanner attributes it (``prov.test`` is a public suffix in the world).
PROVIDER = THROTTLE_ZONE
#: Enough quick retries to outlast the throttling provider's 421s.
RETRIES = ("--smtp-retries", "8", "--smtp-retry-delay", "0.05", "--provider-limit", "outlook.com=32")


class Run(NamedTuple):
    limit: int
    records: dict[str, dict[str, Any]]
    #: The mail process's counters for the throttling provider during the scan.
    peak: int
    refused: int
    connections: int


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWorld]:
    """Private (not the session's scenario world): its own scale spec, and each scan resets
    and reads the mail process's connection counters."""
    profile = tmp_path_factory.mktemp("profile") / "throttle.toml"
    profile.write_text(PROFILE)
    with running_world(WorldSpec("scale", DOMAINS, SEED, str(profile))) as running:
        # One process serves every host, so its peak is the provider's global peak.
        assert orjson.loads((running.state_dir / "world.json").read_bytes())["mail_processes"] == 1
        yield running


@pytest.fixture(scope="module")
def customers(world: RunningWorld) -> dict[str, str]:
    """Domain -> its MX host, for every customer of the throttling provider (world definition)."""
    spec = WorldSpec(**orjson.loads((world.state_dir / "world.json").read_bytes())["spec"])
    built = spec.build()
    limited = {h.name for h in built.hosts if h.provider == THROTTLE_PROVIDER}
    assert all(h.connection_limit == SERVER_LIMIT for h in built.hosts if h.name in limited)
    return {d.name: d.mx[0].host for d in built.domains if d.mx and d.mx[0].host in limited}


def _scan(world: RunningWorld, limit: int, out: Path) -> Run:
    control.mail_stats(world.state_dir, reset=True)
    argv = world_scan_argv(
        world.endpoints,
        world.state_dir / "domains.txt",
        out,
        *RETRIES,
        "--provider-limit",
        f"{PROVIDER}={limit}",
    )
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    (stats,) = control.mail_stats(world.state_dir)
    records = {r["domain"]: r for r in read_domain_records(out)}
    return Run(
        limit,
        records,
        peak=stats["peak_per_provider"].get(THROTTLE_PROVIDER, 0),
        refused=stats["refused_421"].get(THROTTLE_PROVIDER, 0),
        connections=stats["connections_per_provider"].get(THROTTLE_PROVIDER, 0),
    )


@pytest.fixture(scope="module")
def within_limit(world: RunningWorld, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _scan(world, SERVER_LIMIT, tmp_path_factory.mktemp("within") / "results.ndjson")


@pytest.fixture(scope="module")
def above_limit(world: RunningWorld, tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _scan(world, 4 * SERVER_LIMIT, tmp_path_factory.mktemp("above") / "results.ndjson")


def _addresses(run: Run, domain: str) -> list[dict[str, Any]]:
    transports = run.records[domain]["mx_transport"]
    assert [t["provider"] for t in transports] == [PROVIDER]
    found: list[dict[str, Any]] = transports[0]["addresses"]
    return found


def _assert_every_customer_measured(run: Run, customers: dict[str, str]) -> None:
    """No customer ends "unknown": STARTTLS and a valid certificate on its one MX host."""
    wrong = {
        domain: (r["status"], (r["posture"] or {}).get("starttls"), (r["posture"] or {}).get("pkix_valid"))
        for domain in customers
        if (r := run.records[domain])["status"] != "success"
        or (r["posture"] or {}).get("starttls") != "all"
        or (r["posture"] or {}).get("pkix_valid") != "all"
    }
    assert wrong == {}
    assert all(a["status"] == "success" for d in customers for a in _addresses(run, d))


def test_world_has_a_throttling_provider(customers: dict[str, str]) -> None:
    assert len(customers) > 10 * SERVER_LIMIT
    assert len(set(customers.values())) == len(customers)  # one MX host per customer


@pytest.mark.parametrize("which", ["within_limit", "above_limit"])
def test_peak_never_exceeds_the_configured_limit(which: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(which)
    assert 0 < run.peak <= run.limit


def test_within_the_servers_limit_nothing_is_refused(within_limit: Run, customers: dict[str, str]) -> None:
    assert within_limit.refused == 0
    assert within_limit.connections == len(customers)  # each host probed once
    assert within_limit.peak > 1  # the scanner does use the concurrency it is given
    _assert_every_customer_measured(within_limit, customers)


def test_above_the_servers_limit_the_scanner_backs_off_and_recovers(
    above_limit: Run, customers: dict[str, str]
) -> None:
    assert above_limit.refused > 0  # the provider did throttle this run
    retries = sum(a["attempts"] - 1 for d in customers for a in _addresses(above_limit, d))
    assert retries == above_limit.refused  # every 421 was retried, on the same host, later
    assert above_limit.connections == len(customers) + above_limit.refused
    _assert_every_customer_measured(above_limit, customers)
