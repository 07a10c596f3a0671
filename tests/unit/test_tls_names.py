"""Host names in certificates (probes/tls/names.py): case tables from RFC 6125 §6.4 and
OpenSSL's rules for a subject CN under name constraints (``cn2dnsid`` and ``nc_dns`` in
crypto/x509/v3_ncons.c), each row a behaviour mutation testing found unpinned or a
boundary of one."""

from __future__ import annotations

import pytest

from probes.tls.names import cn_dns_id, dns_name_permitted, match_hostname

#: (subject CN, the host name OpenSSL holds to dNSName constraints, or None: not one).
CN_DNS_IDS = [
    ("mail.example.com", "mail.example.com"),
    ("Mail.Xmpp.Example", "Mail.Xmpp.Example"),  # a label may start with any letter, "X" too
    ("mail.example.XX", "mail.example.XX"),  # trailing letters are not stripped like NULs
    ("mail.example.c", "mail.example.c"),  # a one-character last label
    ("a-b.x-y", "a-b.x-y"),  # "-" just before the last character is inside
    ("mx.a.b", "mx.a.b"),  # "." just before the last character is inside
    ("under_score.example", "under_score.example"),
    ("mail.example.com\x00\x00", "mail.example.com"),  # trailing NULs dropped
    ("localhost", None),  # one label: escapes every constraint, as in OpenSSL
    ("", None),
    ("mail..example", None),
    ("mail.-example", None),
    ("mail-.example", None),
    ("-mail.example", None),
    ("mail.example-", None),
    (".mail.example", None),
    ("mail.example.", None),
    ("mail example.com", None),
    ("*.example.com", None),
    ("mail.exämple.com", None),
]


@pytest.mark.parametrize(("cn", "expected"), CN_DNS_IDS)
def test_a_subject_cn_is_a_host_name_for_name_constraints_by_openssls_rules(
    cn: str, expected: str | None
) -> None:
    assert cn_dns_id(cn) == expected


def test_a_cn_with_an_embedded_nul_is_refused_with_its_reason() -> None:
    """OpenSSL refuses such a CN outright; the reason reaches the PKIX detail."""
    with pytest.raises(ValueError, match=r"^embedded NUL in the subject CN$"):
        cn_dns_id("mail.example.com\x00.evil.test")


#: (host, SAN addresses as text, matches): RFC 6125 §6.4 compares addresses by value.
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


#: (name, permitted, excluded, inside): RFC 5280 §4.2.1.10 dNSName subtrees as OpenSSL reads them.
SUBTREES = [
    ("mail.example.com", ["example.com"], [], True),
    ("example.com", ["example.com"], [], True),
    ("badexample.com", ["example.com"], [], False),  # labels are added on the left only
    ("mail.example.com", [".example.com"], [], True),
    ("example.com", [".example.com"], [], False),
    ("MAIL.EXAMPLE.COM", ["example.com"], [], True),  # ASCII case-insensitive
    ("mail.example.com", [], ["example.com"], False),
    ("mail.example.com", ["example.com"], ["mail.example.com"], False),
    ("mail.example.org", [], ["example.com"], True),
    ("mail.example.org", ["example.com", "example.org"], [], True),
    ("anything.test", [""], [], True),  # an empty base holds every name
]


@pytest.mark.parametrize(("name", "permitted", "excluded", "inside"), SUBTREES)
def test_a_host_name_is_inside_the_permitted_and_outside_the_excluded_subtrees(
    name: str, permitted: list[str], excluded: list[str], inside: bool
) -> None:
    assert dns_name_permitted(name, permitted, excluded) is inside
