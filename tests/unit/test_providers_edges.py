"""Provider attribution at its edges (probes/providers.py): attribute leaves, extra public
suffixes, the messages a malformed provider table gives, where an updated PSL is stored.

Each test builds its own ProviderMap: a map is memoised, and a shared one would answer from
its cache whatever the code does now.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from publicsuffixlist import PSLFILE

from probes.providers import (
    ProviderMap,
    ProviderMapError,
    default_psl_path,
    load_provider_map,
    parse_provider_toml,
    update_psl,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("_25._tcp.mx.example.com", "example.com"),
        ("_mta-sts.example.com", "example.com"),
        ("_smtp._tls.example.com", "example.com"),
        ("_only", None),  # an attribute leaf with nothing below it names no operator
        ("mx._25.example.com", None),  # only leading labels are attribute leaves
    ],
)
def test_attribute_leaves_are_stripped_from_the_left_only(name: str, expected: str | None) -> None:
    assert ProviderMap().provider_of(name) == expected


def test_extra_public_suffix_gives_each_customer_its_own_provider() -> None:
    providers = ProviderMap(overrides=(), public_suffixes=["hosted.example"])
    assert providers.provider_of("mx.hosted.example") == "mx.hosted.example"
    assert providers.provider_of("a.mx.hosted.example") == "mx.hosted.example"
    assert providers.provider_of("hosted.example") is None  # a public suffix is nobody's
    deeper = ProviderMap(overrides=(), public_suffixes=["eu.cloud.example"])
    assert deeper.provider_of("mx.eu.cloud.example") == "mx.eu.cloud.example"


_PS = '[[public_suffix]]\nsuffix = "ok.example"\n[[public_suffix]]\n'

BAD_TABLES = [
    ('[[override]]\nsuffix = "a.example"\nprovider = " "\n', "override #1: provider must be a non-empty"),
    (
        '[[override]]\nsuffix = "a.example"\nprovider = "a"\n[[override]]\nsuffix = 7\nprovider = "b"\n',
        "override #2: suffix must be a string",
    ),
    (_PS + 'suffix = "a..b"\n', "public_suffix #2: invalid suffix 'a..b': "),
    ("[[other]]\nx = 1\n", "provider TOML: unknown table(s) ['other']"),
    ("override = 3\n", "provider TOML: override must be an array of tables ([[override]])"),
    ("public_suffix = [1]\n", "provider TOML: public_suffix must be an array of tables ([[public_suffix]])"),
    ("[[override]\n", "provider TOML: "),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_TABLES)
def test_malformed_provider_table_says_which_entry_and_why(text: str, message: str) -> None:
    with pytest.raises(ProviderMapError) as caught:
        parse_provider_toml(text)
    assert str(caught.value).startswith(message)


def test_provider_table_without_tables_is_empty() -> None:
    assert parse_provider_toml("") == ((), ())


def test_updated_psl_goes_to_the_xdg_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_psl_path() == tmp_path / "xdg" / "mxscan" / "public_suffix_list.dat"
    source = tmp_path / "list.dat"
    source.write_text(Path(PSLFILE).read_text(encoding="utf-8") + "\nmailhost.example\n", encoding="utf-8")
    update_psl(str(source))  # the cache directory does not exist yet
    assert default_psl_path().read_bytes() == source.read_bytes()
    assert [p.name for p in default_psl_path().parent.iterdir()] == ["public_suffix_list.dat"]
    assert load_provider_map().provider_of("mx.shop.mailhost.example") == "shop.mailhost.example"


def test_without_xdg_the_psl_goes_under_the_home_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_psl_path() == tmp_path / ".cache" / "mxscan" / "public_suffix_list.dat"


def test_a_refused_list_names_the_file(tmp_path: Path) -> None:
    source = tmp_path / "bad.dat"
    source.write_bytes(b"com\n")
    with pytest.raises(ProviderMapError) as caught:
        update_psl(str(source), str(tmp_path / "out.dat"))
    assert str(caught.value).startswith(f"{source}: no '")
    assert not (tmp_path / "out.dat").exists()


def _real_list() -> bytes:
    return Path(PSLFILE).read_bytes()


def test_a_list_of_exactly_the_size_cap_is_accepted_one_byte_more_refused(tmp_path: Path) -> None:
    from probes.providers import MAX_PSL_BYTES

    body = _real_list() + b"\n"
    padded = body + b"/" * (MAX_PSL_BYTES - len(body) - 1) + b"\n"  # one long comment line
    assert len(padded) == MAX_PSL_BYTES
    source = tmp_path / "list.dat"
    source.write_bytes(padded)
    update_psl(str(source), str(tmp_path / "ok.dat"))
    source.write_bytes(padded + b"\n")
    with pytest.raises(ProviderMapError) as caught:
        update_psl(str(source), str(tmp_path / "too-big.dat"))
    assert str(caught.value) == f"{source}: larger than {MAX_PSL_BYTES} bytes"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe" + b"com\n", ": not UTF-8 text (invalid byte at offset 0)"),
        (
            b"// ===BEGIN ICANN DOMAINS===\ncom\n",
            ": gives 'co.uk' for mx.example.co.uk, not example.co.uk",
        ),
    ],
    ids=["not-utf8", "fails-the-sanity-check"],
)
def test_a_refused_list_says_why(tmp_path: Path, content: bytes, message: str) -> None:
    source = tmp_path / "bad.dat"
    source.write_bytes(content)
    with pytest.raises(ProviderMapError) as caught:
        update_psl(str(source), str(tmp_path / "out.dat"))
    assert str(caught.value).startswith(f"{source}{message}")


def test_updating_the_list_again_replaces_it(tmp_path: Path) -> None:
    source = tmp_path / "list.dat"
    dest = tmp_path / "cache" / "public_suffix_list.dat"
    for extra in (b"\nfirst.example\n", b"\nsecond.example\n"):
        source.write_bytes(_real_list() + extra)
        update_psl(str(source), str(dest))  # the second time the directory exists
        assert dest.read_bytes() == source.read_bytes()


def test_the_memo_is_bounded() -> None:
    providers = ProviderMap(cache_size=2)
    for host in ("a.example.com", "b.example.org", "c.example.net"):
        assert providers.provider_of(host) == host.partition(".")[2]
    assert "maxsize=2" in providers.cache_info() and "currsize=2" in providers.cache_info()
