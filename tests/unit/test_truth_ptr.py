"""The ground truth's reverse DNS per MX address (issue #16), derived from the world's PTR
records and forward data, never from the servers' answers."""

from __future__ import annotations

from typing import Any

from testbed.scenarios import SCENARIO_SUFFIX, scenario_world
from testbed.truth import truth


def _ptr_of(domain: str) -> list[dict[str, Any]]:
    row = next(r for r in truth(scenario_world()) if r["domain"] == f"{domain}.{SCENARIO_SUFFIX}")
    return [a["ptr"] for h in row["mx_hosts"] for a in h["addresses"]]


def test_a_ptr_to_the_hosts_own_name_is_confirmed() -> None:
    assert _ptr_of("valid-cert") == [{"fcrdns": "confirmed", "names": [f"mx.valid-cert.{SCENARIO_SUFFIX}"]}]


def test_a_ptr_to_a_name_resolving_elsewhere_is_a_mismatch() -> None:
    assert _ptr_of("ptr-mismatch") == [{"fcrdns": "mismatch", "names": [f"mx.valid-cert.{SCENARIO_SUFFIX}"]}]


def test_an_address_without_a_ptr_record_is_no_ptr() -> None:
    assert _ptr_of("ptr-missing") == [{"fcrdns": "no-ptr", "names": []}]


def test_a_ptr_name_in_a_bogus_zone_cannot_be_confirmed() -> None:
    """Its A lookup SERVFAILs at a validating resolver (RFC 4035 §5.5): unknown, not mismatch."""
    assert _ptr_of("bogus") == [{"fcrdns": "unknown", "names": [f"mx.bogus.{SCENARIO_SUFFIX}"]}]
