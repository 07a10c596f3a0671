"""End to end (issue 7 acceptance): ``mxscan report`` over a complete scan of the
scale world gives the figures the world's ground truth gives.

The scale world (study prevalence, the top-10 providers, every scenario
sprinkled in so that timeouts, refusals, bogus zones and broken policies are
present) is started, scanned with the real ``mxscan scan`` and reported with
``mxscan report --format json``.  The expected figures are computed here from
``mxscan testbed truth`` rows by this module's own small code, following the
report's footnote definitions, never by calling the report's code:

* domains scanned; with MX (a non-null MX RRset in a validated answer; unknown:
  the MX lookup failed: SERVFAIL, REFUSED, timeout, bogus);
* of those: STARTTLS and a valid public-CA certificate on at least one followed
  MX host (unknown: no host settled it yes and some host could not be probed);
  DNSSEC (MX answer secure); DANE (the MX answer secure and TLSA in a secure
  answer for some MX host: a DANE provider's unsigned customers do not count);
  MTA-STS (a valid STSv1 TXT record); MTA-STS enforce (effective mode enforce;
  unknown: the policy host refused the connection); TLS-RPT (a valid record).

Both the counts and the "unknown" counts must be equal.  The study's provider
table (top-10 by domains; DANE yes/optional/no and certificates yes/partial/no,
both over the provider's distinct MX hosts) is compared row by row, attributing
hosts from the world definition.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from probes.results import read_domain_records
from testbed.control import WorldSpec
from testbed.harness import RunningWorld, running_world
from tests.e2e.worldscan import world_scan_argv

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = 2000
SEED = 7
#: The study's rates, plus one scenario copy per 25 domains: all 67 scenarios appear.
PROFILE = "sprinkle = 0.04\n"
#: The outlook.com stand-in hosts every customer on its own MX host (~200 here):
#: concurrency without a rate keeps the test short.
LIMITS = ("--provider-limit", "outlook.com=32")
UNSETTLED_DNS = frozenset({"servfail", "refused", "timeout"})
YES, NO, UNKNOWN = "yes", "no", "unknown"


def _mxscan(*args: str, timeout: float = 150) -> bytes:
    run = subprocess.run(
        [sys.executable, "-m", "mxscan", *args], cwd=ROOT, capture_output=True, timeout=timeout, check=False
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    return run.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningWorld]:
    """Private (not the session's scenario world): a scale world of its own size, seed and profile."""
    profile = tmp_path_factory.mktemp("profile") / "scale.toml"
    profile.write_text(PROFILE)
    with running_world(WorldSpec("scale", DOMAINS, SEED, str(profile))) as running:
        yield running


@pytest.fixture(scope="module")
def results(world: RunningWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scan") / "results.ndjson"
    argv = world_scan_argv(world.endpoints, world.state_dir / "domains.txt", out, *LIMITS)
    _mxscan(*argv[3:])  # without "python -m mxscan"
    return out


@pytest.fixture(scope="module")
def report(results: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(_mxscan("report", str(results), "--format", "json"))
    return data


@pytest.fixture(scope="module")
def truth_rows(world: RunningWorld) -> list[dict[str, Any]]:
    out = _mxscan("testbed", "truth", "--state-dir", str(world.state_dir))
    return [orjson.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def host_providers(world: RunningWorld) -> dict[str, str]:
    """MX host name -> provider name as the study names it, from the world definition."""
    spec = WorldSpec(**orjson.loads((world.state_dir / "world.json").read_bytes())["spec"])
    built = spec.build()
    names = {p.key: p.stands_for for p in built.providers}
    return {h.name: names.get(h.provider or "", "") or _registrable(h.name) for h in built.hosts}


def _registrable(host: str) -> str:
    """A self-hosted MTA's provider: its registrable domain (``prov.test`` and
    ``scenario.test`` are public suffixes in the test world, as ``com`` is)."""
    labels = host.split(".")
    for suffix in ("prov.test", "scenario.test"):
        if host.endswith("." + suffix):
            return ".".join(labels[-3:])
    return ".".join(labels[-2:])


# -- the truth's figures ------------------------------------------------------------------


def _with_mx(row: dict[str, Any]) -> str:
    if row["mx_validated_outcome"] in UNSETTLED_DNS:
        return UNKNOWN
    return YES if row["mx_validated_outcome"] == "ok" and row["has_mx"] else NO


def _followed(row: dict[str, Any]) -> list[dict[str, Any]]:
    hosts: list[dict[str, Any]] = row["mx_hosts"][: row["mx_followed"]]
    return hosts


def _any_host(values: list[bool | None]) -> str:
    """At least one MX host yes; unknown when none is and some host could not tell."""
    if any(v is True for v in values):
        return YES
    return UNKNOWN if any(v is None for v in values) else NO


def _answers(row: dict[str, Any]) -> dict[str, str]:
    """The study's questions for one domain with MX, answered from its truth row."""
    hosts = _followed(row)
    sts = row["mta_sts"] or {}
    if sts.get("mode") == "enforce":
        enforce = YES
    elif sts.get("txt_valid") and sts.get("http") == "no-server":
        enforce = UNKNOWN  # nothing answered on the policy host: a refused connection
    else:
        enforce = NO
    return {
        "starttls": _any_host([{"yes": True, "no": False}.get(h["smtp"]["starttls"]) for h in hosts]),
        "pkix": _any_host([h["smtp"]["pkix_valid"] for h in hosts]),
        "dnssec": YES if row["mx_dnssec"] == "secure" else NO,
        "dane": YES if row["mx_dnssec"] == "secure" and any(h["tlsa"] for h in hosts) else NO,
        "mta_sts": YES if sts.get("txt_valid") else NO,
        "mta_sts_enforce": enforce,
        "tlsrpt": YES if row["tlsrpt_valid"] else NO,
    }


def truth_figures(rows: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """figure key -> (yes, unknown) over the truth rows."""
    counts: Counter[tuple[str, str]] = Counter()
    for row in rows:
        counts["scanned", YES] += 1
        has_mx = _with_mx(row)
        counts["with_mx", has_mx] += 1
        if has_mx == YES:
            counts.update(_answers(row).items())
    keys = {key for key, _ in counts}
    return {key: (counts[key, YES], counts[key, UNKNOWN]) for key in keys}


FIGURES = ("scanned", "with_mx", "starttls", "pkix", "dnssec", "dane", "mta_sts", "mta_sts_enforce", "tlsrpt")


def _figure(report: dict[str, Any], key: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in report["headline"] if f["key"] == key)
    return found


@pytest.mark.parametrize("key", FIGURES)
def test_headline_count_matches_truth(
    key: str, report: dict[str, Any], truth_rows: list[dict[str, Any]]
) -> None:
    figure = _figure(report, key)
    expected = truth_figures(truth_rows)
    assert figure["count"] == expected[key][0]
    assert figure["base"] == (
        expected["scanned"][0] if key in ("scanned", "with_mx") else expected["with_mx"][0]
    )
    assert figure["not_measured"] == 0


@pytest.mark.parametrize("key", FIGURES)
def test_headline_unknown_matches_truth(
    key: str, report: dict[str, Any], truth_rows: list[dict[str, Any]]
) -> None:
    assert _figure(report, key)["unknown"] == truth_figures(truth_rows)[key][1]


def test_world_has_the_cases_the_figures_need(truth_rows: list[dict[str, Any]]) -> None:
    """Guards the comparison against a world too small to mean anything."""
    figures = truth_figures(truth_rows)
    assert figures["with_mx"][1] > 0 and figures["starttls"][1] > 0 and figures["pkix"][1] > 0
    for key in ("dnssec", "dane", "mta_sts", "mta_sts_enforce", "tlsrpt"):
        assert figures[key][0] > 0, key
    assert figures["starttls"][0] < figures["with_mx"][0]


def test_dane_figure_equals_the_worlds_truth(
    report: dict[str, Any], truth_rows: list[dict[str, Any]]
) -> None:
    """Issue 13 item 8: the headline DANE figure is the truth's posture.dane_published count
    (MX answer secure too), and the world holds the case that tells the definitions apart:
    a DANE provider (the cloudflare.net stand-in) hosting unsigned customer domains."""
    with_mx = [row for row in truth_rows if _with_mx(row) == YES]
    assert _figure(report, "dane")["count"] == sum(row["posture"]["dane_published"] for row in with_mx)
    unsigned_on_tlsa = [
        row for row in with_mx if row["mx_dnssec"] != "secure" and any(h["tlsa"] for h in _followed(row))
    ]
    assert unsigned_on_tlsa and not any(row["posture"]["dane_published"] for row in unsigned_on_tlsa)


def test_every_domain_scanned_once(results: Path, truth_rows: list[dict[str, Any]]) -> None:
    records = list(read_domain_records(results))
    assert sorted(r["domain"] for r in records) == sorted(row["domain"] for row in truth_rows)
    assert Counter(r["status"] for r in records) == {"success": DOMAINS}


# -- the provider table -------------------------------------------------------------------


def _label(yes: int, measured: int, some: str) -> str:
    if measured == 0:
        return UNKNOWN
    return YES if yes == measured else some if yes else NO


def truth_provider_rows(
    rows: list[dict[str, Any]], providers: dict[str, str], top: int = 10
) -> list[dict[str, Any]]:
    """The study's table from the truth: a domain counts for its most preferred MX
    host's provider; inbound DANE (secure TLSA published) and certificates are judged
    per distinct MX host of the provider; "DANE domains" uses the headline's definition."""
    domains: Counter[str] = Counter()
    dane: Counter[str] = Counter()
    host_facts: dict[str, tuple[str, bool | None, bool]] = {}
    for row in rows:
        if _with_mx(row) != YES:
            continue
        hosts = _followed(row)
        name = providers[hosts[0]["host"]]  # truth lists MX hosts by (preference, name)
        domains[name] += 1
        dane[name] += _answers(row)["dane"] == YES
        for h in hosts:
            host_facts.setdefault(h["host"], (providers[h["host"]], h["smtp"]["pkix_valid"], bool(h["tlsa"])))
    valid: Counter[str] = Counter()
    settled: Counter[str] = Counter()
    count: Counter[str] = Counter()
    tlsa: Counter[str] = Counter()
    for provider, pkix, published in host_facts.values():
        count[provider] += 1
        valid[provider] += pkix is True
        settled[provider] += pkix is not None
        tlsa[provider] += published
    ranked = sorted(domains, key=lambda p: (-domains[p], p))[:top]
    return [
        {
            "provider": p,
            "domains": domains[p],
            "dane": _label(tlsa[p], count[p], "optional"),
            "hosts_dane": tlsa[p],
            "dane_domains": dane[p],
            "pkix": _label(valid[p], settled[p], "partial"),
            "hosts": count[p],
            "hosts_pkix_valid": valid[p],
        }
        for p in ranked
    ]


def test_provider_table_matches_truth(
    report: dict[str, Any], truth_rows: list[dict[str, Any]], host_providers: dict[str, str]
) -> None:
    expected = truth_provider_rows(truth_rows, host_providers)
    got = [{k: row[k] for k in expected[0]} for row in report["providers"]["rows"]]
    assert got == expected
    # The study's top-10 are the top-10 here, with both labels of each column present.
    assert {r["provider"] for r in expected} >= {"google.com", "outlook.com", "cloudflare.net", "qq.com"}
    assert {r["dane"] for r in expected} == {YES, "optional", NO}
    cloudflare = next(r for r in expected if r["provider"] == "cloudflare.net")
    assert cloudflare["dane"] == YES and cloudflare["dane_domains"] < cloudflare["domains"]
    assert {r["pkix"] for r in expected} == {YES, "partial"}
