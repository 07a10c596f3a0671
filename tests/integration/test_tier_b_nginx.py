"""Tier (b)'s nginx against tier (a)'s policy servers: the same ground truth from both.

The scenario world's policy sites are served twice, on their own 127.x addresses:
by nginx with the config ``testbed.tier_b.nginx`` renders (port 8443) and by
``testbed.httpsserver.PolicyServerFleet`` (port 8444), with the same persisted
certificates.  mxscan's own ``PolicyFetcher`` (trust store: the world's CA only)
must record the same status, HTTP status, Content-Type, Location, body, chain
and PKIX result from both.  Behaviours beyond the world's vocabulary: "hang"
runs when Debian's echo module is installed; "garbage" nginx cannot do (skipped).

Skipped only when nginx is not installed (CI installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from cryptography import x509

from engine.status import Status
from probes.mtasts.fetch import FetchTimeouts, PolicyFetcher
from probes.mtasts.records import PolicyFetch
from probes.tls.truststore import load_trust_store
from probes.tls.verify import IntermediatePool, Verifier
from testbed.httpsserver import OVERSIZED_BYTES, PolicyServerFleet, PolicySite
from testbed.scenarios import scenario_world
from testbed.tier_b import nginx as ngx
from testbed.tier_b.world_b import descendants
from testbed.worldpki import ContextCache, WorldPki

pytestmark = pytest.mark.skipif(ngx.nginx_binary() is None, reason="nginx is not installed")

NGINX_PORT = 8443
TIER_A_PORT = 8444
TIMEOUTS = FetchTimeouts(connect=2.0, tls=2.0, headers=2.0, body=2.0, total=5.0)
HANG_TIMEOUTS = FetchTimeouts(connect=2.0, tls=2.0, headers=0.5, body=0.5, total=3.0)
#: Addresses for the behaviours outside the world (outside the world's 127.1/16 too).
EXTRA_ADDRESS = {"hang": "127.89.0.1", "garbage": "127.89.0.2"}
WORLD = scenario_world()
SITES = {site.host_name: site for site in ngx.nginx_sites(WORLD)}


class Fetched(NamedTuple):
    record: PolicyFetch
    body: bytes | None


class Both(NamedTuple):
    nginx: Fetched
    tier_a: Fetched


def _comparable(fetched: Fetched) -> dict[str, Any]:
    r = fetched.record
    return {
        "status": r.status,
        "http_status": r.http_status,
        "content_type": r.content_type,
        "location": r.location,
        "body_bytes": r.body_bytes,
        "body": fetched.body,
        "tls_version": r.tls_version,
        "chain": r.chain,
        "pkix": r.pkix,
    }


def _tier_a_sites(sites: list[ngx.NginxSite], contexts: ContextCache) -> list[PolicySite]:
    return [
        PolicySite(
            s.host_name,
            s.address,
            s.body,
            s.behaviour,
            None if s.behaviour == "no-server" else contexts.get(s.host_name, s.cert_kind),
            location=s.location,
        )
        for s in sites
    ]


async def _fetch_all(
    sites: list[ngx.NginxSite], contexts: ContextCache, pki: WorldPki, timeouts: FetchTimeouts
) -> dict[str, Both]:
    trust = load_trust_store("none", [str(pki.ca_file)])
    pool = IntermediatePool(x509.load_pem_x509_certificates(pki.intermediates_file.read_bytes()))
    results: dict[str, Both] = {}
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(PolicyServerFleet(_tier_a_sites(sites, contexts), TIER_A_PORT))
        fetchers = {
            port: await stack.enter_async_context(
                PolicyFetcher(verifier=Verifier(trust, pool), port=port, timeouts=timeouts)
            )
            for port in (NGINX_PORT, TIER_A_PORT)
        }
        for site in sites:
            domain = site.host_name.removeprefix("mta-sts.")
            pair = [Fetched(*await fetchers[port].fetch(domain, site.address)) for port in fetchers]
            results[site.host_name] = Both(*pair)
    return results


@contextlib.contextmanager
def _nginx(sites: list[ngx.NginxSite], directory: Path, pki: WorldPki, **kwargs: Any) -> Iterator[int]:
    layout = ngx.write_nginx(sites, directory, pki, NGINX_PORT, **kwargs)
    pid = ngx.start_nginx(layout)
    try:
        yield pid
    finally:
        ngx.stop_nginx(pid)


@pytest.fixture(scope="module")
def world_pki(tmp_path_factory: pytest.TempPathFactory) -> WorldPki:
    pki = WorldPki.load_or_create(tmp_path_factory.mktemp("nginx-state") / "pki")
    pki.prepare(WORLD)
    return pki


@pytest.fixture(scope="module")
def fetched(world_pki: WorldPki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Both]:
    sites = list(SITES.values())
    contexts = ContextCache(world_pki)
    try:
        with _nginx(sites, tmp_path_factory.mktemp("nginx"), world_pki):
            return asyncio.run(_fetch_all(sites, contexts, world_pki, TIMEOUTS))
    finally:
        contexts.close()


def test_every_policy_behaviour_of_the_world_is_served() -> None:
    behaviours = {site.behaviour for site in SITES.values()}
    assert behaviours == {
        "ok",
        "404",
        "wrong-content-type",
        "redirect",
        "wrong-cert",
        "no-server",
        "oversized",
    }


@pytest.mark.parametrize("host", sorted(SITES))
def test_nginx_answers_as_tier_a(fetched: dict[str, Both], host: str) -> None:
    both = fetched[host]
    assert _comparable(both.nginx) == _comparable(both.tier_a), (both.nginx.record, both.tier_a.record)


@pytest.mark.parametrize("host", sorted(SITES))
def test_nginx_serves_the_world_definition(fetched: dict[str, Both], host: str) -> None:
    """The ground truth itself, not only agreement: what each behaviour must look like."""
    site, got = SITES[host], fetched[host].nginx
    record = got.record
    expected = {
        "ok": (Status.SUCCESS, 200, "text/plain"),
        "wrong-cert": (Status.SUCCESS, 200, "text/plain"),
        "404": (Status.APPLICATION_ERROR, 404, "text/plain"),
        "redirect": (Status.APPLICATION_ERROR, 301, "text/plain"),
        "wrong-content-type": (Status.PROTOCOL_ERROR, 200, "text/html; charset=utf-8"),
        "oversized": (Status.PROTOCOL_ERROR, 200, "text/plain"),
        "no-server": (Status.CONNECTION_REFUSED, None, ""),
    }[site.behaviour]
    assert (record.status, record.http_status, record.content_type) == expected, record.detail
    if site.behaviour in ("ok", "wrong-cert"):
        assert got.body == site.body and record.body_bytes == len(site.body)
    if site.behaviour == "redirect":
        assert record.location == ngx.REDIRECT_LOCATION and record.body_bytes == 0
    if site.behaviour == "oversized":
        assert record.detail == "body over 64 KiB"
    if site.behaviour == "no-server":
        assert record.pkix is None
    else:
        assert record.pkix is not None
        assert record.pkix.valid is (site.behaviour != "wrong-cert"), record.pkix


def test_constants_match_tier_a() -> None:
    assert ngx.OVERSIZED_BYTES == OVERSIZED_BYTES
    assert PolicySite("h", "127.0.0.1", b"", "redirect", None).location == ngx.REDIRECT_LOCATION


@pytest.mark.parametrize("behaviour", ["hang", "garbage"])
def test_behaviours_beyond_the_world(behaviour: str, world_pki: WorldPki, tmp_path: Path) -> None:
    if behaviour in ngx.UNSUPPORTED:
        pytest.skip(f"nginx cannot do {behaviour!r}: {ngx.UNSUPPORTED[behaviour]}")
    if not ngx.ECHO_MODULE.exists():
        pytest.skip(f"{behaviour!r} needs nginx's echo module (libnginx-mod-http-echo)")
    site = ngx.NginxSite(f"mta-sts.{behaviour}.extra.test", EXTRA_ADDRESS[behaviour], behaviour, b"", "valid")
    contexts = ContextCache(world_pki)
    try:
        with _nginx([site], tmp_path, world_pki, echo_module=ngx.ECHO_MODULE):
            both = asyncio.run(_fetch_all([site], contexts, world_pki, HANG_TIMEOUTS))[site.host_name]
    finally:
        contexts.close()
    assert _comparable(both.nginx) == _comparable(both.tier_a)
    assert both.nginx.record.status is Status.IO_TIMEOUT and both.nginx.record.http_status is None


def test_hang_without_the_echo_module_is_refused(world_pki: WorldPki, tmp_path: Path) -> None:
    site = ngx.NginxSite("mta-sts.hang.extra.test", EXTRA_ADDRESS["hang"], "hang", b"", "valid")
    with pytest.raises(ngx.NginxError, match="echo module"):
        ngx.write_nginx([site], tmp_path, world_pki, NGINX_PORT)


def test_stop_leaves_no_nginx_process(world_pki: WorldPki, tmp_path: Path) -> None:
    sites = [s for s in SITES.values() if s.behaviour == "ok"][:1]
    with _nginx(sites, tmp_path, world_pki) as pid:
        workers = descendants(pid)
        assert workers  # master_process on: one worker
    for gone in (pid, *workers):
        assert not Path(f"/proc/{gone}").exists() or "Z" in Path(f"/proc/{gone}/stat").read_text().split()[2]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_confirms_what_nginx_serves(world_pki: WorldPki, tmp_path: Path) -> None:
    """An independent client (curl, verifying against the world CA) sees the same policies."""
    expected = {"ok": (0, "200"), "404": (0, "404"), "redirect": (0, "301"), "wrong-cert": (60, "000")}
    chosen = {b: next(s for s in SITES.values() if s.behaviour == b) for b in expected}
    with _nginx(list(chosen.values()), tmp_path, world_pki):
        for behaviour, site in chosen.items():
            url = f"https://{site.host_name}:{NGINX_PORT}/.well-known/mta-sts.txt"
            result = subprocess.run(
                ["curl", "-sS", "-o", os.devnull, "-w", "%{http_code}", "--max-time", "5",
                 "--cacert", str(world_pki.ca_file),
                 "--resolve", f"{site.host_name}:{NGINX_PORT}:{site.address}", url],
                capture_output=True, text=True, timeout=15,
            )  # fmt: skip
            assert (result.returncode, result.stdout) == expected[behaviour], (behaviour, result.stderr)
