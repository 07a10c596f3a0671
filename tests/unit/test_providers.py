"""Provider attribution: overrides, extra public suffixes, the PSL, and updating it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from publicsuffixlist import PSLFILE

from engine.limitspec import BIG_PROVIDER_LIMIT, DEFAULT_PROVIDER_KEY, PER_IP_KEY, provider_limit
from probes.providers import (
    BUILTIN_OVERRIDES,
    STUDY_TOP_PROVIDERS,
    Override,
    ProviderMap,
    ProviderMapError,
    default_limits,
    load_provider_map,
    parse_provider_toml,
    update_psl,
)

MAP = ProviderMap()

CASES = [
    ("mx1.l.google.com", "google.com", "google-mx1"),
    ("aspmx.l.google.com", "google.com", "google-aspmx"),
    ("alt1.aspmx.l.google.com", "google.com", "google-alt1"),
    ("gmail-smtp-in.l.google.com", "google.com", "gmail-smtp-in-is-google.com"),
    ("alt1.gmail-smtp-in.l.googlemail.com", "googlemail.com", "googlemail-kept-apart"),
    ("example-com.mail.protection.outlook.com", "outlook.com", "outlook-per-customer"),
    ("mx.yandex.net", "yandex.net", "yandex"),
    ("route1.mx.cloudflare.net", "cloudflare.net", "cloudflare-psl-private-merged"),
    ("mxa-00001.gslb.pphosted.com", "pphosted.com", "pphosted"),
    ("inbound-smtp.us-east-1.amazonaws.com", "amazonaws.com", "amazonaws-psl-private-merged"),
    ("eu-smtp-inbound-1.mimecast.com", "mimecast.com", "mimecast"),
    ("mx.example.co.uk", "example.co.uk", "psl-two-label-suffix"),
    ("mx.example.com", "example.com", "psl-plain"),
    ("MX1.L.Google.COM.", "google.com", "case-and-trailing-dot"),
    ("mx.bücher.de", "xn--bcher-kva.de", "idn-to-a-label"),
    ("mx.alice.duckdns.org", "alice.duckdns.org", "psl-private-kept-per-customer"),
    ("_mta-sts.example.com", "example.com", "attribute-leaf-dropped"),
    ("mx.shop-1.test", "shop-1.test", "unknown-tld-default-rule"),
    # the test world's stand-ins (testbed/scale.py PROVIDERS)
    ("aspmx.l.google.prov.test", "google.com", "world-google"),
    ("gmail-smtp-in.l.googlemail.prov.test", "googlemail.com", "world-googlemail"),
    ("shop-1-test.mail.protection.outlook.prov.test", "outlook.com", "world-outlook"),
    ("mx0a-00000007.pphosted.prov.test", "pphosted.com", "world-pphosted"),
    ("eu-smtp-inbound-1.mimecast.prov.test", "mimecast.com", "world-mimecast"),
    ("eforward1.registrar-servers.prov.test", "registrar-servers.com", "world-registrar-servers"),
    ("inbound-smtp.us-east-1.amazonaws.prov.test", "amazonaws.com", "world-amazonaws"),
    ("mxbiz1.qq.prov.test", "qq.com", "world-qq"),
    ("route1.mx.cloudflare.prov.test", "cloudflare.net", "world-cloudflare"),
    ("mx.yandex.prov.test", "yandex.net", "world-yandex"),
    ("web3.webhosting.prov.test", "webhosting.prov.test", "world-webhost"),
    ("_mta-sts.sts.prov.test", "sts.prov.test", "world-sts-host"),
    ("mx.expired-cert-4.scenario.test", "expired-cert-4.scenario.test", "world-scenario-domain"),
]


@pytest.mark.parametrize(("host", "provider"), [c[:2] for c in CASES], ids=[c[2] for c in CASES])
def test_provider_of(host: str, provider: str) -> None:
    assert MAP.provider_of(host) == provider


NONE_CASES = [
    ("", "empty"),
    ("   ", "blank"),
    ("192.0.2.1", "ipv4-literal"),
    ("[192.0.2.1]", "bracketed-ipv4"),
    ("2001:db8::1", "ipv6-literal"),
    ("[2001:db8::1]", "bracketed-ipv6"),
    ("com", "single-label"),
    ("co.uk", "public-suffix-itself"),
    ("prov.test", "extra-public-suffix-itself"),
    ("a..b.com", "empty-label"),
    ("mx.example.com:25", "port-suffix"),
    ("x" * 64 + ".com", "label-too-long"),
    ("mx.1.2.3", "numeric-tld"),
]


@pytest.mark.parametrize("host", [c[0] for c in NONE_CASES], ids=[c[1] for c in NONE_CASES])
def test_no_provider(host: str) -> None:
    assert MAP.provider_of(host) is None


def test_googlemail_and_google_stay_apart() -> None:
    assert MAP.provider_of("gmail-smtp-in.l.googlemail.com") != MAP.provider_of("aspmx.l.google.com")


def test_longest_override_wins_and_label_boundaries_hold() -> None:
    pmap = ProviderMap([Override("example.net", "outer"), Override("mail.example.net", "inner")])
    assert pmap.provider_of("mx.mail.example.net") == "inner"
    assert pmap.provider_of("mail.example.net") == "inner"
    assert pmap.provider_of("mx.other.example.net") == "outer"
    assert pmap.provider_of("mx.notexample.net") == "notexample.net"


def test_user_toml_adds_and_wins_over_shipped() -> None:
    pmap = load_provider_map(
        """
        [[override]]
        suffix = "*.example.net"
        provider = "Example"

        [[override]]
        suffix = "google.com"
        provider = "alphabet"

        [[public_suffix]]
        suffix = "hosting.example"
        """
    )
    assert pmap.provider_of("mx1.example.net") == "example"
    assert pmap.provider_of("aspmx.l.google.com") == "alphabet"
    assert pmap.provider_of("mx.alice.hosting.example") == "alice.hosting.example"
    assert pmap.provider_of("route1.mx.cloudflare.net") == "cloudflare.net"  # shipped entries stay


BAD_TOML = [
    ("[[override]]\nsuffix = 'x.com'\n", "missing-provider"),
    ("[[override]]\nprovider = 'x'\n", "missing-suffix"),
    ("[[override]]\nsuffix = '1.2.3.4'\nprovider = 'x'\n", "ip-suffix"),
    ("[[override]]\nsuffix = 'a..b'\nprovider = 'x'\n", "empty-label"),
    ("override = 3\n", "not-array-of-tables"),
    ("[[overide]]\nsuffix = 'x.com'\nprovider = 'x'\n", "typo-table"),
    ("[[override]\n", "toml-syntax"),
]


@pytest.mark.parametrize("text", [c[0] for c in BAD_TOML], ids=[c[1] for c in BAD_TOML])
def test_bad_toml_is_refused(text: str) -> None:
    with pytest.raises(ProviderMapError):
        parse_provider_toml(text)


def test_shipped_overrides_cover_the_study_top_10() -> None:
    providers = {o.provider for o in BUILTIN_OVERRIDES}
    top10 = {"google.com", "outlook.com", "googlemail.com", "pphosted.com", "mimecast.com"}
    top10 |= {"registrar-servers.com", "amazonaws.com", "qq.com", "cloudflare.net", "yandex.net"}
    assert set(STUDY_TOP_PROVIDERS) == top10 and len(STUDY_TOP_PROVIDERS) == 10
    assert top10 <= providers


def test_the_built_in_limits_give_the_study_top_10_the_big_providers_limit() -> None:
    table = default_limits()
    assert set(table) == {*STUDY_TOP_PROVIDERS, DEFAULT_PROVIDER_KEY, PER_IP_KEY}
    for host in ("mx1.l.google.com", "example-com.mail.protection.outlook.com"):
        assert provider_limit(table, MAP.provider_of(host)) == BIG_PROVIDER_LIMIT


def test_every_test_world_provider_maps_to_what_it_stands_for() -> None:
    from testbed.scale import PROVIDERS

    for prov in PROVIDERS:
        assert MAP.provider_of(f"mx.{prov.zone}") == prov.stands_for, prov.key


def test_update_psl_stores_a_valid_list_and_it_is_used(tmp_path: Path) -> None:
    source = tmp_path / "new.dat"
    # A user's newer list with one extra (made-up) private rule.
    source.write_text(Path(PSLFILE).read_text(encoding="utf-8") + "\nmailhost.example\n", encoding="utf-8")
    dest = tmp_path / "cache" / "public_suffix_list.dat"
    update_psl(str(source), str(dest))
    assert dest.read_bytes() == source.read_bytes()
    pmap = load_provider_map(psl_file=str(dest))
    assert pmap.provider_of("mx.bob.mailhost.example") == "bob.mailhost.example"
    assert ProviderMap().provider_of("mx.bob.mailhost.example") == "mailhost.example"  # bundled list


@pytest.mark.parametrize(
    "content",
    [b"", b"com\nnet\n", b"\xff\xfe garbage", b"// ===BEGIN ICANN DOMAINS===\nexample.com\n"],
    ids=["empty", "no-icann-marker", "not-utf8", "fails-sanity-check"],
)
def test_update_psl_refuses_a_bad_list(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "bad.dat"
    source.write_bytes(content)
    dest = tmp_path / "cache.dat"
    with pytest.raises(ProviderMapError):
        update_psl(str(source), str(dest))
    assert not dest.exists()


def _is_label_suffix(suffix: str, name: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


_LABEL = st.sampled_from(["mx", "mx1", "l", "aspmx", "google", "co", "uk", "com", "net", "test", "prov"])
_LABEL |= st.sampled_from(["amazonaws", "us-east-1", "cloudflare", "xn--bcher-kva", "_mta-sts", "1"])
_LABEL |= st.text("abz09-_.", min_size=0, max_size=8)
_HOSTS = st.lists(_LABEL, min_size=1, max_size=6).map(".".join) | st.text(max_size=80)


@given(_HOSTS)
def test_any_text_gives_a_suffix_of_the_host_or_none(host: str) -> None:
    provider = MAP.provider_of(host)
    assert provider is None or isinstance(provider, str)
    if provider is None or ".prov.test" in host.lower():
        return  # test-world stand-ins map to the real names they imitate
    normal = host.strip().lower().rstrip(".")
    if normal.isascii():
        assert _is_label_suffix(provider, normal)
