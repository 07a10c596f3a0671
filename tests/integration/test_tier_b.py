"""Tier (b) — NSD serving the signed world behind a validating unbound — against tier (a).

Every question goes straight to a test resolver (dnspython to host:port, dig
with @host -p port), never to the system resolver.  Tier (b) runs on its own
addresses (127.0.0.154 resolver, 127.0.0.160 NSD) so a world started by hand
on the defaults does not collide with the test's.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import dns.dnssec
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.node
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed.control import WorldSpec
from testbed.harness import Endpoint as EndpointA
from testbed.harness import running_dns
from testbed.scenarios import VANTAGE_ADDRESS, VANTAGE_NAME, reverse_name, scenario_world
from testbed.tier_b.signing import canonical_key, ds_rdata, make_key, sign_zone
from testbed.tier_b.world_b import TIER_A_DIFFERENCES, Endpoint, descendants, running_tier_b, tools_missing
from testbed.tier_b.zonefiles import NsLayout, build_zones, record_lines
from testbed.world import HostRole, ResolverFault, ZoneStatus
from testbed.zones import Rr, WorldIndex

WORLD = scenario_world()
DIG = shutil.which("dig")
LAYOUT = NsLayout(nsd="127.0.0.160", lame="127.0.0.161")
needs_servers = pytest.mark.skipif(bool(tools_missing()), reason="nsd/unbound not installed")


class Server(NamedTuple):
    host: str
    port: int


@pytest.fixture(scope="module")
def tier_a() -> Iterator[Server]:
    with running_dns(WorldSpec("scenarios")) as ep:
        yield Server(ep.host, ep.port)


@pytest.fixture(scope="module")
def tier_b() -> Iterator[Endpoint]:
    with running_tier_b(WORLD, addr="127.0.0.154", layout=LAYOUT) as ep:
        yield ep


def ask(
    server: Server | Endpoint | EndpointA, name: str, rtype: str, *, cd: bool = False, timeout: float = 2.0
) -> dns.message.Message:
    """AD asked (as the scanner does); TC over UDP is retried over TCP."""
    query = dns.message.make_query(name, rtype, use_edns=0, payload=1232)
    query.flags |= dns.flags.AD | (dns.flags.CD if cd else 0)
    reply, _tcp = dns.query.udp_with_fallback(query, server.host, port=server.port, timeout=timeout)
    return reply


def outcome(server: Server | Endpoint, name: str, rtype: str, cd: bool = False) -> tuple[object, ...]:
    """What must be equal in both tiers: rcode, AD, and the answer's records (no RRSIGs, no TTLs)."""
    try:
        reply = ask(server, name, rtype, cd=cd, timeout=0.6 if name.startswith("timeout.") else 2.0)
    except dns.exception.Timeout:
        return ("timeout",)
    answer = sorted(
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}"
        for rrset in reply.answer
        if rrset.rdtype != dns.rdatatype.RRSIG
        for rd in rrset
    )
    return dns.rcode.to_text(reply.rcode()), bool(reply.flags & dns.flags.AD), answer


def questions() -> list[tuple[str, str, str, bool]]:
    """(scenario, name, type, cd) for every scenario domain: MX, policy TXTs, MX hosts' A/AAAA/TLSA."""
    hosts = {h.name for h in WORLD.hosts}
    out: list[tuple[str, str, str, bool]] = []
    for d in WORLD.domains:
        subnames = d.fault is None  # below a fault name the tiers differ by design (TIER_A_DIFFERENCES)
        cd = d.dnssec is ZoneStatus.BOGUS
        out.append((d.scenario, d.name, "MX", False))
        if cd:
            out.append((d.scenario, d.name, "MX", True))
        if not subnames:
            continue
        out += [
            (d.scenario, d.name, "A", cd),
            (d.scenario, f"_mta-sts.{d.name}", "TXT", cd),
            (d.scenario, f"_smtp._tls.{d.name}", "TXT", cd),
        ]
        for mx in d.mx or ():
            if mx.host == ".":
                continue
            out += [(d.scenario, mx.host, t, cd) for t in ("A", "AAAA")]
            if mx.host in hosts:
                out.append((d.scenario, f"_25._tcp.{mx.host}", "TLSA", cd))
    return out + reverse_questions()


def reverse_questions() -> list[tuple[str, str, str, bool]]:
    """PTR of every MX host address and of the scanner's vantage (127.0.0.1, ::1 among them:
    names a resolver serves locally by default), and the vantage name's A (issue #16)."""
    addresses = {a for h in WORLD.hosts if h.role is HostRole.MX for a in h.addresses()}
    out = [("ptr", reverse_name(a), "PTR", False) for a in sorted(addresses | {VANTAGE_ADDRESS})]
    return [*out, ("ptr", VANTAGE_NAME, "A", False)]


QUESTIONS = questions()


# ---------------------------------------------------------------- pure: zones and signatures


