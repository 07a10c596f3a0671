"""The world's certificates: providers share one that really names each host, TLSA data
is computed from what the mail process presents, and server contexts are per certificate."""

from __future__ import annotations

import hashlib
import os
import ssl
from collections import defaultdict
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from hypothesis import given
from hypothesis import strategies as st

from probes.tls.capture import presented_chain
from testbed import services, worldpki
from testbed.pki import IssuedCert
from testbed.pkicheck import memory_handshake, ssl_handshake
from testbed.scale import THROTTLE_PROVIDER, Profile, provider_mx, scale_world
from testbed.scenarios import Builder, scenario_world
from testbed.world import CertKind, Host, Tlsa, TlsaBinds, World
from testbed.worldpki import CertSpec, ContextCache, WorldPki, cert_spec, tlsa_association

SCENARIOS = scenario_world()
SCALE = scale_world(1500, seed=3, profile=Profile(throttled=0.05))


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("worldpki") / "pki"
    WorldPki.create(directory)
    return directory


def world_pki(directory: Path) -> WorldPki:
    """A fresh process's view of the PKI on disk (nothing memoised yet)."""
    return WorldPki.load(directory)


def _accepts(pki: WorldPki, issued: IssuedCert, host: str) -> bool:
    """cryptography's strict RFC 5280 / RFC 6125 server verifier (what the scanner uses)."""
    verifier = (
        PolicyBuilder()
        .store(Store([pki.pki.root.cert]))
        .time(pki.pki.now)
        .build_server_verifier(x509.DNSName(host))
    )
    try:
        verifier.verify(issued.chain[0], list(issued.chain[1:]))
    except VerificationError:
        return False
    return True


def _provider_hosts(world: World) -> list[Host]:
    return [h for h in world.hosts if h.provider is not None and h.cert is not None]


def _presented_chain(context: ssl.SSLContext, server_name: str) -> list[bytes]:
    """The chain (DER) a client sees in a TLS handshake with ``context`` (in memory, no sockets)."""
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
    return presented_chain(memory_handshake(client_ctx, context, server_name))


def _presented(context: ssl.SSLContext, server_name: str) -> bytes:
    return _presented_chain(context, server_name)[0]


# -- which certificate a host presents ------------------------------------------------------------


@pytest.mark.parametrize("world", [SCENARIOS, SCALE], ids=["scenario-world", "scale-world"])
def test_every_valid_provider_host_shares_a_certificate_that_names_it(pki_dir: Path, world: World) -> None:
    pki = world_pki(pki_dir)
    by_spec: dict[CertSpec, list[str]] = defaultdict(list)
    for host in _provider_hosts(world):
        if host.cert is CertKind.VALID:
            spec = cert_spec(host)
            assert spec is not None and host.cert_names, host.name
            by_spec[spec].append(host.name)
    providers = {h.provider for h in _provider_hosts(world) if h.cert is CertKind.VALID}
    assert len(by_spec) == len(providers)  # one certificate per provider
    for spec, hosts in by_spec.items():
        issued = pki.issued(spec)
        assert [h for h in hosts if not _accepts(pki, issued, h)] == []
        assert not _accepts(pki, issued, f"other.{hosts[0]}")  # a wildcard stands for one label only
        # OpenSSL (what real MTAs use) agrees: a verified handshake with hostname checking.
        assert ssl_handshake(issued, pki.pki.root_pem(), hosts[-1]) == (True, "")


def test_shared_certificates_are_what_the_providers_present() -> None:
    specs = {h.provider: cert_spec(h) for h in _provider_hosts(SCALE) if h.cert is CertKind.VALID}
    assert specs["outlook"] == CertSpec(("*.mail.protection.outlook.prov.test",), "valid")
    assert specs["pphosted"] == CertSpec(("*.pphosted.prov.test",), "valid")
    assert specs[THROTTLE_PROVIDER] == CertSpec(("*.mx.throttle.prov.test",), "valid")
    google = specs["google"]
    assert google is not None and "aspmx.l.google.prov.test" in google.names
    assert sum(n.startswith("alt") for n in google.names) == 4


def test_wrong_name_provider_host_keeps_its_own_wrong_certificate(pki_dir: Path) -> None:
    pki = world_pki(pki_dir)
    mxdomain = next(h for h in SCENARIOS.hosts if h.name == "mxdomain.qq.prov.test")
    assert mxdomain.cert is CertKind.WRONG_NAME and mxdomain.cert_names == ()
    spec = cert_spec(mxdomain)
    assert spec == CertSpec(("mxdomain.qq.prov.test",), "wrong-name")
    assert not _accepts(pki, pki.issued(spec), mxdomain.name)


