"""End to end on tier (b): the scenario world served by NSD (real DNSSEC signatures),
a validating unbound and nginx from Debian, scanned by the real command, every
domain held to the same ground truth as tier (a)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probes.results import read_domain_records
from testbed import control
from testbed.scenarios import scenario_world
from testbed.tier_b.nginx import nginx_binary
from testbed.tier_b.world_b import tools_missing
from testbed.truth import truth
from testbed.worldpki import WorldPki
from tests.e2e.test_scenario_truth import differences
from tests.e2e.worldscan import world_scan_argv

ROOT = Path(__file__).resolve().parents[2]
WORLD = scenario_world()

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or bool(tools_missing()) or nginx_binary() is None,
    reason="tier (b) needs root (port 53) and Debian's nsd, unbound and nginx (./dev test installs them)",
)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    state_dir = tmp_path_factory.mktemp("tier-b")
    control.up(control.WorldSpec("scenarios"), state_dir, tier="b", smtp_port=0)
    try:
        ep = json.loads((state_dir / "endpoints.json").read_text())
        out = state_dir / "results.ndjson"
        argv = world_scan_argv(ep, state_dir / "domains.txt", out, "--require-validation")
        subprocess.run(argv, cwd=ROOT, check=True, timeout=300)
        records = {r["domain"]: r for r in read_domain_records(out)}
        expected = {r["domain"]: r for r in truth(WORLD, WorldPki.load(state_dir / "pki").tlsa_data)}
        yield records, expected
    finally:
        assert set(control.down(state_dir)) >= {"unbound", "nsd", "nginx"}


def test_resolver_really_validates(scanned: tuple[dict[str, Any], dict[str, Any]]) -> None:
    records, _ = scanned
    assert all(r["scan"]["dnssec_validating"] for r in records.values())  # --require-validation passed


@pytest.mark.parametrize("domain", [pytest.param(d.name, id=d.name) for d in WORLD.domains])
def test_tier_b_scan_matches_truth(domain: str, scanned: tuple[dict[str, Any], dict[str, Any]]) -> None:
    records, expected = scanned
    assert differences(records[domain], expected[domain]) == []


def test_the_vantage_ptr_is_the_worlds_not_the_resolvers_own_localhost(
    scanned: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """unbound answers 127.in-addr.arpa itself by default (PTR localhost); the world delegates
    it from its root instead, so 127.0.0.1 has the world's forward-confirmed PTR (issue #16)."""
    records, _ = scanned
    (ptr,) = next(iter(records.values()))["scan"]["vantage"]["ptr"]
    assert (ptr["names"], ptr["fcrdns"]) == (["scanner.mxscan.test"], "confirmed")