def _validate(records: list[Rr], apex: str) -> None:
    """dns.dnssec.validate over every signed RRset of a zone; raises ValidationFailure."""
    text = "".join(record_lines(records))
    zone = dns.zone.from_text(text, origin=f"{apex}.", relativize=False, check_origin=False)
    keys: dict[dns.name.Name, dns.node.Node | dns.rdataset.Rdataset] = {
        dns.name.from_text(f"{apex}."): zone.find_rdataset(f"{apex}.", "DNSKEY")
    }
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            if rdataset.rdtype != dns.rdatatype.RRSIG:
                continue
            covered = rdataset.covers
            rrset = dns.rrset.from_rdata_list(name, 300, list(node.find_rdataset(dns.rdataclass.IN, covered)))
            sigs = dns.rrset.from_rdata_list(name, 300, list(rdataset))
            dns.dnssec.validate(rrset, sigs, keys)


def _zone(apex: str, names: list[str]) -> list[Rr]:
    soa = "ns1.testbed.test. hostmaster.testbed.test. 1 3600 600 86400 300"
    recs = [Rr(apex, "SOA", soa), Rr(apex, "NS", "ns1.testbed.test."), Rr(apex, "MX", f"10 mx.{apex}.")]
    recs += [Rr(f"{n}.{apex}", "A", "127.1.0.9") for n in names]
    return recs


def test_signed_zone_validates_with_dnspython() -> None:
    key = make_key()
    signed = sign_zone("example.test", _zone("example.test", ["mx", "www", "_25._tcp.mx"]), key)
    _validate(signed, "example.test")
    assert sum(rr.rtype == "NSEC" for rr in signed) == 4  # the apex and three names


def test_bogus_zone_fails_validation_but_its_key_validates() -> None:
    key = make_key()
    signed = sign_zone("bad.test", _zone("bad.test", ["mx"]), key, bogus=True)
    with pytest.raises(dns.exception.ValidationFailure):
        _validate(signed, "bad.test")
    # Only the data's signatures are broken: the DNSKEY RRset still validates from its DS.
    _validate([rr for rr in signed if rr.rtype == "DNSKEY" or rr.rdata.startswith("DNSKEY ")], "bad.test")


def test_key_tag_and_ds_agree_with_dnspython() -> None:
    key = make_key()
    dnskey = dns.rdata.from_text("IN", "DNSKEY", key.dnskey_text)
    assert key.key_tag == dns.dnssec.key_id(dnskey)  # type: ignore[arg-type]
    ds = dns.dnssec.make_ds("child.test.", dnskey, "SHA256")
    assert ds_rdata("child.test", key).lower() == ds.to_text().lower()


def test_delegation_ns_and_glue_are_not_signed() -> None:
    apex, key = "parent.test", make_key()
    recs = [
        *_zone(apex, []),
        Rr(f"kid.{apex}", "NS", "ns.kid.parent.test."),
        Rr(f"ns.kid.{apex}", "A", "127.1.0.3"),
    ]
    recs.append(Rr(f"kid.{apex}", "DS", ds_rdata(f"kid.{apex}", make_key())))
    signed = sign_zone(apex, recs, key)
    sigs = {(rr.name, rr.rdata.split()[0]) for rr in signed if rr.rtype == "RRSIG"}
    assert (f"kid.{apex}", "DS") in sigs and (f"kid.{apex}", "NS") not in sigs
    assert not any(rr.name == f"ns.kid.{apex}" and rr.rtype in ("NSEC", "RRSIG") for rr in signed)
    _validate(signed, apex)


_LABEL = st.text(alphabet="abcxyz019-_", min_size=1, max_size=6)


@given(st.lists(st.lists(_LABEL, min_size=1, max_size=3).map(".".join), max_size=12, unique=True))
def test_nsec_chain_is_canonical_and_closed(names: list[str]) -> None:
    """Any set of owner names: one NSEC per name, in dnspython's canonical order, back to the apex."""
    apex = "z.test"
    signed = sign_zone(apex, _zone(apex, names), make_key())
    nsec = {rr.name: rr.rdata.split()[0] for rr in signed if rr.rtype == "NSEC"}
    order = sorted({apex, *(f"{n}.{apex}" for n in names)}, key=lambda n: dns.name.from_text(f"{n}."))
    assert sorted(nsec, key=canonical_key) == order
    assert [nsec[n] for n in order] == [f"{n}." for n in order[1:]] + [f"{apex}."]


def test_world_zones_have_delegations_ds_and_a_lame_servfail_domain() -> None:
    index = WorldIndex(WORLD)
    zones = build_zones(
        index, LAYOUT, lambda apex: "1 13 2 AB" if index.zones[apex] != ZoneStatus.UNSIGNED else None
    )
    scen = {(rr.name, rr.rtype): rr.rdata for rr in zones["scenario.test"].records}
    assert scen[("signed.scenario.test", "DS")] == "1 13 2 AB"
    assert ("nodata.scenario.test", "DS") not in scen  # unsigned child: insecure delegation
    assert scen[("servfail.scenario.test", "NS")] == "ns-lame.testbed.test."
    assert "servfail.scenario.test" not in zones
    root = {(rr.name, rr.rtype) for rr in zones[""].records}
    assert {("test", "NS"), ("test", "DS"), ("ns1.testbed.test", "A")} <= root
    served = {rr.name for z in zones.values() for rr in z.records}
    assert "mx.signed.scenario.test" in served and "mx.no-address-mx.scenario.test" not in served


