"""The test world as data: determinism, prevalence, uniqueness, and the pure DNS core."""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed import ports, services
from testbed.addressing import AddressAllocator, is_world_address
from testbed.cli import _duration, _fraction, main
from testbed.control import STATE_DIR_ENV, ControlError, _interrupt_deferred, default_state_dir
from testbed.dnsserver import DnsServer, parse_query
from testbed.internet import HOSTILE_SHARES, INTERNET_SCENARIOS, internet_scenario_world
from testbed.scale import PROVIDERS, STUDY_MX_DOMAINS, Profile, load_profile, scale_world
from testbed.scanpolicy import DEFAULT_POLICY, ScanPolicy
from testbed.scenarios import SCENARIOS, scenario_world
from testbed.truth import truth
from testbed.world import Domain, Host, HostAddress, HostRole, PolicyHttp, SmtpBehaviour, World, ZoneStatus
from testbed.zones import WorldIndex

ROOT = Path(__file__).resolve().parents[2]

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


@given(st.binary(max_size=300))
def test_parse_query_any_bytes_give_a_query_or_none(data: bytes) -> None:
    q = parse_query(data)
    assert q is None or q.qend <= len(data)


_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
_NAMES = st.one_of(
    st.sampled_from([d.name for d in SCENARIO_WORLD.domains] + [h.name for h in SCENARIO_WORLD.hosts]),
    st.lists(_LABEL, min_size=1, max_size=5).map(lambda ls: ".".join([*ls, "scenario", "test"])),
)


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


# -- the Internet-like profile and scenario set (issue #12, the test-world half) --------------------

INTERNET = load_profile("internet")
INTERNET_WORLD = internet_scenario_world(INTERNET)
#: Hostile shares raised so that 20,000 domains give enough hosts of each kind to count.
LOUD = dataclasses.replace(
    INTERNET,
    **{k: 0.05 for k in ("silent", "syn_drop", "tarpit", "greylist", "client_limit", "ipv6_silent")},
    many_addresses=0.01,
    many_max=40,
    sts_silent=0.2,
    sts_slow_body=0.2,
)
LOUD_20K = scale_world(20_000, seed=11, profile=LOUD)


def test_internet_profile_loads_by_name_with_a_source_for_every_share() -> None:
    assert INTERNET.name == "internet" and INTERNET.smtp_rtt > 0 and INTERNET.dns_rtt > 0
    assert all(getattr(INTERNET, share) > 0 for share in HOSTILE_SHARES)
    assert set(HOSTILE_SHARES) | {"latency"} <= set(INTERNET.sources)
    info = scale_world(300, seed=2, profile=INTERNET).conditions.as_dict()
    assert info["profile"] == "internet" and info["shares"]["silent"] == INTERNET.silent  # type: ignore[index]
    assert info["latency"] == {k: {"rtt": 0.04, "jitter": 0.01} for k in ("dns", "smtp", "https")}


def test_a_profile_file_extends_internet_and_overrides_one_share(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'extends = "internet"\nsilent = 0.2\nsmtp_rtt = 0.1\n[sources]\nsilent = "my own count"\n'
    )
    mine = load_profile(path)
    assert (mine.silent, mine.smtp_rtt, mine.syn_drop, mine.name) == (0.2, 0.1, INTERNET.syn_drop, "internet")
    assert (
        mine.sources["silent"] == "my own count" and mine.sources["greylist"] == INTERNET.sources["greylist"]
    )
    path.write_text('extends = "internet"\nsilent = "many"\n')
    with pytest.raises(ValueError, match="silent must be a number"):
        load_profile(path)


def test_the_studys_world_draws_nothing_internet_like_by_default() -> None:
    assert not SCALE_20K.conditions.active()
    assert all(h.extra == () and h.greeting_delay == 0 and h.client_limit == 0 for h in SCALE_20K.hosts)
    internet_kinds = {SmtpBehaviour.SYN_DROP, SmtpBehaviour.TARPIT_GREETING, SmtpBehaviour.GREYLIST,
                      SmtpBehaviour.CLIENT_LIMIT}  # fmt: skip
    assert not any(h.smtp in internet_kinds for h in SCALE_20K.hosts)