def test_self_hosted_and_scenario_hosts_keep_their_own_certificates() -> None:
    own = [h for h in (*SCENARIOS.hosts, *SCALE.hosts) if h.provider is None and h.cert is not None]
    assert own and all(cert_spec(h) == CertSpec((h.name,), h.cert.value) for h in own if h.cert)
    assert cert_spec(next(h for h in SCALE.hosts if h.cert is None)) is None


@pytest.fixture(scope="module")
def shared(pki_dir: Path) -> WorldPki:
    return world_pki(pki_dir)


@given(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){1,3}", fullmatch=True),
)
def test_any_outlook_customer_host_is_named_by_the_wildcard(shared: WorldPki, domain: str) -> None:
    (mx,) = provider_mx(Builder(), "outlook", domain)
    pki = shared
    assert _accepts(pki, pki.issued(CertSpec(("*.mail.protection.outlook.prov.test",), "valid")), mx.host)


# -- TLSA data and the presented certificate -------------------------------------------------------

_BINDING = [
    Tlsa(3, 1, 1, TlsaBinds.EE),
    Tlsa(3, 0, 1, TlsaBinds.EE),
    Tlsa(3, 0, 2, TlsaBinds.EE),
    Tlsa(2, 0, 1, TlsaBinds.TA),
    Tlsa(2, 1, 1, TlsaBinds.TA),
]


@pytest.mark.parametrize(
    "tlsa", _BINDING, ids=[f"{t.usage}-{t.selector}-{t.mtype}-{t.binds}" for t in _BINDING]
)
def test_tlsa_data_of_a_shared_certificate_is_what_the_mail_process_presents(
    pki_dir: Path, tlsa: Tlsa
) -> None:
    names = ("*.mail.protection.outlook.prov.test",)
    hosts = [
        Host(f"customer-{i}.mail.protection.outlook.prov.test", None, tlsa=(tlsa,), cert_names=names)
        for i in range(3)
    ]
    up = world_pki(pki_dir)
    assert up.prepare(World("t", (), tuple(hosts), ())) == 1  # one certificate persisted for all three
    dns, mail = world_pki(pki_dir), world_pki(pki_dir)  # separate processes, the same directory
    contexts = ContextCache(mail)
    try:
        for host in hosts:
            presented = x509.load_der_x509_certificate(
                _presented(contexts.for_cert(CertSpec(names, "valid")), host.name)
            )
            bound = presented if tlsa.binds is TlsaBinds.EE else mail.issuer("valid", presented)
            assert dns.tlsa_data(host, tlsa) == tlsa_association(bound, tlsa.selector, tlsa.mtype)
        assert contexts.built == 1
    finally:
        contexts.close()


def test_scale_world_cloudflare_hosts_bind_one_persisted_certificate(pki_dir: Path) -> None:
    cloudflare = [h for h in SCALE.hosts if h.provider == "cloudflare"]
    assert len(cloudflare) == 3 and all(h.tlsa for h in cloudflare)
    pki = world_pki(pki_dir)
    pki.prepare(SCALE)
    data = {pki.tlsa_data(h, h.tlsa[0]) for h in cloudflare}
    assert len(data) == 1
    chain, key = pki.files(cert_spec(cloudflare[0]))  # type: ignore[arg-type]
    assert chain.exists() and key.exists()
    leaf = x509.load_pem_x509_certificate(chain.read_bytes())
    assert data == {tlsa_association(leaf, 1, 1)}


def test_a_host_own_key_is_derived_as_before_shared_certificates(pki_dir: Path) -> None:
    # A PKI on disk from before keeps its meaning: SHA-256(seed | name | kind).
    pki = world_pki(pki_dir)
    name = "mx.keys.test"
    digest = hashlib.sha256(pki.seed + f"|{name}|valid".encode()).digest()
    expected = int.from_bytes(digest, "big") % (worldpki._P256_N - 1) + 1
    assert pki.leaf(name, "valid").leaf.public_key() == pki._key(CertSpec((name,), "valid")).public_key()
    assert pki._key(CertSpec((name,), "valid")).private_numbers().private_value == expected


def test_persisted_file_names_keep_the_host_layout_and_name_shared_ones_apart(pki_dir: Path) -> None:
    pki = world_pki(pki_dir)
    chain, key = pki.files(CertSpec(("mx.a.test",), "valid"))
    assert (chain.name, key.name) == ("mx.a.test.valid.chain.pem", "mx.a.test.valid.key.pem")
    one = pki.files(CertSpec(("a.test", "b.test"), "valid"))[0].name
    two = pki.files(CertSpec(("a.test", "c.test"), "valid"))[0].name
    wild = pki.files(CertSpec(("*.a.test",), "valid"))[0].name
    assert len({one, two, wild}) == 3 and "*" not in wild


