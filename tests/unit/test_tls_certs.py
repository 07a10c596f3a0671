"""Certificate facts from DER, and the caps on presented chains."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st

from engine import records
from probes.tls.certs import (
    MAX_CHAIN_CERTS,
    CertFacts,
    CertParseError,
    ChainFacts,
    cert_facts,
    chain_facts,
    is_issued_by,
)
from testbed.pki import TestPki

HOST = "mx1.certs.example.test"
NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


@functools.cache
def pki() -> TestPki:
    return TestPki(now=NOW, label="certs")


def test_leaf_facts_ec() -> None:
    issued = pki().issue([HOST, "alt.certs.example.test", "127.0.0.26"])
    facts = cert_facts(issued.leaf_der)
    assert facts.subject == f"CN={HOST},O=mxscan test world,C=ZZ"
    assert facts.issuer == "CN=certs Test Issuing CA 1,O=mxscan test world,C=ZZ"
    assert facts.san_dns == (HOST, "alt.certs.example.test")
    assert facts.san_ip == ("127.0.0.26",)
    assert (facts.key_type, facts.key_bits, facts.curve) == ("ec", 256, "secp256r1")
    assert facts.signature_algorithm == "ecdsa-with-SHA256"
    assert facts.not_before == "2026-01-30T12:00:00Z"
    assert facts.not_after == "2026-04-30T12:00:00Z"
    assert facts.sha256 == hashlib.sha256(issued.leaf_der).hexdigest()
    spki = issued.leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert facts.spki_sha256 == hashlib.sha256(spki).hexdigest()
    assert facts.serial == format(issued.leaf.serial_number, "x")
    assert (facts.is_ca, facts.self_issued, facts.parse_issue) == (False, False, "")


@pytest.mark.parametrize(
    ("which", "is_ca", "self_issued"),
    [("root", True, True), ("intermediate", True, False)],
)
def test_ca_facts(which: str, is_ca: bool, self_issued: bool) -> None:
    facts = cert_facts(getattr(pki(), which).der)
    assert (facts.is_ca, facts.self_issued) == (is_ca, self_issued)
    assert facts.san_dns == ()


def test_rsa_and_self_signed_leaf() -> None:
    facts = cert_facts(pki().issue([HOST], kind="self-signed", key="rsa").leaf_der)
    assert (facts.key_type, facts.key_bits, facts.curve) == ("rsa", 2048, "")
    assert facts.self_issued and not facts.is_ca


def _self_signed(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey, *, with_san: bool) -> bytes:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "odd")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
    )
    if with_san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("odd.test")]), critical=False
        )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def test_ed25519_without_extensions() -> None:
    facts = cert_facts(_self_signed(ed25519.Ed25519PrivateKey.generate(), with_san=False))
    assert (facts.key_type, facts.key_bits, facts.signature_algorithm) == ("ed25519", 256, "ed25519")
    assert facts.san_dns == () and not facts.is_ca and facts.self_issued


@pytest.mark.parametrize(
    "der",
    [b"", b"\x00", b"\x30\x03\x02\x01\x01", b"-----BEGIN CERTIFICATE-----", b"\x30" * (70 * 1024)],
    ids=["empty", "one-byte", "not-a-certificate", "pem-not-der", "over-64k"],
)
def test_garbage_raises_cert_parse_error(der: bytes) -> None:
    with pytest.raises(CertParseError):
        cert_facts(der)


@given(st.binary(max_size=2000))
def test_any_bytes_give_facts_or_cert_parse_error(der: bytes) -> None:
    try:
        assert isinstance(cert_facts(der), CertFacts)
    except CertParseError:
        pass


@given(st.data())
def test_mangled_certificates_give_facts_or_cert_parse_error(data: st.DataObject) -> None:
    der = bytearray(pki().issue([HOST]).leaf_der)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        pos = data.draw(st.integers(min_value=0, max_value=len(der) - 1))
        der[pos] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        facts = cert_facts(bytes(der))
    except CertParseError:
        return
    assert len(facts.parse_issue) <= 512


def test_chain_facts_keep_order_and_errors() -> None:
    chain = pki().issue([HOST]).chain_der
    facts = chain_facts([*chain, b"junk"])
    assert [f.subject.split(",")[0] for f in facts.certs] == [f"CN={HOST}", "CN=certs Test Issuing CA 1"]
    assert (facts.presented, facts.truncated) == (3, False)
    assert len(facts.errors) == 1 and facts.errors[0].startswith("cert 2: ")


def test_chain_of_a_hundred_is_capped() -> None:
    chain = [pki().root.der] * 100
    facts = chain_facts(chain)
    assert (len(facts.certs), facts.presented, facts.truncated) == (MAX_CHAIN_CERTS, 100, True)


def test_is_issued_by() -> None:
    p = pki()
    leaf = p.issue([HOST]).leaf
    assert is_issued_by(leaf, p.intermediate.cert)
    assert is_issued_by(p.intermediate.cert, p.root.cert)
    assert not is_issued_by(leaf, p.root.cert)
    assert not is_issued_by(leaf, p.untrusted_intermediate.cert)


@pytest.mark.parametrize("cls", [CertFacts, ChainFacts])
def test_records_round_trip_and_have_a_schema(cls: type) -> None:
    value = chain_facts(pki().issue([HOST]).chain_der)
    if cls is CertFacts:
        value = value.certs[0]  # type: ignore[assignment]
    assert records.decode(cls, orjson.loads(records.encode(value))) == value
    records.json_schema(cls)