def test_the_internet_world_has_the_domains_of_its_seed_without_hostile_hosts() -> None:
    """The hostile draws use their own RNG: the same seed's world with every share 0 is the
    benchmark's "same world with no unresponsive hosts"."""
    quiet = dataclasses.replace(LOUD, **{k: 0.0 for k in HOSTILE_SHARES})
    calm = scale_world(20_000, seed=11, profile=quiet)

    def shape(world: World) -> list[tuple[str, tuple[str, ...]]]:
        return [(d.name, tuple(m.host for m in d.mx or ())) for d in world.domains if not d.scenario]

    assert shape(calm) == shape(LOUD_20K)
    assert not any(h.extra or h.smtp is SmtpBehaviour.SYN_DROP for h in calm.hosts)


def _tail(world: World) -> list[Host]:
    return [h for h in world.hosts if h.role is HostRole.MX and h.provider is None and not _sprinkled(h)]


def _sprinkled(host: Host) -> bool:
    return host.name.endswith(".scenario.test")


@pytest.mark.parametrize(
    ("share", "count"),
    [
        ("silent", lambda h: h.smtp is SmtpBehaviour.BLACKHOLE),
        ("syn_drop", lambda h: h.smtp is SmtpBehaviour.SYN_DROP and not h.extra),
        ("tarpit", lambda h: h.smtp is SmtpBehaviour.TARPIT_GREETING),
        ("greylist", lambda h: h.smtp is SmtpBehaviour.GREYLIST),
        ("client_limit", lambda h: h.smtp is SmtpBehaviour.CLIENT_LIMIT and h.client_limit == 2),
        ("many_addresses", lambda h: len(h.extra) >= 9),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_hostile_shares_of_self_hosted_mx_hosts_follow_the_profile(share: str, count: object) -> None:
    tail = _tail(LOUD_20K)
    got = sum(1 for h in tail if count(h)) / len(tail)  # type: ignore[operator]
    # ~3,300 self-hosted hosts: 3 binomial standard deviations of a 5% share are ~1.1%.
    assert got == pytest.approx(getattr(LOUD, share), abs=0.015 if share != "many_addresses" else 0.006)


def test_ipv6_silent_hosts_keep_a_working_ipv4_and_get_a_syn_dropping_aaaa() -> None:
    tail = _tail(LOUD_20K)
    silent6 = [h for h in tail if h.extra and h.extra[0].address == "::1"]
    assert len(silent6) / len(tail) == pytest.approx(0.05 * 0.7, abs=0.012)  # only hosts not drawn otherwise
    assert all(h.extra == (HostAddress("::1", SmtpBehaviour.SYN_DROP),) and h.ipv4 for h in silent6)
    assert all(h.smtp is not SmtpBehaviour.SYN_DROP for h in silent6)
    on_loopback6 = {a.smtp for h in LOUD_20K.hosts for a in h.smtp_addresses() if a.address == "::1"}
    assert on_loopback6 == {SmtpBehaviour.SYN_DROP}  # one listener on ::1: one behaviour (no ipv6-only)


def test_many_address_hosts_mix_refused_silent_and_working_addresses() -> None:
    many = [h for h in _tail(LOUD_20K) if len(h.extra) >= 9]
    assert many and all(10 <= len(h.addresses()) <= 40 for h in many)
    kinds = {a.smtp for h in many for a in h.smtp_addresses()}
    assert {
        SmtpBehaviour.REFUSED,
        SmtpBehaviour.BLACKHOLE,
        SmtpBehaviour.SYN_DROP,
        SmtpBehaviour.GOOD,
    } <= kinds
    index = WorldIndex(LOUD_20K)
    host = many[0]
    answer = index.resolve(host.name, "A")
    assert [r.rdata for r in answer.answer] == list(host.addresses())  # in the order a sender tries them


def test_drawn_delays_keep_clear_of_the_policys_deadlines() -> None:
    margin = DEFAULT_POLICY.margin
    tarpits = [h for h in LOUD_20K.hosts if h.smtp is SmtpBehaviour.TARPIT_GREETING]
    assert tarpits and all(10 <= h.greeting_delay <= 60 for h in tarpits)
    assert all(abs(h.greeting_delay - DEFAULT_POLICY.phase_timeout) >= margin - 1e-9 for h in tarpits)
    slow = [d.policy for d in LOUD_20K.domains if d.policy and d.policy.http is PolicyHttp.SLOW_BODY]
    assert slow and all(abs(p.body_seconds - DEFAULT_POLICY.fetch_body) >= margin - 1e-9 for p in slow)
    assert {p.body_seconds < DEFAULT_POLICY.fetch_body for p in slow} == {True, False}


def _internet_truth(policy: ScanPolicy = DEFAULT_POLICY) -> dict[str, dict[str, Any]]:
    return {row["scenario"]: row for row in truth(INTERNET_WORLD, policy=policy)}


def _smtp_of(row: dict[str, Any]) -> dict[str, Any]:
    smtp: dict[str, Any] = row["mx_hosts"][0]["smtp"]
    return smtp


def test_internet_scenario_world_has_each_behaviour_once() -> None:
    names = [d.name for d in INTERNET_WORLD.domains]
    assert names == [f"{s.key}.scenario.test" for s in INTERNET_SCENARIOS]
    wanted = {"greylist", "syn-drop", "many-addresses", "ipv6-silent", "tarpit-long", "421-above-2",
              "sts-policy-silent", "sts-policy-slow-body", "silent-after-accept", "tarpit-short"}  # fmt: skip
    assert wanted <= {s.key for s in INTERNET_SCENARIOS}
    assert INTERNET_WORLD.conditions.smtp == (INTERNET.smtp_rtt, INTERNET.smtp_jitter)


@pytest.mark.parametrize(
    ("scenario", "status", "phase", "starttls", "max_connections"),
    [
        ("latency-only", "success", "done", "yes", 1),
        ("silent-after-accept", "io-timeout", "banner", "unknown", 2),
        ("syn-drop", "connection-timeout", "connect", "unknown", 2),
        ("tarpit-short", "success", "done", "yes", 1),
        ("tarpit-long", "io-timeout", "banner", "unknown", 2),
        ("greylist", "success", "done", "yes", 2),
        ("421-above-2", "success", "done", "yes", 1),
        ("many-addresses-refused", "connection-refused", "connect", "unknown", 4),
        ("many-addresses-silent", "io-timeout", "banner", "unknown", 8),
    ],
    ids=lambda v: v if isinstance(v, str) and "-" in v else None,
)
def test_truth_of_each_internet_scenario_under_the_scanners_policy(
    scenario: str, status: str, phase: str, starttls: str, max_connections: int
) -> None:
    row = _internet_truth()[scenario]
    smtp = _smtp_of(row)
    assert (smtp["status"], smtp["phase"], smtp["starttls"]) == (status, phase, starttls)
    assert row["mx_hosts"][0]["max_connections"] == max_connections
    timeout = status.endswith("timeout")
    assert all(a["smtp"]["timeout"] == timeout for a in row["mx_hosts"][0]["addresses"] if a["probed"])


def test_truth_greylisting_is_a_success_recorded_as_greylisted_after_one_retry() -> None:
    (address,) = _internet_truth()["greylist"]["mx_hosts"][0]["addresses"]
    assert address["smtp"]["greylisted"] and address["smtp"]["max_attempts"] == 2
    strict = _internet_truth(dataclasses.replace(DEFAULT_POLICY, transient_retries=0))
    assert _smtp_of(strict["greylist"])["status"] == "application-error"


def test_truth_follows_the_policys_deadlines_not_fixed_seconds() -> None:
    short = _internet_truth(dataclasses.replace(DEFAULT_POLICY, phase_timeout=10.0))
    assert (_smtp_of(short["tarpit-short"])["status"], _smtp_of(short["tarpit-short"])["phase"]) == (
        "io-timeout", "banner",
    )  # fmt: skip
    whole = _internet_truth(dataclasses.replace(DEFAULT_POLICY, host_timeout=14.5))
    assert _smtp_of(whole["tarpit-short"])["phase"] == "ehlo"  # greeting at 12 s, EHLO's reply due at 15 s
    late = _internet_truth(dataclasses.replace(DEFAULT_POLICY, host_timeout=20.0))["tarpit-short"]
    (address,) = late["mx_hosts"][0]["addresses"]
    assert (address["smtp"]["phase"], address["smtp"]["cert"]) == ("ehlo-tls", "valid")  # TLS was done
    assert address["smtp"]["max_attempts"] == 1  # a timeout after the handshake is not retried
    crowded = _internet_truth(dataclasses.replace(DEFAULT_POLICY, per_address_connections=3))
    assert _smtp_of(crowded["421-above-2"])["status"] is None  # it may meet the 421: no single verdict
    fetch = _internet_truth(dataclasses.replace(DEFAULT_POLICY, fetch_body=3.0))["sts-policy-slow-ok"]
    assert fetch["mta_sts"]["fetch"]["status"] == "io-timeout" and fetch["mta_sts"]["mode"] is None


def test_truth_caps_addresses_per_family_and_per_domain_and_counts_the_rest() -> None:
    host = _internet_truth()["many-addresses"]["mx_hosts"][0]
    probed = [a for a in host["addresses"] if a["probed"]]
    assert [a["behaviour"] for a in probed] == ["refused", "blackhole", "good", "syn-drop"]
    assert host["not_probed"] == {"host-cap": 36} and len(host["addresses"]) == 40
    assert host["smtp"]["starttls"] == "yes" and host["smtp"]["status"] is None  # the addresses differ
    assert host["max_connections"] == 1 + 2 + 1 + 2
    capped = _internet_truth(dataclasses.replace(DEFAULT_POLICY, max_addresses_per_domain=2))[
        "many-addresses"
    ]
    assert capped["mx_hosts"][0]["not_probed"] == {"domain-cap": 2, "host-cap": 36}
    assert capped["posture"]["starttls"] == "unknown"  # refused and silent: nothing settled


def test_truth_ipv6_silent_is_an_ipv6_timeout_beside_an_ipv4_success() -> None:
    row = _internet_truth()["ipv6-silent"]
    by_family = {a["family"]: a["smtp"] for a in row["mx_hosts"][0]["addresses"]}
    assert (by_family["ipv4"]["status"], by_family["ipv6"]["status"]) == ("success", "connection-timeout")
    assert row["mx_hosts"][0]["ipv6"] == ["::1"] and row["posture"]["starttls"] == "all"
    assert row["posture"]["pkix_valid"] == "all"


def test_truth_silent_and_slow_policy_hosts() -> None:
    rows = _internet_truth()
    silent, slow, ok = rows["sts-policy-silent"], rows["sts-policy-slow-body"], rows["sts-policy-slow-ok"]
    assert silent["mta_sts"]["fetch"] == {"status": "tls-handshake-error", "phase": "tls", "timeout": True,
                                          "max_attempts": 2}  # fmt: skip
    assert slow["mta_sts"]["fetch"]["status"] == "io-timeout" and slow["mta_sts"]["fetch"]["phase"] == "body"
    assert silent["mta_sts"]["mode"] is None and slow["mta_sts"]["mode"] is None
    assert silent["mta_sts_findings"] == slow["mta_sts_findings"] == ["txt-without-policy"]
    assert ok["mta_sts"]["mode"] == "enforce" and ok["mta_sts"]["fetch"]["status"] == "success"


def test_every_listening_address_is_bound_by_exactly_one_shard() -> None:
    world = scale_world(3000, seed=5, profile=LOUD)
    count = services.shard_count(world, per_process=300)
    parts = [services.shard(world, i, count) for i in range(count)]
    assert count > 3
    listening = {a.address for h in services.smtp_hosts(world) for a in h.smtp_addresses()
                 if a.smtp not in (None, SmtpBehaviour.REFUSED)}  # fmt: skip
    bound = [a for part in parts for a in part.addresses]
    assert sorted(bound) == sorted(listening)  # each once
    holder = next(part for part in parts if "::1" in part.addresses)
    on_loopback6 = {h.name for h in world.hosts for a in h.extra if a.address == "::1"}
    assert on_loopback6 <= {h.name for h in holder.smtp}  # every host on ::1, with the shard binding it
    for part in parts:
        probe = services.probe_address(part)
        if probe and probe[0] == "smtp":
            behaviours = {a.smtp for h in part.smtp for a in h.smtp_addresses() if a.address == probe[1]}
            assert behaviours.isdisjoint({SmtpBehaviour.SYN_DROP, SmtpBehaviour.GREYLIST})


def test_cli_truth_records_the_conditions_and_the_policy(tmp_path: Path) -> None:
    out, conditions = tmp_path / "truth.ndjson", tmp_path / "conditions.json"
    policy = tmp_path / "policy.toml"
    policy.write_text("phase_timeout = 10\n")
    args = ["truth", "--scenarios", "internet", "--out", str(out), "--conditions", str(conditions)]
    assert main([*args, "--policy", str(policy), "--state-dir", str(tmp_path)]) == 0
    rows = {r["scenario"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["tarpit-short"]["mx_hosts"][0]["smtp"]["status"] == "io-timeout"  # judged by the 10 s
    info = json.loads(conditions.read_text())
    assert info["policy"]["phase_timeout"] == 10.0 and info["profile"] == "internet"
    assert info["sources"]["greylist"].startswith("assumption")
    policy.write_text("phase_timeout = -1\n")
    assert main([*args, "--policy", str(policy), "--state-dir", str(tmp_path)]) == 2


# -- small things: no home directory, a closed pipe ------------------------------------------------


def _homeless(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    for name in (STATE_DIR_ENV, "XDG_STATE_HOME", "HOME"):
        monkeypatch.delenv(name, raising=False)

    def no_entry(uid: int) -> object:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)  # a container's arbitrary uid
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))


def test_state_dir_without_a_home_is_a_private_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _homeless(monkeypatch, tmp_path)
    state = default_state_dir()
    assert state == tmp_path / f"mxscan-testbed-{os.getuid()}" and stat.S_IMODE(state.stat().st_mode) == 0o700
    assert main(["status"]) == 3 and json.loads(capsys.readouterr().out)["state"] == "stopped"


def test_state_dir_without_a_home_refuses_a_directory_others_could_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _homeless(monkeypatch, tmp_path)
    (tmp_path / f"mxscan-testbed-{os.getuid()}").mkdir(mode=0o777)
    os.chmod(tmp_path / f"mxscan-testbed-{os.getuid()}", 0o777)
    with pytest.raises(ControlError, match="MXSCAN_TESTBED_DIR"):
        default_state_dir()
    assert main(["down"]) == 1  # a clear error, no traceback
    assert "no home directory" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["status"], ["truth", "--scenarios"]], ids=["status", "truth"])
