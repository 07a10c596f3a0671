"""The test PKI issues what public CAs issue, and every kind is judged the same
by OpenSSL (ssl module handshake + `openssl verify`) and cryptography."""

from __future__ import annotations

import functools
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from testbed.pki import KINDS, WRONG_NAME, TestPki
from testbed.pkicheck import openssl_verify, ssl_handshake

HOST = "mx1.pki.example.test"


@functools.cache
def pki() -> TestPki:
    return TestPki()


def cryptography_accepts(pki: TestPki, chain: tuple[x509.Certificate, ...], host: str) -> bool:
    verifier = (
        PolicyBuilder().store(Store([pki.root.cert])).time(pki.now).build_server_verifier(x509.DNSName(host))
    )
    try:
        verifier.verify(chain[0], list(chain[1:]))
    except VerificationError:
        return False
    return True


# (kind, accepted by cryptography, accepted by OpenSSL).  "cn-only" is the one
# known disagreement: OpenSSL falls back to the CN, cryptography's verifier does
# not (probes/tls/verify.py closes the gap).
EXPECTED = [
    ("valid", True, True),
    ("expired", False, False),
    ("not-yet-valid", False, False),
    ("wrong-name", False, False),
    ("self-signed", False, False),
    ("untrusted-ca", False, False),
    ("missing-intermediate", False, False),
    ("cn-only", False, True),
]


def test_expected_table_covers_every_kind() -> None:
    assert sorted(k for k, _, _ in EXPECTED) == sorted(KINDS)


@pytest.mark.parametrize("key", ["ec", "rsa"])
@pytest.mark.parametrize(("kind", "by_cryptography", "by_openssl"), EXPECTED, ids=[k for k, _, _ in EXPECTED])
def test_each_kind_is_judged_as_intended(
    kind: str, by_cryptography: bool, by_openssl: bool, key: str
) -> None:
    p = pki()
    issued = p.issue([HOST], kind=kind, key=key)
    assert cryptography_accepts(p, issued.chain, HOST) is by_cryptography
    handshake_ok, handshake_msg = ssl_handshake(issued, p.root_pem(), HOST)
    assert handshake_ok is by_openssl, handshake_msg
    verify_ok, verify_msg = openssl_verify(issued, p.root_pem(), HOST, p.now)
    assert verify_ok is by_openssl, verify_msg


@pytest.mark.parametrize(
    ("kind", "openssl_error"),
    [
        ("expired", "certificate has expired"),
        ("not-yet-valid", "certificate is not yet valid"),
        ("wrong-name", "hostname mismatch"),
        ("self-signed", "self-signed certificate"),
        ("untrusted-ca", "unable to get local issuer certificate"),
        ("missing-intermediate", "unable to get local issuer certificate"),
    ],
)
def test_openssl_names_the_intended_defect(kind: str, openssl_error: str) -> None:
    p = pki()
    ok, message = openssl_verify(p.issue([HOST], kind=kind), p.root_pem(), HOST, p.now)
    assert not ok
    assert openssl_error in message


def test_leaf_follows_the_public_ca_profile() -> None:
    issued = pki().issue([HOST, "alt.pki.example.test"], key="rsa")
    leaf = issued.leaf
    ext = leaf.extensions
    san = ext.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == [HOST, "alt.pki.example.test"]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == HOST
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = pki().intermediate.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest
    ec_ku = pki().issue([HOST]).leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert not ec_ku.key_encipherment


@pytest.mark.parametrize("which", ["root", "intermediate", "untrusted_root", "untrusted_intermediate"])
def test_cas_follow_the_public_ca_profile(which: str) -> None:
    cert = getattr(pki(), which).cert
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)


def test_chains_served_per_kind() -> None:
    p = pki()
    assert p.issue([HOST]).chain == (p.issue([HOST]).leaf, p.intermediate.cert)
    assert len(p.issue([HOST], kind="missing-intermediate").chain) == 1
    assert len(p.issue([HOST], kind="self-signed").chain) == 1
    assert p.issue([HOST], kind="untrusted-ca").chain[1] == p.untrusted_intermediate.cert
    wrong = p.issue([HOST], kind="wrong-name").leaf
    names = wrong.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [WRONG_NAME]


def test_issue_is_memoised_and_ec_leaves_get_their_own_keys() -> None:
    p = pki()
    assert p.issue([HOST]) is p.issue([HOST])
    other = p.issue(["other.pki.example.test"])
    assert other.leaf.public_key() != p.issue([HOST]).leaf.public_key()


def test_ip_names_become_ip_sans() -> None:
    leaf = pki().issue(["127.0.0.25"]).leaf
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.25"]


@pytest.mark.parametrize(
    ("names", "kwargs", "message"),
    [
        ([], {}, "at least one name"),
        ([HOST], {"kind": "bogus"}, "unknown kind"),
        ([HOST], {"key": "dsa"}, "unknown key type"),
    ],
    ids=["no-names", "unknown-kind", "unknown-key"],
)
def test_issue_rejects_bad_arguments(names: list[str], kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pki().issue(names, **kwargs)


def test_save_writes_ca_files_and_private_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = pki()
    paths = p.save(tmp_path)
    assert set(paths) == {"ca", "intermediate", "untrusted-ca", "untrusted-intermediate"}
    assert paths["ca"].read_bytes() == p.root_pem()
    chain_path, key_path = p.issue([HOST]).save(tmp_path / "srv", "mx1")
    assert len(x509.load_pem_x509_certificates(chain_path.read_bytes())) == 2
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in key_path.read_bytes()