# -- contexts ------------------------------------------------------------------------------------


def test_hosts_sharing_a_certificate_share_one_context(pki_dir: Path) -> None:
    contexts = ContextCache(world_pki(pki_dir))
    try:
        outlook = [h for h in SCALE.hosts if h.provider == "outlook"][:20]
        got = {id(contexts.for_cert(cert_spec(h))) for h in outlook}  # type: ignore[arg-type]
        assert len(got) == 1 and contexts.built == 1
        assert contexts.get("mx.own.test", "valid") is contexts.for_cert(CertSpec(("mx.own.test",), "valid"))
        assert contexts.built == 2
    finally:
        contexts.close()


def test_least_recently_used_context_is_rebuilt(pki_dir: Path) -> None:
    contexts = ContextCache(world_pki(pki_dir), size=2)
    try:
        a = contexts.get("a.lru.test", "valid")
        contexts.get("b.lru.test", "valid")
        assert contexts.get("a.lru.test", "valid") is a  # a is now the most recent
        contexts.get("c.lru.test", "valid")  # drops b
        assert contexts.get("a.lru.test", "valid") is a and contexts.built == 3
        contexts.get("b.lru.test", "valid")
        assert contexts.built == 4
    finally:
        contexts.close()


@pytest.mark.parametrize("memfd", [True, False], ids=["memory-file", "tmpfs-file"])
def test_each_context_presents_its_own_chain_whatever_was_loaded_before(
    pki_dir: Path, memfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not memfd:
        monkeypatch.delattr(os, "memfd_create", raising=False)
    pki = world_pki(pki_dir)
    contexts = ContextCache(pki)
    try:
        # Longer files first, then shorter ones: nothing of the previous content may remain.
        cases = [
            ("long-name-" * 5 + "x.test", "valid", 2),
            ("s.test", "self-signed", 1),
            ("m.test", "valid", 2),
        ]
        for name, kind, length in cases:
            chain = _presented_chain(contexts.get(name, kind), name)
            leaf = x509.load_der_x509_certificate(chain[0])
            assert len(chain) == length
            assert leaf.public_key() == pki._key(CertSpec((name,), kind)).public_key()
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert san.get_values_for_type(x509.DNSName) == [name]
    finally:
        contexts.close()


def test_fleet_specs_of_hosts_sharing_a_certificate_build_one_context(pki_dir: Path) -> None:
    contexts = ContextCache(world_pki(pki_dir))
    try:
        outlook = [h for h in SCALE.hosts if h.provider == "outlook"][:5]
        own = next(h for h in SCALE.hosts if h.provider is None and h.smtp is not None and h.cert)
        specs = [spec for host in outlook for spec in services.host_spec(host, contexts)]
        assert len({id(spec.tls_factory()) for spec in specs if spec.tls_factory}) == 1
        (mine,) = services.host_spec(own, contexts)
        shared_factory = specs[0].tls_factory
        assert mine.tls_factory is not None and shared_factory is not None
        assert mine.tls_factory() is not shared_factory()
        assert contexts.built == 2
    finally:
        contexts.close()


# -- contexts built before a mail process reports ready -------------------------------------------


def test_prebuilt_contexts_are_all_kept_and_serving_builds_none(pki_dir: Path) -> None:
    """Every context a shard's SMTP hosts and policy sites ask for is among ``cert_specs``: built
    before ready, kept whatever the cache's size, and none is built while serving."""
    world = scale_world(3000, seed=5)
    part = services.shards(world, 2)[0]
    wanted = services.cert_specs(part)
    assert part.policy and len(wanted) > 3
    contexts = ContextCache(world_pki(pki_dir), size=2)
    try:
        assert contexts.prebuild(wanted, processes=2) == len(wanted) == contexts.built
        hosts = [s for h in part.smtp for s in services.host_spec(h, contexts) if s.address in part.addresses]
        sites = [services.policy_site(d, h, contexts) for d, h in part.policy]
        for factory in [s.tls_factory for s in hosts] + [s.tls_factory for s in sites]:
            if factory is not None:
                factory()
        assert contexts.built == len(wanted)  # nothing built (or rebuilt) while serving
    finally:
        contexts.close()


def test_a_world_too_big_for_eager_contexts_builds_them_on_first_use(
    pki_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worldpki, "EAGER_CONTEXTS", 5)
    specs = {CertSpec((f"mx{i}.eager.test",), "valid") for i in range(3)}
    contexts = ContextCache(world_pki(pki_dir))
    try:
        assert contexts.prebuild(specs, processes=2) == 0 and contexts.built == 0  # 6 > 5
        assert contexts.prebuild(specs, processes=1) == 3 and contexts.built == 3  # 3 <= 5
    finally:
        contexts.close()