def test_output_into_a_closed_pipe_ends_quietly(command: list[str], tmp_path: Path) -> None:
    """``mxscan testbed status | head``: the reader leaves; no BrokenPipe traceback."""
    argv = [sys.executable, "-m", "testbed", *command, "--state-dir", str(tmp_path)]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    with os.fdopen(write, "wb") as stdout:
        done = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 141 and b"Traceback" not in done.stderr, done.stderr.decode()[-800:]


def test_tier_b_refuses_the_internet_like_worlds(tmp_path: Path) -> None:
    """Tier (b)'s nginx and unbound have no silent, slow or SYN-dropping hosts: say so."""
    from testbed import control

    for spec in (control.WorldSpec("internet-scenarios"), control.WorldSpec("scale", 50, 1, "internet")):
        with pytest.raises(ControlError, match="tier \\(b\\)"):
            control.up(spec, tmp_path / "state", tier="b")
    assert not (tmp_path / "state" / "state.json").exists()


def test_ctrl_c_while_servers_are_being_started_acts_once_they_are_recorded() -> None:
    recorded = []
    with pytest.raises(KeyboardInterrupt), _interrupt_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # a Python handler would have run by now
        recorded.append("started")  # not cut short
    assert recorded == ["started"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with _interrupt_deferred():  # nothing pending: nothing raised
        pass
