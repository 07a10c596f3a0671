"""The world's DNS server builds its replies before ready (``DnsServer.warm``): served replies
are byte for byte those it would build on first use, for every question shape, and the
counters describe only what was served."""

from __future__ import annotations

import random

import dns.flags
import dns.message
import dns.rdatatype
from hypothesis import given
from hypothesis import strategies as st

from testbed.dnsserver import DnsServer
from testbed.internet import internet_scenario_world
from testbed.scale import scale_world
from testbed.scenarios import scenario_world
from testbed.world import World
from testbed.zones import WorldIndex

SCENARIOS = scenario_world()
INTERNET = internet_scenario_world()
SCALE = scale_world(2_000, seed=3)


def _query(name: str, rtype: str, *, cd: bool = False, ad: bool = True, edns: bool = True, do: bool = False,
           qid: int = 0x4242) -> bytes:  # fmt: skip
    message = dns.message.make_query(name, rtype, use_edns=0 if edns else None, want_dnssec=do)
    message.id = qid
    message.flags = dns.flags.RD | (dns.flags.AD if ad else 0) | (dns.flags.CD if cd else 0)
    return message.to_wire()


def _pairs(world: World) -> tuple[DnsServer, DnsServer, list[tuple[str, str]]]:
    warm, cold = DnsServer(world), DnsServer(world)
    questions = list(warm.index.mail_questions())
    assert warm.warm(questions) == len(questions) > 0
    return warm, cold, questions


def test_every_warmed_question_is_answered_as_a_server_building_on_first_use_answers() -> None:
    for world in (SCENARIOS, INTERNET, SCALE):
        warm, cold, questions = _pairs(world)
        for name, rtype in questions:
            query = _query(name, rtype)
            assert warm.reply(query, tcp=False) == cold.reply(query, tcp=False), (name, rtype)
        # Served from what was built before ready, none built while serving.
        assert warm.stats["memo_hits"] == warm.stats["queries"] == len(questions)
        assert warm.stats["errors"] == cold.stats["errors"] == 0


@given(
    pick=st.integers(min_value=0),
    cd=st.booleans(),
    ad=st.booleans(),
    edns=st.booleans(),
    do=st.booleans(),
    tcp=st.booleans(),
    qid=st.integers(0, 0xFFFF),
    mixed_case=st.booleans(),
)
def test_any_flag_variant_case_or_transport_gets_the_reply_a_cold_server_gives(
    pick: int, cd: bool, ad: bool, edns: bool, do: bool, tcp: bool, qid: int, mixed_case: bool
) -> None:
    name, rtype = _WARM_QUESTIONS[pick % len(_WARM_QUESTIONS)]
    if mixed_case:  # 0x20: the reply's question echoes the query's case
        name = "".join(c.upper() if random.Random(qid).random() < 0.5 else c for c in name)
    query = _query(name, rtype, cd=cd, ad=ad, edns=edns, do=do, qid=qid)
    assert _WARM.reply(query, tcp=tcp) == DnsServer(SCENARIOS).reply(query, tcp=tcp)


_WARM, _, _WARM_QUESTIONS = _pairs(SCENARIOS)


def test_the_counters_after_warming_say_nothing_was_served() -> None:
    server = DnsServer(SCENARIOS)
    fresh = dict(server.stats)
    assert server.warm(server.index.mail_questions()) > 0
    assert server.stats == fresh


def test_a_world_with_more_questions_than_the_bound_builds_on_first_use() -> None:
    server = DnsServer(SCALE)
    questions = list(server.index.mail_questions())
    assert server.warm(questions, limit=len(questions) - 1) == 0
    assert not server._memo
    query = _query(*questions[0])
    assert server.reply(query, tcp=False) == DnsServer(SCALE).reply(query, tcp=False)
    assert server.stats["memo_hits"] == 0


def test_questions_a_server_cannot_carry_are_skipped_not_fatal() -> None:
    server = DnsServer(SCENARIOS)
    questions = [("caf\u00e9.test", "A"), ("x.test", "NOT-A-TYPE"), ("signed.scenario.test", "MX")]
    assert server.warm(questions) == 3
    assert server.stats["errors"] == 0


def test_the_questions_cover_what_a_mail_scan_asks_of_each_domain_and_host() -> None:
    index = WorldIndex(SCALE)
    questions = set(index.mail_questions())
    for domain in SCALE.domains:
        assert {(domain.name, "MX"), (f"_mta-sts.{domain.name}", "TXT"),
                (f"_smtp._tls.{domain.name}", "TXT")} <= questions  # fmt: skip
        if domain.mx is None:
            assert (domain.name, "A") in questions and (domain.name, "AAAA") in questions
    for name in index.hosts:
        assert {(name, "A"), (name, "AAAA"), (f"_25._tcp.{name}", "TLSA")} <= questions
    assert any(rtype == "PTR" for _, rtype in questions)
    assert all(dns.rdatatype.from_text(rtype) for _, rtype in questions)
