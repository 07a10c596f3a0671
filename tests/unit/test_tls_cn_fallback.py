"""The CN fallback gives OpenSSL's verdict, name constraints included.

A leaf without a dNSName is matched by its subject CN (OpenSSL's ``X509_check_host``, as
Python's ssl module, Postfix and Exim use it); OpenSSL then also holds every CN that looks
like a host name to the dNSName constraints of every certificate above the leaf.  Each case
is checked against ``openssl verify`` too.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from probes.tls.names import cn_dns_id, dns_name_permitted
from probes.tls.truststore import TrustStore, load_trust_store
from probes.tls.verify import PkixReason, verify_chain
from testbed.pki import IssuedCert
from testbed.pkicheck import openssl_verify

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@functools.cache
def _key(label: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(*cns: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in cns])


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
    )  # fmt: skip


#: CAs: subject -> (issuer, permitted dNSNames, excluded dNSNames); None: no constraints.
CAS: dict[str, tuple[str, list[str] | None, list[str] | None]] = {
    "CN Test Root": ("CN Test Root", None, None),
    "CN Test Constrained Root": ("CN Test Constrained Root", ["example.com"], None),
    "CA plain": ("CN Test Root", None, None),
    "CA permits example.com": ("CN Test Root", ["example.com"], None),
    "CA permits .example.com": ("CN Test Root", [".example.com"], None),
    "CA excludes bad.example.com": ("CN Test Root", None, ["bad.example.com"]),
    "CA under constrained root": ("CN Test Constrained Root", None, None),
    "CA with 1025 subtrees": ("CN Test Root", ["example.com", *(f"n{i}.test" for i in range(1024))], None),
}
ROOTS = ("CN Test Root", "CN Test Constrained Root")


@functools.cache
def ca(subject: str) -> x509.Certificate:
    issuer, permitted, excluded = CAS[subject]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(_key(subject).public_key())
        .serial_number(1 + list(CAS).index(subject))
        .not_valid_before(NOW - 100 * DAY)
        .not_valid_after(NOW + 1000 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(_key(subject).public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_key(issuer).public_key()), critical=False
        )
    )
    if permitted is not None or excluded is not None:
        constraints = x509.NameConstraints(
            [x509.DNSName(n) for n in permitted] if permitted else None,
            [x509.DNSName(n) for n in excluded] if excluded else None,
        )
        builder = builder.add_extension(constraints, critical=True)
    return builder.sign(_key(issuer), hashes.SHA256())


def issue(issuer: str, cns: tuple[str, ...], ip: str | None) -> IssuedCert:
    """A leaf with subject CNs ``cns`` and no dNSName (an iPAddress SAN if ``ip``)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(*cns))
        .issuer_name(_name(issuer))
        .public_key(_key("leaf").public_key())
        .serial_number(1000 + hash((issuer, cns, ip)) % 100_000)
        .not_valid_before(NOW - 10 * DAY)
        .not_valid_after(NOW + 80 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_key(issuer).public_key()), critical=False
        )
    )
    if ip is not None:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    leaf = builder.sign(_key(issuer), hashes.SHA256())
    return IssuedCert(cns, "cn-only", "ec", leaf, (leaf, ca(issuer)), b"")


def roots_pem() -> bytes:
    return b"".join(ca(r).public_bytes(serialization.Encoding.PEM) for r in ROOTS)


@functools.cache
def store() -> TrustStore:
    path = Path(tempfile.mkdtemp(prefix="mxscan-cn-")) / "roots.pem"
    path.write_bytes(roots_pem())
    return load_trust_store("none", [str(path)])


# name, issuing CA, subject CNs, iPAddress SAN, host asked, valid
CASES = [
    ("cn-outside-permitted-subtree", "CA permits example.com", ("evil.test",), None, "evil.test", False),
    ("cn-inside-permitted-subtree", "CA permits example.com", ("mx.example.com",), None, "mx.example.com",
     True),
    ("cn-equal-to-permitted-subtree", "CA permits example.com", ("example.com",), None, "example.com",
     True),
    ("cn-sharing-only-a-suffix", "CA permits example.com", ("notexample.com",), None, "notexample.com",
     False),
    ("cn-upper-case-inside", "CA permits example.com", ("MX.EXAMPLE.COM",), None, "mx.example.com", True),
    ("dotted-subtree-excludes-its-apex", "CA permits .example.com", ("example.com",), None, "example.com",
     False),
    ("dotted-subtree-permits-below", "CA permits .example.com", ("mx.example.com",), None,
     "mx.example.com", True),
    ("cn-in-excluded-subtree", "CA excludes bad.example.com", ("mx.bad.example.com",), None,
     "mx.bad.example.com", False),
    ("cn-beside-excluded-subtree", "CA excludes bad.example.com", ("mx.good.example.com",), None,
     "mx.good.example.com", True),
    ("constraint-on-the-trust-anchor", "CA under constrained root", ("evil.test",), None, "evil.test",
     False),
    ("second-cn-outside-permitted-subtree", "CA permits example.com", ("mx.example.com", "evil.test"),
     None, "mx.example.com", False),
    ("single-label-cn-is-not-a-host-name", "CA permits example.com", ("localhost",), None, "localhost",
     True),
    ("unconstrained-cn-fallback", "CA plain", ("mx.example.net",), None, "mx.example.net", True),
    ("ip-san-does-not-stop-the-cn-fallback", "CA plain", ("mx.example.net",), "192.0.2.7",
     "mx.example.net", True),
    ("ip-san-and-cn-outside-permitted-subtree", "CA permits example.com", ("evil.test",), "192.0.2.7",
     "evil.test", False),
]  # fmt: skip


