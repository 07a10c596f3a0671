"""The tier (a) resolver of the scenario world, asked over the wire.

Every question goes straight to the test server (dnspython to host:port, and
dig with @host -p port when installed), never to the system resolver.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import orjson
import pytest

from testbed.cli import main
from testbed.control import NetOptions, WorldSpec
from testbed.harness import Endpoint, running_dns
from testbed.scenarios import scenario_world
from testbed.truth import truth

WORLD = scenario_world()
DIG = shutil.which("dig")


def ask(
    ep: Endpoint,
    name: str,
    rtype: str,
    *,
    ad: bool = True,
    do: bool = False,
    cd: bool = False,
    edns: bool = True,
    tcp: bool = False,
    timeout: float = 2.0,
) -> dns.message.Message:
    query = dns.message.make_query(name, rtype, use_edns=0 if edns else False, want_dnssec=do, payload=1232)
    if ad:
        query.flags |= dns.flags.AD
    if cd:
        query.flags |= dns.flags.CD
    if tcp:
        return dns.query.tcp(query, ep.host, port=ep.port, timeout=timeout)
    return dns.query.udp(query, ep.host, port=ep.port, timeout=timeout)


def _records(reply: dns.message.Message, rtype: str) -> list[str]:
    return sorted(
        rd.to_text()
        for rrset in reply.answer
        for rd in rrset
        if rrset.rdtype == dns.rdatatype.from_text(rtype)
    )


# (name, type, query options, expected rcode, AD expected, expected answer records of the type or None)
CASES = [
    ("root-soa-preflight", ".", "SOA", {}, "NOERROR", True, None),
    ("nxdomain", "nxdomain.scenario.test", "MX", {}, "NXDOMAIN", True, []),
    ("nodata", "nodata.scenario.test", "MX", {}, "NOERROR", False, []),
    ("nodata-implicit-a", "nodata.scenario.test", "A", {}, "NOERROR", False, ["127.1.0.1"]),
    ("null-mx", "null-mx.scenario.test", "MX", {}, "NOERROR", False, ["0 ."]),
    ("no-address-mx", "mx.no-address-mx.scenario.test", "A", {}, "NXDOMAIN", False, []),
    ("ipv6-only-aaaa", "mx.ipv6-only.scenario.test", "AAAA", {}, "NOERROR", False, ["::1"]),
    ("ipv6-only-no-a", "mx.ipv6-only.scenario.test", "A", {}, "NOERROR", False, []),
    ("signed-ad-flag", "signed.scenario.test", "MX", {}, "NOERROR", True, ["10 mx.signed.scenario.test."]),
    ("signed-do-bit", "signed.scenario.test", "MX", {"ad": False, "do": True}, "NOERROR", True, None),
    ("signed-no-ad-asked", "signed.scenario.test", "MX", {"ad": False}, "NOERROR", False, None),
    ("bogus-servfail", "bogus.scenario.test", "MX", {}, "SERVFAIL", False, []),
    ("bogus-cd-data", "bogus.scenario.test", "MX", {"cd": True}, "NOERROR", False,
     ["10 mx.bogus.scenario.test."]),
    ("dnssec-failed-preflight", "dnssec-failed.test", "A", {}, "SERVFAIL", False, []),
    ("servfail-also-with-cd", "servfail.scenario.test", "MX", {"cd": True}, "SERVFAIL", False, []),
    ("refused", "refused.scenario.test", "MX", {}, "REFUSED", False, []),
    ("tlsa-signed", "_25._tcp.mx.dane-ee-match.scenario.test", "TLSA", {}, "NOERROR", True, None),
    ("empty-non-terminal", "_tcp.mx.dane-ee-match.scenario.test", "TLSA", {}, "NOERROR", True, []),
    ("tlsrpt-txt", "_smtp._tls.tlsrpt-valid.scenario.test", "TXT", {}, "NOERROR", False,
     ['"v=TLSRPTv1; rua=mailto:tlsrpt@tlsrpt-valid.scenario.test"']),
    ("sts-two-txt", "_mta-sts.sts-two-records.scenario.test", "TXT", {}, "NOERROR", False,
     ['"v=STSv1; id=a1;"', '"v=STSv1; id=b2;"']),
    ("cloudflare-provider-tlsa", "_25._tcp.route1.mx.cloudflare.prov.test", "TLSA", {}, "NOERROR", True,
     None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "name", "rtype", "opts", "rcode", "ad", "data"), CASES, ids=[c[0] for c in CASES]
)
def test_answers(
    shared_resolver: Endpoint,
    case: str,
    name: str,
    rtype: str,
    opts: dict[str, bool],
    rcode: str,
    ad: bool,
    data: list[str] | None,
) -> None:
    reply = ask(shared_resolver, name, rtype, **opts)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert bool(reply.flags & dns.flags.AD) == ad
    if data is not None:
        assert _records(reply, rtype) == sorted(data)
    if rcode == "NXDOMAIN" or (rcode == "NOERROR" and data == []):
        assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]


def test_bogus_carries_ede_6(shared_resolver: Endpoint) -> None:
    reply = ask(shared_resolver, "bogus.scenario.test", "MX")
    assert [(o.otype, o.code) for o in reply.options] == [(dns.edns.EDE, dns.edns.EDECode.DNSSEC_BOGUS)]


def test_cname_is_chased_with_the_chain_in_the_answer(shared_resolver: Endpoint) -> None:
    reply = ask(shared_resolver, "mx-cname.scenario.test", "MX")
    assert [dns.rdatatype.to_text(r.rdtype) for r in reply.answer] == ["CNAME", "MX"]
    assert _records(reply, "CNAME") == ["cname-target.scenario.test."]
    assert not reply.flags & dns.flags.AD  # signed alias, unsigned target: insecure chain
    sts = ask(shared_resolver, "_mta-sts.sts-cname.scenario.test", "TXT")
    assert _records(sts, "CNAME") == ["_mta-sts.policy-provider.scenario.test."]
    assert _records(sts, "TXT") == ['"v=STSv1; id=delegated1;"']


def test_timeout_name_is_never_answered(shared_resolver: Endpoint) -> None:
    with pytest.raises(dns.exception.Timeout):
        ask(shared_resolver, "timeout.scenario.test", "MX", timeout=0.5)
    with pytest.raises(dns.exception.Timeout):
        ask(shared_resolver, "timeout.scenario.test", "MX", tcp=True, timeout=0.5)


def test_large_reply_is_truncated_over_udp_and_whole_over_tcp(shared_resolver: Endpoint) -> None:
    udp = ask(shared_resolver, "truncated.scenario.test", "MX")
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = ask(shared_resolver, "truncated.scenario.test", "MX", tcp=True)
    assert not tcp.flags & dns.flags.TC and len(_records(tcp, "MX")) == 24
    assert len(tcp.to_wire()) > 1232
    small = ask(shared_resolver, "multi-mx.scenario.test", "MX", edns=False)
    assert not small.flags & dns.flags.TC and len(_records(small, "MX")) == 4


def test_question_case_is_echoed(shared_resolver: Endpoint) -> None:
    reply = ask(shared_resolver, "SiGnEd.ScEnArIo.TeSt", "MX")
    assert reply.question[0].name.to_text() == "SiGnEd.ScEnArIo.TeSt."


def test_scenario_world_dns_matches_its_truth(shared_resolver: Endpoint) -> None:
    """Every domain's MX outcome, DNSSEC status and host addresses, as the truth says."""
    for t in truth(WORLD):
        if t["mx_outcome"] == "timeout":
            continue
        reply = ask(shared_resolver, t["domain"], "MX", tcp=t["scenario"] == "truncated")
        if t["mx_dnssec"] == "bogus":
            assert reply.rcode() == dns.rcode.SERVFAIL
            reply = ask(shared_resolver, t["domain"], "MX", cd=True)
        rcode = dns.rcode.to_text(reply.rcode()).lower()
        outcome = ("ok" if _records(reply, "MX") else "nodata") if rcode == "noerror" else rcode
        assert outcome == t["mx_outcome"], t["domain"]
        if t["mx_dnssec"] in ("secure", "insecure"):
            assert bool(reply.flags & dns.flags.AD) == (t["mx_dnssec"] == "secure"), t["domain"]
        hosts = [f"{h['preference']} {h['host']}." for h in t["mx_hosts"]]
        assert sorted(hosts) == ([] if t["null_mx"] else sorted(_records(reply, "MX"))), t["domain"]
        for h in t["mx_hosts"]:
            cd = h["address_dnssec"] == "bogus"
            assert _records(ask(shared_resolver, h["host"], "A", cd=cd), "A") == h["ipv4"]
            assert _records(ask(shared_resolver, h["host"], "AAAA", cd=cd), "AAAA") == h["ipv6"]


