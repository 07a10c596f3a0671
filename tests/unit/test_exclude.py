"""Opt-out list: parsing, name suffix rule, address ranges, and a brute-force reference."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.exclude import ExcludeError, ExcludeList

LIST = ExcludeList.from_lines(
    """
    # operators who asked not to be scanned
    example.com
    *.Example.ORG.          # wildcard form, case and trailing dot
    mx.provider.net
    bücher.de
    192.0.2.0/24
    198.51.100.7            # one address
    203.0.113.77/28         # host bits are ignored: 203.0.113.64/28
    2001:db8::/32
    """.splitlines()
)

NAME_CASES = [
    ("example.com", True, "listed-domain"),
    ("mx.example.com", True, "below-listed-domain"),
    ("a.b.c.example.com", True, "deep-below"),
    ("EXAMPLE.COM.", True, "case-and-dot"),
    ("notexample.com", False, "label-boundary"),
    ("example.com.au", False, "listed-is-not-a-prefix"),
    ("example.org", True, "wildcard-covers-apex"),
    ("mx1.example.org", True, "wildcard-covers-below"),
    ("mx.provider.net", True, "listed-mx-host"),
    ("provider.net", False, "parent-of-listed-host"),
    ("other.provider.net", False, "sibling-of-listed-host"),
    ("mx.xn--bcher-kva.de", True, "idn-as-a-label"),
    ("mx.BÜCHER.de", True, "idn-as-u-label"),
    ("192.0.2.1", False, "address-is-not-a-name"),
    ("", False, "empty"),
    ("a..example.com", False, "invalid-name"),
]


@pytest.mark.parametrize(("name", "excluded"), [c[:2] for c in NAME_CASES], ids=[c[2] for c in NAME_CASES])
def test_excludes_name(name: str, excluded: bool) -> None:
    assert LIST.excludes_name(name) is excluded


ADDRESS_CASES = [
    ("192.0.2.0", True, "range-start"),
    ("192.0.2.255", True, "range-end"),
    ("192.0.3.0", False, "after-range"),
    ("198.51.100.7", True, "single-address"),
    ("198.51.100.8", False, "next-to-single"),
    ("203.0.113.64", True, "host-bits-ignored-start"),
    ("203.0.113.79", True, "host-bits-ignored-end"),
    ("203.0.113.80", False, "host-bits-ignored-after"),
    ("2001:db8:ffff::25", True, "v6-range"),
    ("2001:db9::1", False, "v6-outside"),
    ("::ffff:192.0.2.9", True, "v4-mapped-v6"),
    (" 192.0.2.9 ", True, "whitespace"),
    ("example.com", False, "name-is-not-an-address"),
    ("999.1.1.1", False, "invalid-address"),
]


@pytest.mark.parametrize(
    ("ip", "excluded"), [c[:2] for c in ADDRESS_CASES], ids=[c[2] for c in ADDRESS_CASES]
)
def test_excludes_address(ip: str, excluded: bool) -> None:
    assert LIST.excludes_address(ip) is excluded


BAD_LINES = [
    ("example.com\nnot a name\n", 2, "two-words"),
    ("\n\n# c\nexa_mple..com\n", 4, "empty-label"),
    ("192.0.2.0/33\n", 1, "prefix-too-long"),
    ("1.2.3.999\n", 1, "bad-octet"),
    ("example.com/24\n", 1, "name-with-prefix"),
    ("x" * 2000 + "\n", 1, "line-too-long"),
    ("ok.example\n-bad-.example\n", 2, "hyphen-edges"),
]


@pytest.mark.parametrize(("text", "line"), [c[:2] for c in BAD_LINES], ids=[c[2] for c in BAD_LINES])
def test_invalid_lines_name_their_line(text: str, line: int) -> None:
    with pytest.raises(ExcludeError) as info:
        ExcludeList.from_lines(text.splitlines())
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}:")


def test_from_file_and_len(tmp_path: Path) -> None:
    path = tmp_path / "exclude.txt"
    path.write_text("# nothing yet\n\nexample.com\nexample.com\n10.0.0.0/8\n10.1.0.0/8\n", encoding="utf-8")
    excl = ExcludeList.from_file(path)
    assert len(excl) == 2  # duplicates collapse
    assert excl.excludes_name("www.example.com") and excl.excludes_address("10.255.0.1")


def test_empty_list_excludes_nothing() -> None:
    empty = ExcludeList.from_lines(["# only a comment", ""])
    assert len(empty) == 0
    assert not empty.excludes_name("example.com") and not empty.excludes_address("192.0.2.1")


def test_large_list() -> None:
    names = [f"d{i}.example" for i in range(50_000)]
    nets = [f"10.{i // 256}.{i % 256}.0/24" for i in range(10_000)]
    excl = ExcludeList.from_lines(names + nets)
    assert excl.excludes_name("mx.d49999.example") and not excl.excludes_name("mx.d50000.example")
    assert excl.excludes_address("10.39.15.200") and not excl.excludes_address("10.40.0.0")


# --- properties against brute-force references

_LABELS = st.sampled_from(["a", "b", "mx", "example", "com", "net"])
_NAMES = st.lists(_LABELS, min_size=1, max_size=4).map(".".join)


def _label_suffixes(name: str) -> set[str]:
    labels = name.split(".")
    return {".".join(labels[i:]) for i in range(len(labels))}


@given(st.lists(_NAMES.filter(lambda n: "." in n), max_size=8), _NAMES.filter(lambda n: "." in n))
def test_name_excluded_iff_a_listed_suffix_is_a_label_suffix(listed: list[str], name: str) -> None:
    expected = any(entry in _label_suffixes(name) for entry in listed)
    assert ExcludeList.from_lines(listed).excludes_name(name) is expected


_V4_NETS = st.builds(
    lambda addr, plen: ipaddress.ip_network(f"{ipaddress.IPv4Address(addr)}/{plen}", strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
_V6_NETS = st.builds(
    lambda addr, plen: ipaddress.ip_network(f"{ipaddress.IPv6Address(addr)}/{plen}", strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)


@given(st.lists(_V4_NETS | _V6_NETS, max_size=6), st.data())
def test_address_excluded_iff_inside_a_listed_network(
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network], data: st.DataObject
) -> None:
    inside: bool = data.draw(st.booleans())
    if nets and inside:
        net = data.draw(st.sampled_from(nets))  # an address inside one of them, often at an edge
        edge = st.sampled_from([0, net.num_addresses - 1])
        offset = data.draw(edge | st.integers(0, net.num_addresses - 1))
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = net.network_address + offset
    else:
        address = ipaddress.ip_address(data.draw(st.integers(0, 2**32 - 1) | st.integers(2**32, 2**128 - 1)))
    expected = any(address.version == n.version and address in n for n in nets)
    assert ExcludeList.from_lines([str(n) for n in nets]).excludes_address(str(address)) is expected


@given(st.text(max_size=60))
def test_any_line_parses_or_raises_exclude_error(text: str) -> None:
    try:
        excl = ExcludeList.from_lines([text])
    except ExcludeError:
        return
    assert isinstance(excl.excludes_name(text), bool)
    assert isinstance(excl.excludes_address(text), bool)
