"""The address caps (issue #12): the scanner (probes/plan.py ``capped_addresses``) and
the world's truth (testbed/truth.py) apply one rule, by position in the family as the
resolver returned the addresses: past the per-host cap is "host-cap" even when the domain's
budget ran out first; "domain-cap" otherwise, once the budget is spent."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from probes.dns.records import Answer, Dnssec, MxHost, Outcome
from probes.plan import capped_addresses
from testbed.internet import internet_scenario_world
from testbed.scanpolicy import DEFAULT_POLICY, ScanPolicy
from testbed.truth import MX_HOSTS_FOLLOWED, truth


def _answer(name: str, rrtype: str, data: tuple[str, ...]) -> Answer:
    outcome = Outcome.OK if data else Outcome.NODATA
    return Answer(name, rrtype, outcome, Dnssec.INSECURE, False, 300, (), data, "NOERROR", (), "")


def _host(name: str, ipv4: list[str], ipv6: list[str]) -> MxHost:
    return MxHost(
        preference=10,
        host=name,
        a=_answer(name, "A", tuple(ipv4)),
        aaaa=_answer(name, "AAAA", tuple(ipv6)),
        tlsa=None,
        tlsa_skipped=None,
    )


def test_a_domain_out_of_budget_on_a_many_address_host_counts_host_cap_by_position() -> None:
    """Budget 6: the first host takes 4; the second (6 addresses) gets 2, its 3rd-4th are
    domain-cap and its 5th-6th host-cap (they are past the 4 per family whatever the budget)."""
    first = _host("mx1.test", [f"192.0.2.{i}" for i in range(1, 5)], [])
    second = _host("mx2.test", [f"198.51.100.{i}" for i in range(1, 7)], [])
    (p1, s1), (p2, s2) = capped_addresses((first, second), ipv6=True, per_host=4, per_domain=6)
    assert len(p1) == 4 and s1 == {}
    assert p2 == ["198.51.100.1", "198.51.100.2"]
    assert s2 == {"domain-cap": 2, "host-cap": 2}


def test_each_family_has_its_own_positions() -> None:
    host = _host("mx.test", [f"192.0.2.{i}" for i in range(1, 7)], [f"2001:db8::{i}" for i in range(1, 7)])
    ((probed, skipped),) = capped_addresses((host,), ipv6=True, per_host=4, per_domain=5)
    assert probed == [*(f"192.0.2.{i}" for i in range(1, 5)), "2001:db8::1"]
    assert skipped == {"host-cap": 4, "domain-cap": 3}


def _scanner_view(row: dict[str, Any], policy: ScanPolicy) -> list[tuple[list[str], dict[str, int]]]:
    hosts = tuple(_host(h["host"], h["ipv4"], h["ipv6"]) for h in row["mx_hosts"][:MX_HOSTS_FOLLOWED])
    return capped_addresses(
        hosts,
        ipv6=True,
        per_host=policy.max_addresses_per_family,
        per_domain=policy.max_addresses_per_domain,
    )


@pytest.mark.parametrize(
    ("per_family", "per_domain"), [(4, 32), (4, 2), (4, 5), (1, 3), (2, 1), (40, 40), (4, 0)]
)
def test_scanner_and_truth_agree_on_every_address_of_the_internet_scenarios(
    per_family: int, per_domain: int
) -> None:
    policy = dataclasses.replace(
        DEFAULT_POLICY, max_addresses_per_family=per_family, max_addresses_per_domain=per_domain
    )
    for row in truth(internet_scenario_world(), policy=policy):
        followed = row["mx_hosts"][:MX_HOSTS_FOLLOWED]
        for host, (probed, skipped) in zip(followed, _scanner_view(row, policy), strict=True):
            expected = [a["address"] for a in host["addresses"] if a["probed"]]
            assert probed == expected, (row["scenario"], host["host"])
            assert skipped == host["not_probed"], (row["scenario"], host["host"])