# ---------------------------------------------------------------- tier (b) against tier (a)


@needs_servers
def test_both_tiers_give_the_same_answers(tier_a: Server, tier_b: Endpoint) -> None:
    """rcode, AD and answer records of every scenario question are equal in both tiers."""
    diffs = []
    for scenario, name, rtype, cd in QUESTIONS:
        a, b = outcome(tier_a, name, rtype, cd), outcome(tier_b, name, rtype, cd)
        if a != b:
            diffs.append(f"{scenario}: {name}/{rtype} cd={cd}: tier a {a} / tier b {b}")
    assert not diffs, "\n".join(diffs)
    assert len(QUESTIONS) > 300


@needs_servers
def test_fault_scenarios_on_the_domain_itself(tier_b: Endpoint) -> None:
    faults = {d.fault: d.name for d in WORLD.domains if d.fault is not None}
    assert set(TIER_A_DIFFERENCES) == {f.value for f in faults}
    assert outcome(tier_b, faults[ResolverFault.TIMEOUT], "MX") == ("timeout",)
    assert outcome(tier_b, faults[ResolverFault.REFUSED], "MX")[0] == "REFUSED"
    assert outcome(tier_b, faults[ResolverFault.SERVFAIL], "MX", cd=True)[0] == "SERVFAIL"


@needs_servers
def test_udp_truncation_agrees(tier_a: Server, tier_b: Endpoint) -> None:
    for server in (tier_a, tier_b):
        query = dns.message.make_query("truncated.scenario.test", "MX", use_edns=0, payload=1232)
        reply = dns.query.udp(query, server.host, port=server.port, timeout=2)
        assert reply.flags & dns.flags.TC and not reply.answer


@needs_servers
def test_bogus_carries_ede_6(tier_b: Endpoint) -> None:
    reply = ask(tier_b, "bogus.scenario.test", "MX")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert [o.code for o in reply.options if o.otype == dns.edns.EDE] == [dns.edns.EDECode.DNSSEC_BOGUS]


def _dig(ep: Endpoint, *args: str) -> str:
    assert DIG is not None
    cmd = [DIG, f"@{ep.host}", "-p", str(ep.port), "+time=2", "+tries=1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False).stdout


@needs_servers
@pytest.mark.skipif(DIG is None, reason="dig not installed (apt-get install dnsutils)")
@pytest.mark.parametrize(
    ("args", "status", "flag_ad", "present"),
    [
        (("+dnssec", ".", "SOA"), "NOERROR", True, "RRSIG SOA 13 0 300"),
        (("+dnssec", "signed.scenario.test", "MX"), "NOERROR", True, "RRSIG MX 13 3 300"),
        (
            ("+dnssec", "_25._tcp.mx.dane-ee-match.scenario.test", "TLSA"),
            "NOERROR",
            True,
            "RRSIG TLSA 13 6 300",
        ),
        (("+dnssec", "nodata.scenario.test", "MX"), "NOERROR", False, "SOA"),
        (("+dnssec", "nxdomain.scenario.test", "MX"), "NXDOMAIN", True, "NSEC"),
        (("+dnssec", "bogus.scenario.test", "MX"), "SERVFAIL", False, "EDE: 6 (DNSSEC Bogus)"),
        (("+dnssec", "+cd", "bogus.scenario.test", "MX"), "NOERROR", False, "mx.bogus.scenario.test."),
        (("+dnssec", "dnssec-failed.test", "A"), "SERVFAIL", False, "EDE: 6"),
    ],
    ids=[
        "root",
        "signed-mx",
        "signed-tlsa",
        "unsigned-nodata",
        "signed-nxdomain",
        "bogus",
        "bogus-cd",
        "preflight",
    ],
)
def test_dig_dnssec(
    tier_b: Endpoint, args: tuple[str, ...], status: str, flag_ad: bool, present: str
) -> None:
    out = _dig(tier_b, *args)
    assert f"status: {status}" in out
    flags = out.split(";; flags: ", 1)[1].split(";", 1)[0].split()
    assert ("ad" in flags) == flag_ad
    assert present in " ".join(out.split())


@needs_servers
def test_stopping_leaves_no_process(tmp_path: Path) -> None:
    with running_tier_b(
        WORLD, tmp_path, addr="127.0.0.155", layout=NsLayout("127.0.0.162", "127.0.0.163")
    ) as ep:
        pids = list(ep.pids.values())
        children = descendants(ep.pids["nsd"])
        assert ask(ep, "signed.scenario.test", "MX").flags & dns.flags.AD
        assert len(children) >= 2  # NSD forks its main process, which forks the server
    for pid in [*pids, *children]:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] in ("Z", "X")