@pytest.mark.parametrize(("name", "issuer", "cns", "ip", "host", "valid"), CASES, ids=[c[0] for c in CASES])
def test_cn_fallback_verdict_equals_openssls(
    name: str, issuer: str, cns: tuple[str, ...], ip: str | None, host: str, valid: bool
) -> None:
    issued = issue(issuer, cns, ip)
    result = verify_chain(issued.chain_der, host, store=store(), at=NOW)
    by_openssl, message = openssl_verify(issued, roots_pem(), host, NOW)
    assert by_openssl is valid, message
    assert result.valid is valid, result.detail
    if valid:
        assert "CN fallback" in result.detail
    else:
        assert result.reason is PkixReason.OTHER
        assert "name constraints" in result.detail


def test_too_many_names_against_too_many_constraints_are_refused_as_openssl_does() -> None:
    """1,024 subject names against 1,025 subtrees is past OpenSSL's 2**20 pairs: it refuses
    the chain rather than check (a hostile chain's quadratic work), and so does mxscan."""
    issued = issue("CA with 1025 subtrees", ("mx.example.com", *(f"unit{i}" for i in range(1023))), None)
    result = verify_chain(issued.chain_der, "mx.example.com", store=store(), at=NOW)
    by_openssl, message = openssl_verify(issued, roots_pem(), "mx.example.com", NOW)
    assert not by_openssl, message
    assert (result.valid, result.reason) == (False, PkixReason.OTHER)
    assert "too many to check" in result.detail
    fewer = issue("CA with 1025 subtrees", ("mx.example.com", *(f"unit{i}" for i in range(1022))), None)
    assert verify_chain(fewer.chain_der, "mx.example.com", store=store(), at=NOW).valid
    assert openssl_verify(fewer, roots_pem(), "mx.example.com", NOW)[0]


@pytest.mark.parametrize(
    ("cn", "dns_id"),
    [
        ("mx.example.com", "mx.example.com"),
        ("MX_1.Example.com", "MX_1.Example.com"),
        ("mx.example.com\x00\x00", "mx.example.com"),
        ("a--b.example.com", "a--b.example.com"),
        ("Mail.Xmpp.Example", "Mail.Xmpp.Example"),  # a label may start with any letter, "X" too
        ("mail.example.XX", "mail.example.XX"),  # trailing letters are not stripped like NULs
        ("mail.example.c", "mail.example.c"),  # a one-character last label
        ("a-b.x-y", "a-b.x-y"),  # "-" just before the last character is inside
        ("mx.a.b", "mx.a.b"),  # "." just before the last character is inside
        ("localhost", None),
        ("-mx.example.com", None),
        ("mx.example.com-", None),
        ("mx.example.com.", None),
        (".example.com", None),
        ("mx..example.com", None),
        ("mx-.example.com", None),
        ("mx.-example.com", None),
        ("Example Mail Server", None),
        ("bücher.example", None),
        ("*.example.com", None),
        ("", None),
    ],
)
def test_cn_read_as_a_host_name_as_openssl_does(cn: str, dns_id: str | None) -> None:
    assert cn_dns_id(cn) == dns_id


def test_cn_with_an_embedded_nul_is_refused() -> None:
    """OpenSSL refuses such a CN outright; the reason reaches the PKIX detail."""
    with pytest.raises(ValueError, match=r"^embedded NUL in the subject CN$"):
        cn_dns_id("mx.example.com\x00.evil.test")


@pytest.mark.parametrize(
    ("name", "permitted", "excluded", "allowed"),
    [
        ("mx.example.com", ["example.com"], [], True),
        ("example.com", ["example.com"], [], True),
        ("MX.Example.COM", ["example.com"], [], True),
        ("notexample.com", ["example.com"], [], False),
        ("example.com", [".example.com"], [], False),
        ("mx.example.com", [".example.com"], [], True),
        ("mx.example.com", ["other.test", "example.com"], [], True),
        ("mx.example.com", [""], [], True),
        ("mx.example.com", [], [""], False),
        ("mx.bad.example.com", ["example.com"], ["bad.example.com"], False),
        ("mx.example.com", [], ["bad.example.com"], True),
        ("mx.example.com", [], [], True),
        ("com", ["example.com"], [], False),
    ],
)
def test_dns_subtrees_as_openssl_reads_them(
    name: str, permitted: list[str], excluded: list[str], allowed: bool
) -> None:
    assert dns_name_permitted(name, permitted, excluded) is allowed
