"""End to end: start the whole scenario world, scan it with the real ``mxscan scan``
command, and hold every domain's record to the world's ground truth.

One test per scenario domain (ids are the domain names), each comparing: DNS
facts (MX outcome, DNSSEC, CNAME chain, hosts and addresses, TLSA data from the
real certificates), per MX host and address the SMTP status / phase / STARTTLS /
PKIX reason and reverse DNS (PTR names, FCrDNS), DANE per MX host, MTA-STS record
validity, mode and findings, TLS-RPT validity and the posture roll-ups.  Where the TXT
lookups fail (resolver faults cover the names below a domain; bogus zones SERVFAIL) both
records are unknown (null).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from probes.results import read_domain_records
from testbed.harness import RunningWorld
from testbed.scenarios import scenario_world
from testbed.truth import truth
from testbed.worldpki import WorldPki

WORLD = scenario_world()
# The world and its scan are the session's (tests/worlds.py): these tests only read them.


@pytest.fixture(scope="module")
def scanned(shared_scan: Path) -> dict[str, dict[str, Any]]:
    return {r["domain"]: r for r in read_domain_records(shared_scan)}


def test_each_probed_address_is_one_host_line_before_its_first_reference(shared_scan: Path) -> None:
    """Issue 4: one probe per (host, address) per run, stored once and referenced by domains."""
    defined: Counter[str] = Counter()
    referenced: Counter[str] = Counter()
    for line in shared_scan.read_bytes().splitlines():
        record = orjson.loads(line)
        if "ref" in record:
            defined[record["ref"]] += 1
            assert record["ref"] == smtp_ref_of(record["smtp"])
            continue
        if "run" in record:  # the run line that ends a finished file
            continue
        for transport in record["mx_transport"]:
            for ref in transport["smtp_refs"]:
                assert ref in defined, f"{record['domain']}: {ref} referenced before it is written"
                referenced[ref] += 1
    assert set(defined) == set(referenced) and set(defined.values()) == {1}
    assert max(referenced.values()) > 1  # the providers' hosts serve several scenario domains


def smtp_ref_of(smtp: dict[str, Any]) -> str:
    address = f"[{smtp['address']}]" if ":" in smtp["address"] else smtp["address"]
    return f"smtp:{smtp['host']}@{address}:{smtp['port']}"


@pytest.fixture(scope="module")
def expected(shared_world: RunningWorld) -> dict[str, dict[str, Any]]:
    tlsa_data = WorldPki.load(shared_world.state_dir / "pki").tlsa_data
    return {row["domain"]: row for row in truth(WORLD, tlsa_data)}


def _dns_diffs(rec: dict[str, Any], exp: dict[str, Any]) -> Iterator[str]:
    dns = rec["dns"]
    mx = dns["mx"]
    yield from _diff("mx.outcome", mx["outcome"], exp["mx_validated_outcome"])
    if exp["mx_outcome"] in ("ok", "nodata", "nxdomain"):
        yield from _diff("mx.dnssec", mx["dnssec"], exp["mx_dnssec"])
        yield from _diff("mx.cname_chain", mx["cname_chain"], exp["mx_cname_chain"])
    if exp["mx_validated_outcome"] != "ok":
        return
    yield from _diff("has_mx", dns["has_mx"], exp["has_mx"])
    yield from _diff("null_mx", dns["null_mx"], exp["null_mx"])
    followed = exp["mx_hosts"][: exp["mx_followed"]]
    got_hosts = [(h["preference"], h["host"]) for h in dns["mx_hosts"]]
    yield from _diff("mx_hosts", got_hosts, [(h["preference"], h["host"]) for h in followed])
    for got, want in zip(dns["mx_hosts"], followed, strict=False):
        where = f"mx_hosts[{want['host']}]"
        yield from _diff(f"{where}.a", list(got["a"]["data"]), want["ipv4"])
        yield from _diff(f"{where}.aaaa", list(got["aaaa"]["data"]), want["ipv6"])
        yield from _diff(f"{where}.tlsa_skipped", got["tlsa_skipped"], want["tlsa_skipped"])
        tlsa = None if got["tlsa"] is None else sorted(got["tlsa"]["data"])
        yield from _diff(f"{where}.tlsa", tlsa, None if want["tlsa"] is None else sorted(want["tlsa"]))
    sts_txt = list(dns["mta_sts"]["data"]) if dns["mta_sts"]["outcome"] == "ok" else []
    yield from _diff("mta_sts txt", sorted(sts_txt), sorted(exp["mta_sts_txt"]))
    yield from _diff("mta_sts txt cname", [c for c in dns["mta_sts"]["cname_chain"]], exp["mta_sts_cname"])
    tlsrpt_txt = list(dns["tlsrpt"]["data"]) if dns["tlsrpt"]["outcome"] == "ok" else []
    yield from _diff("tlsrpt txt", tlsrpt_txt, exp["tlsrpt_txt"])


def _smtp_diffs(rec: dict[str, Any], exp: dict[str, Any]) -> Iterator[str]:
    if exp["mx_validated_outcome"] != "ok":
        yield from _diff("mx_transport", rec["mx_transport"], [])
        return
    transports = {t["host"]: t for t in rec["mx_transport"]}
    followed = exp["mx_hosts"][: exp["mx_followed"]]
    yield from _diff("mx_transport hosts", sorted(transports), sorted(h["host"] for h in followed))
    for want in followed:
        got = transports.get(want["host"])
        if got is None:
            continue
        where = f"smtp[{want['host']}]"
        yield from _diff(f"{where}.dane", (got["dane"] or {}).get("status"), want["smtp"]["dane"])
        addresses = {a["address"]: a for a in got["addresses"]}
        yield from _diff(f"{where}.addresses", sorted(addresses), sorted(want["ipv4"] + want["ipv6"]))
        smtp = want["smtp"]
        want_ptr = {a["address"]: a["ptr"] for a in want["addresses"]}
        for address, probe in addresses.items():
            at = f"{where}@{address}"
            ptr = probe.get("ptr") or {}  # the host line's, joined by probes.results
            got_ptr = {"fcrdns": ptr.get("fcrdns"), "names": ptr.get("names")}
            yield from _diff(f"{at}.ptr", got_ptr, want_ptr.get(address))
            yield from _diff(f"{at}.status", probe["status"], smtp["status"])
            yield from _diff(f"{at}.phase", probe["phase"], smtp["phase"])
            yield from _diff(f"{at}.starttls", probe["starttls"], smtp["starttls"])
            yield from _diff(f"{at}.pkix", (probe["pkix"] or {}).get("reason"), smtp["pkix"])


def _policy_diffs(rec: dict[str, Any], exp: dict[str, Any]) -> Iterator[str]:
    sts = rec["mta_sts"] or {}
    want_mode = (exp["mta_sts"] or {}).get("mode")
    yield from _diff("mta_sts.mode", sts.get("mode"), want_mode)
    yield from _diff("mta_sts.findings", list(sts.get("findings", [])), exp["mta_sts_findings"])
    # null (unknown) when the TXT lookup failed (resolver faults, bogus zones), never false
    yield from _diff("mta_sts.record.valid", (sts.get("record") or {}).get("valid"), exp["mta_sts_txt_valid"])
    yield from _diff("tlsrpt.valid", (rec["tlsrpt"] or {}).get("valid"), exp["tlsrpt_valid"])
    posture = rec["posture"] or {}
    for key, want in exp["posture"].items():
        yield from _diff(f"posture.{key}", posture.get(key), want)


def _diff(what: str, got: object, want: object) -> Iterator[str]:
    if got != want:
        yield f"{what}: scanner {got!r}, truth {want!r}"


def differences(rec: dict[str, Any], exp: dict[str, Any]) -> list[str]:
    """Every way the scanner's record differs from the truth (empty: they agree)."""
    if rec["dns"] is None:
        return [f"no DNS result: {rec['status']} {rec['reason']} {rec['errors']}"]
    return [*_dns_diffs(rec, exp), *_smtp_diffs(rec, exp), *_policy_diffs(rec, exp)]


@pytest.mark.parametrize("domain", [pytest.param(d.name, id=d.name) for d in WORLD.domains])
def test_scan_matches_truth(
    domain: str, scanned: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]
) -> None:
    record = scanned.get(domain)
    assert record is not None, f"{domain}: no record in the results"
    assert record["status"] == "success", record["reason"]
    assert differences(record, expected[domain]) == []


def test_every_domain_was_scanned_once(scanned: dict[str, dict[str, Any]]) -> None:
    assert sorted(scanned) == sorted(d.name for d in WORLD.domains)