def _dig(ep: Endpoint, *args: str) -> str:
    assert DIG is not None
    cmd = [DIG, f"@{ep.host}", "-p", str(ep.port), "+time=2", "+tries=1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False).stdout


@pytest.mark.skipif(DIG is None, reason="dig not installed (apt-get install dnsutils)")
@pytest.mark.parametrize(
    ("args", "status", "flags_present", "flags_absent", "extra"),
    [
        (("+dnssec", ".", "SOA"), "NOERROR", {"ad"}, set(), None),
        (("+adflag", "signed.scenario.test", "MX"), "NOERROR", {"ad"}, set(), "mx.signed.scenario.test."),
        (("+adflag", "nodata.scenario.test", "MX"), "NOERROR", set(), {"ad"}, None),
        (("+dnssec", "bogus.scenario.test", "MX"), "SERVFAIL", set(), {"ad"}, "EDE: 6"),
        (
            ("+dnssec", "+cd", "bogus.scenario.test", "MX"),
            "NOERROR",
            {"cd"},
            {"ad"},
            "mx.bogus.scenario.test.",
        ),
        (("+adflag", "nxdomain.scenario.test", "MX"), "NXDOMAIN", {"ad"}, set(), "SOA"),
        (("refused.scenario.test", "MX"), "REFUSED", set(), set(), None),
        (("+ignore", "truncated.scenario.test", "MX"), "NOERROR", {"tc"}, set(), None),
        (("+tcp", "truncated.scenario.test", "MX"), "NOERROR", set(), {"tc"}, "ANSWER: 24"),
    ],
    ids=[
        "root-ad",
        "signed-ad",
        "unsigned-no-ad",
        "bogus-ede",
        "bogus-cd",
        "nxdomain",
        "refused",
        "tc-udp",
        "tcp",
    ],
)
def test_dig_agrees(
    shared_resolver: Endpoint,
    args: tuple[str, ...],
    status: str,
    flags_present: set[str],
    flags_absent: set[str],
    extra: str | None,
) -> None:
    out = _dig(shared_resolver, *args)
    assert f"status: {status}" in out
    match = re.search(r";; flags: ([a-z ]+);", out)
    assert match is not None
    flags = set(match.group(1).split())
    assert flags_present <= flags and not flags & flags_absent
    if extra is not None:
        assert extra in out


def test_cli_up_status_down_are_idempotent_and_report_a_crash(tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = ["up", "--scenarios", "--state-dir", str(state), "--dns-port", "0"]
    assert main(up) == 0
    first = orjson.loads((state / "state.json").read_bytes())["servers"][0]
    try:
        assert main(up) == 0  # same world already running: nothing new is started
        assert orjson.loads((state / "state.json").read_bytes())["servers"][0]["pid"] == first["pid"]
        assert main(["status", "--state-dir", str(state)]) == 0
        assert (state / "domains.txt").read_text().splitlines() == [d.name for d in WORLD.domains]
        assert (
            main(["up", "--domains", "10", "--state-dir", str(state), "--dns-port", "0"]) == 1
        )  # another world

        os.kill(first["pid"], signal.SIGKILL)  # the server we started crashes
        os.waitpid(first["pid"], 0)
        assert main(["status", "--state-dir", str(state)]) == 1
        assert main(up) == 0  # up after a crash starts it afresh
        second = orjson.loads((state / "state.json").read_bytes())["servers"][0]
        assert second["pid"] != first["pid"]
    finally:
        assert main(["down", "--state-dir", str(state)]) == 0
    assert main(["down", "--state-dir", str(state)]) == 0
    assert main(["status", "--state-dir", str(state)]) == 3
    assert (
        not Path(f"/proc/{second['pid']}").exists() or "Z" in Path(f"/proc/{second['pid']}/stat").read_text()
    )


def test_cli_truth_writes_one_line_per_domain(tmp_path: Path) -> None:
    out = tmp_path / "truth.ndjson"
    assert main(["truth", "--scenarios", "--out", str(out)]) == 0
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["domain"] for r in rows] == [d.name for d in WORLD.domains]
    by_name = {r["scenario"]: r for r in rows}
    assert by_name["null-mx"]["null_mx"] and not by_name["null-mx"]["has_mx"]
    assert by_name["sts-enforce-bad-cert"]["mta_sts"]["would_bounce"]
    assert by_name["dane-ee-match"]["mx_hosts"][0]["smtp"]["dane"] == "valid"
    assert by_name["tlsrpt-malformed"]["tlsrpt_valid"] is False


def test_blackhole_drops_replies_and_rtt_still_answers() -> None:
    with (
        running_dns(WorldSpec("scenarios"), net=NetOptions(blackhole=1.0)) as lossy,
        pytest.raises(dns.exception.Timeout),
    ):
        ask(lossy, "signed.scenario.test", "MX", timeout=0.5)
    with running_dns(WorldSpec("scenarios"), net=NetOptions(rtt=0.05, jitter=0.02)) as slow:
        assert _records(ask(slow, "signed.scenario.test", "MX"), "MX") == ["10 mx.signed.scenario.test."]
