"""RFC 6125 §6.4 host name matching (probes/tls/names.py) of an address host: compared
by value with the leaf's iPAddress SANs, never with a dNSName.  (The CN-as-host-name and
dNSName-subtree tables of names.py are in test_tls_cn_fallback.py.)"""

from __future__ import annotations

import pytest

from probes.tls.names import match_hostname

#: (host, SAN addresses as text, matches).
ADDRESSES = [
    ("192.0.2.1", ["192.0.2.1"], True),
    ("192.0.2.1", ["192.0.2.10"], False),
    ("2001:db8::1", ["2001:DB8:0:0::1"], True),
    ("192.0.2.1", ["192.0.2.1x", "", "::g", "not an address"], False),  # unparsable: no match
    ("192.0.2.1", ["junk", "192.0.2.1"], True),
]


@pytest.mark.parametrize(("host", "san_ip", "matches"), ADDRESSES)
def test_an_address_host_matches_only_a_san_address_of_the_same_value(
    host: str, san_ip: list[str], matches: bool
) -> None:
    assert match_hostname(host, ["192.0.2.1"], san_ip) is matches  # a dNSName never matches an address
