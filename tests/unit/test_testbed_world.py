"""The test world as data: determinism, prevalence, uniqueness, and the pure DNS core."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import socket
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed import ports
from testbed.addressing import AddressAllocator, is_world_address
from testbed.cli import _duration, _fraction
from testbed.control import STATE_DIR_ENV, default_state_dir
from testbed.dnsserver import DnsServer, parse_query
from testbed.scale import PROVIDERS, STUDY_MX_DOMAINS, Profile, load_profile, scale_world
from testbed.scenarios import SCENARIOS, scenario_world
from testbed.truth import truth
from testbed.world import Domain, World, ZoneStatus
from testbed.zones import WorldIndex

SCENARIO_WORLD = scenario_world()
SCALE_20K = scale_world(20_000, seed=11)


def test_scale_world_is_deterministic_for_a_seed() -> None:
    a, b = scale_world(3000, seed=4), scale_world(3000, seed=4)
    assert a.domains == b.domains and a.hosts == b.hosts and a.zones == b.zones
    assert scale_world(3000, seed=5).domains != a.domains


def _rates(world: World) -> dict[str, float]:
    rows = list(truth(world))
    mx = [t for t in rows if t["has_mx"]]
    secure = [t for t in mx if t["mx_dnssec"] == "secure"]
    return {
        "mx": len(mx) / len(rows),
        "dnssec": len(secure) / len(mx),
        "dane": sum(any(h["smtp"]["dane"] == "valid" for h in t["mx_hosts"]) for t in secure) / len(mx),
        "mta_sts": sum(t["mta_sts"] is not None for t in mx) / len(mx),
        "enforce": sum((t["mta_sts"] or {}).get("mode") == "enforce" for t in mx) / len(mx),
        "starttls": sum(all(h["smtp"]["starttls"] == "yes" for h in t["mx_hosts"]) for t in mx) / len(mx),
        "trusted": sum(any(h["smtp"]["pkix_valid"] for h in t["mx_hosts"]) for t in mx) / len(mx),
        "google": sum(t["mx_hosts"][0]["host"].endswith(".google.prov.test") for t in mx) / len(mx),
    }


# Tolerances: about 3 binomial standard deviations at n = 20,000 (13,000 with MX).
@pytest.mark.parametrize(
    ("rate", "target", "tolerance"),
    [
        ("mx", STUDY_MX_DOMAINS / 100_000, 0.015),
        ("dnssec", 0.08, 0.008),
        ("dane", 0.009, 0.003),
        ("mta_sts", 0.012, 0.003),
        ("enforce", 0.007, 0.0025),
        ("starttls", 0.993, 0.003),
        ("trusted", 0.941, 0.008),
        ("google", 20838 / STUDY_MX_DOMAINS, 0.015),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_scale_world_prevalence_follows_the_study(rate: str, target: float, tolerance: float) -> None:
    assert _rates(SCALE_20K)[rate] == pytest.approx(target, abs=tolerance)


def test_profile_overrides_rates(tmp_path: object) -> None:
    path = tmp_path / "p.toml"  # type: ignore[operator]
    path.write_text("mx = 0.3\ndnssec = 0.5\n[providers]\ngoogle = 60000\n")
    profile = load_profile(path)
    assert profile.mx == 0.3 and profile.providers["google"] == 60000 and profile.providers["qq"] == 1039
    rates = _rates(scale_world(4000, seed=2, profile=profile))
    assert rates["mx"] == pytest.approx(0.3, abs=0.04)
    assert rates["dnssec"] == pytest.approx(0.5, abs=0.06)
    path.write_text("no_such_rate = 1\n")
    with pytest.raises(ValueError, match="no_such_rate"):
        load_profile(path)


def test_every_scenario_is_present_once_with_a_unique_name() -> None:
    names = [d.name for d in SCENARIO_WORLD.domains]
    assert names == [f"{s.key}.scenario.test" for s in SCENARIOS]
    assert len(set(names)) == len(names)
    assert all(s.description and s.group for s in SCENARIOS)
    assert {d.scenario for d in SCENARIO_WORLD.domains} == {s.key for s in SCENARIOS}


@pytest.mark.parametrize("world", [SCENARIO_WORLD, SCALE_20K], ids=["scenario-world", "scale-world"])
def test_hosts_have_unique_names_and_loopback_addresses(world: World) -> None:
    names = [h.name for h in world.hosts]
    assert len(set(names)) == len(names)
    ipv4 = [h.ipv4 for h in world.hosts if h.ipv4]
    assert len(set(ipv4)) == len(ipv4)
    assert all(is_world_address(a) and ipaddress.ip_address(a).is_loopback for a in ipv4)
    assert not any(a.startswith("127.0.") for a in ipv4)
    assert [h.ipv6 for h in world.hosts if h.ipv6] in ([], ["::1"])


@pytest.mark.parametrize("world", [SCENARIO_WORLD, SCALE_20K], ids=["scenario-world", "scale-world"])
def test_every_mx_target_is_a_host_and_host_zone_status_is_its_zones(world: World) -> None:
    index = WorldIndex(world)
    hosts = {h.name for h in world.hosts}
    for d in world.domains:
        for mx in d.mx or ():
            assert mx.host == "." or mx.host in hosts, d.name
    for h in world.hosts:
        if h.name not in index.domains:
            assert index.zone_of(h.name)[1] is h.dnssec, h.name


def test_allocator_skips_network_and_broadcast_octets() -> None:
    alloc = AddressAllocator("127.1.0.253")
    assert [alloc.next() for _ in range(4)] == ["127.1.0.253", "127.1.0.254", "127.1.1.1", "127.1.1.2"]
    with pytest.raises(ValueError):
        AddressAllocator("127.0.0.1")


@pytest.mark.parametrize("domain", SCENARIO_WORLD.domains, ids=lambda d: d.scenario)
def test_resolver_core_agrees_with_truth(domain: Domain) -> None:
    """The simulated resolver (zones.py) and the truth (truth.py) are derived separately."""
    index = WorldIndex(SCENARIO_WORLD)
    expected = next(t for t in truth(dataclasses.replace(SCENARIO_WORLD, domains=(domain,))))
    res = index.resolve(expected["domain"], "MX")
    if expected["mx_dnssec"] == "bogus":
        assert res.rcode == 2 and res.ede == 6
        res = index.resolve(expected["domain"], "MX", cd=True)
    outcome = {
        0: "ok" if any(r.rtype == "MX" for r in res.answer) else "nodata",
        2: "servfail",
        3: "nxdomain",
    }
    got = "timeout" if res.drop else {5: "refused"}.get(res.rcode) or outcome[res.rcode]
    assert got == expected["mx_outcome"]
    if got in ("ok", "nodata", "nxdomain") and expected["mx_dnssec"] != "bogus":
        assert res.secure == (expected["mx_dnssec"] == "secure")
    assert [r.rdata.rstrip(".") for r in res.answer if r.rtype == "CNAME"] == expected["mx_cname_chain"]
    for host in expected["mx_hosts"]:
        a = index.resolve(host["host"], "A", cd=True)
        assert sorted(r.rdata for r in a.answer if r.rtype == "A") == host["ipv4"]
        if host["tlsa"] is not None:
            tlsa = index.resolve(f"_25._tcp.{host['host']}", "TLSA")
            assert [r.rdata for r in tlsa.answer] == host["tlsa"] and tlsa.secure


def test_provider_table_is_the_studys_top_ten() -> None:
    assert [p.stands_for for p in PROVIDERS][:3] == ["google.com", "outlook.com", "googlemail.com"]
    assert {p.key: p.dane for p in PROVIDERS}["cloudflare"] == "yes"
    assert sum(p.study_domains for p in PROVIDERS) == 49592
    assert Profile().providers["yandex"] == 584


@pytest.mark.parametrize(
    ("text", "seconds"), [("80ms", 0.08), ("0.5s", 0.5), ("2", 2.0)], ids=["ms", "s-suffix", "bare"]
)
def test_duration_parsing(text: str, seconds: float) -> None:
    assert _duration(text) == pytest.approx(seconds)
    assert _fraction("0.5%") == pytest.approx(0.005)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parse_query_any_bytes_give_a_query_or_none(data: bytes) -> None:
    q = parse_query(data)
    assert q is None or q.qend <= len(data)


_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
_NAMES = st.one_of(
    st.sampled_from([d.name for d in SCENARIO_WORLD.domains] + [h.name for h in SCENARIO_WORLD.hosts]),
    st.lists(_LABEL, min_size=1, max_size=5).map(lambda ls: ".".join([*ls, "scenario", "test"])),
)


@settings(max_examples=200, deadline=None)
@given(
    name=_NAMES,
    rtype=st.sampled_from(["MX", "A", "AAAA", "TXT", "TLSA", "CNAME", "SOA", "NS", "CAA"]),
    cd=st.booleans(),
    edns=st.booleans(),
)
def test_every_reply_parses_and_matches_its_question(name: str, rtype: str, cd: bool, edns: bool) -> None:
    server = _SERVER
    query = dns.message.make_query(name.upper(), rtype, use_edns=0 if edns else False)
    if cd:
        query.flags |= dns.flags.CD
    wire = server.reply(query.to_wire(), tcp=True)
    if wire is None:
        assert name.startswith("timeout.")
        return
    reply = dns.message.from_wire(wire)
    assert query.is_response(reply)
    assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL, dns.rcode.REFUSED)
    assert server.stats["errors"] == 0


_SERVER = DnsServer(SCENARIO_WORLD)


def test_signed_zone_status_reaches_the_reply() -> None:
    query = dns.message.make_query("signed.scenario.test", "MX", use_edns=0)
    query.flags |= dns.flags.AD
    reply = dns.message.from_wire(_SERVER.reply(query.to_wire(), tcp=False) or b"")
    assert reply.flags & dns.flags.AD
    assert ZoneStatus.SIGNED.value == "signed"


@settings(max_examples=200, deadline=None)
@given(label=st.binary(min_size=1, max_size=63), rtype=st.sampled_from([1, 15, 16, 28, 52, 255]))
def test_any_question_label_gets_a_parsable_reply_or_none(label: bytes, rtype: int) -> None:
    wire = (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + bytes((len(label),))
        + label
        + b"\x08scenario\x04test\x00"
        + rtype.to_bytes(2, "big")
        + b"\x00\x01"
    )
    reply = _SERVER.reply(wire, tcp=False)
    if reply is not None:
        assert dns.message.from_wire(reply).id == 0x1234
    assert _SERVER.stats["errors"] == 0


# -- where a world's state lives, and which ports it takes (issue #18 item 6, issue #13 item 17) ----------


def test_default_state_dir_is_one_absolute_place_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    seen = set()
    for cwd in (tmp_path, tmp_path / "home"):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        seen.add(default_state_dir())
    assert seen == {tmp_path / "home" / ".local" / "state" / "mxscan" / "testbed"}
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # relative: ignored (XDG base directory spec)
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "mxscan" / "testbed"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "mxscan" / "testbed"
    monkeypatch.setenv(STATE_DIR_ENV, "worlds/one")  # named: wins, made absolute where it is named
    assert default_state_dir() == tmp_path / "home" / "worlds" / "one"


def test_a_taken_default_port_moves_and_is_reported_an_asked_port_never_moves() -> None:
    busy = ports.PortBusy("smtp", 25, "[Errno 98] address already in use")
    default = ports.PortChoice.initial("smtp", None)
    assert default.port == ports.default_port("smtp")
    default.move(busy, exclude=[443])
    assert default.port not in (25, 443) and default.fallback(default.port) == {
        "service": "smtp", "wanted": 25, "port": default.port, "reason": busy.detail,
    }  # fmt: skip
    anyport = ports.PortChoice.initial("https", 0, exclude=[default.port])
    assert anyport.port != default.port
    anyport.move(ports.PortBusy("https", anyport.port, "taken"))
    assert anyport.fallback(anyport.port) is None  # "any port" asked nothing that could be taken
    asked = ports.PortChoice.initial("smtp", 2525)
    assert not asked.movable and "--smtp-port" in asked.refusal(busy)
    with pytest.raises(ports.PortBusy):
        asked.move(busy)
    dns = ports.PortChoice.initial("dns", None)
    dns.move(ports.PortBusy("dns", ports.DEFAULT_DNS_PORT, "taken"))
    assert dns.port == 0  # the DNS server picks a port free for both UDP and TCP itself


def test_a_choice_gives_up_after_a_bounded_number_of_moves() -> None:
    choice = ports.PortChoice.initial("smtp", 0)
    for _ in range(ports.MAX_PORT_MOVES):
        choice.move(ports.PortBusy("smtp", choice.port, "taken"))
    assert not choice.movable and "no free smtp port" in choice.refusal(ports.PortBusy("smtp", 1, "x"))


@pytest.mark.parametrize(
    ("text", "port"), [("", None), ("\n", None), ("10025\n", 10025)], ids=["empty", "newline", "port"]
)
def test_ready_file_announces_a_port_or_nothing_yet(text: str, port: int | None) -> None:
    assert ports.read_ready(text) == port


def test_a_taken_port_is_reported_beside_the_ready_file_never_in_it(tmp_path: Path) -> None:
    ready = tmp_path / "mail-0.ready"
    ports.raise_if_busy(ready)  # nothing reported: nothing raised
    busy = ports.PortBusy("https", 443, "[Errno 13] error while attempting\nto bind: permission denied")
    ports.report_busy(ready, busy)
    assert not ready.exists()  # whoever waits for the ready file (a health check) never sees "ready"
    with pytest.raises(ports.PortBusy) as seen:
        ports.raise_if_busy(ready)
    assert (seen.value.service, seen.value.port) == ("https", 443)
    assert seen.value.detail == "[Errno 13] error while attempting to bind: permission denied"


def test_first_busy_finds_a_port_someone_listens_on() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        busy = ports.first_busy("smtp", ["127.0.0.1"], port)
        assert busy is not None and busy.port == port and "127.0.0.1" in busy.detail
    assert ports.first_busy("smtp", ["127.0.0.1"], port) is None


def test_is_taken_sees_the_errno_uvloop_chains_behind_its_own_error() -> None:
    try:
        try:
            raise OSError(errno.EADDRINUSE, "Address already in use")
        except OSError as inner:
            raise OSError("could not bind to local_addr") from inner
    except OSError as outer:
        assert outer.errno is None and ports.is_taken(outer)
    assert not ports.is_taken(OSError(errno.ENOENT, "no such file"))
