"""Edges of DANE chain matching (RFC 6698, RFC 7671 §5.2, RFC 7672 §3.1) that mutation testing
found unpinned: DANE-TA with a bare key from DNS ("2 1 0") signed by RSA (PKCS#1 v1.5 and
PSS), Ed25519 and DSA keys, and refused by a key of another type; a presented CA that did not
issue the leaf never links it to an anchor; validity bounds are inclusive (RFC 5280 §4.1.2.5);
times without a zone are UTC whatever the machine's zone; which match is reported (the
certificate anchor before a bare key, the earlier record on a tie); a second anchor of the same
record is tried after the first fails; and what each miss says.  Signatures are checked by
cryptography, the same library OpenSSL's verdict is compared with in test_dane_openssl_vectors."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa, x25519
from cryptography.x509.oid import NameOID

from probes.dane.chain import ChainMatch, match_chain
from probes.dane.record import TlsaRecord
from testbed.pki import TestPki

HOST = "mx.chain-edges.example.test"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SigningKey = "rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | dsa.DSAPrivateKey"
# DSA is deprecated in cryptography, but servers still sign with it and the code verifies it.
pytestmark = pytest.mark.filterwarnings("ignore:DSA is deprecated")


@functools.cache
def pki() -> TestPki:
    return TestPki(NOW, label="chain-edges")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _spki(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    public_key: object,
    issuer: str,
    signer: SigningKey,
    *,
    ca: bool,
    days: tuple[int, int] = (-30, 60),
    pss: bool = False,
) -> x509.Certificate:
    """A certificate as public CAs issue them (SAN not critical), signed by ``signer``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + days[0] * DAY)
        .not_valid_after(NOW + days[1] * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
    digest = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    if pss:
        salt = padding.PSS.DIGEST_LENGTH
        return builder.sign(signer, digest, rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), salt))  # type: ignore[arg-type]
    return builder.sign(signer, digest)  # type: ignore[arg-type]


def _leaf_signed_by(signer: SigningKey, *, pss: bool = False) -> bytes:
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    return _der(_cert(HOST, leaf_key.public_key(), "Bare Key CA", signer, ca=False, pss=pss))


def _bare_key(key: object) -> TlsaRecord:
    return TlsaRecord(2, 1, 0, _spki(key).hex())


@functools.cache
def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def _dsa() -> dsa.DSAPrivateKey:
    return dsa.generate_private_key(key_size=2048)


KEYS = {
    "rsa-pkcs1": (_rsa, False),
    "rsa-pss": (_rsa, True),
    "ed25519": (ed25519.Ed25519PrivateKey.generate, False),
    "dsa": (_dsa, False),
    "ec-p256": (lambda: ec.generate_private_key(ec.SECP256R1()), False),
}


@pytest.mark.parametrize("kind", list(KEYS))
def test_a_bare_key_from_dns_anchors_the_leaf_it_signed(kind: str) -> None:
    make, pss = KEYS[kind]
    key = make()
    record = _bare_key(key)
    assert match_chain([record], [_leaf_signed_by(key, pss=pss)], host=HOST, at=NOW) == ChainMatch(
        record, 0, ()
    )


@pytest.mark.parametrize("kind", list(KEYS))
def test_a_bare_key_refuses_a_leaf_another_key_of_its_type_signed(kind: str) -> None:
    make, pss = KEYS[kind]
    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind.startswith("rsa") else make()
    )
    if kind == "dsa":
        other = dsa.generate_private_key(key_size=2048)
    record = _bare_key(make())
    result = match_chain([record], [_leaf_signed_by(other, pss=pss)], host=HOST, at=NOW)
    assert result == ChainMatch(None, None, ("2 1 0: leaf does not chain to the trust anchor",))


@pytest.mark.parametrize(
    "record_key",
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="ec-key-rsa-signature"),
        pytest.param(x25519.X25519PrivateKey.generate, id="x25519-key-cannot-sign"),
    ],
)
def test_a_bare_key_of_another_type_than_the_signature_never_anchors(record_key: object) -> None:
    record = _bare_key(record_key())  # type: ignore[operator]
    result = match_chain([record], [_leaf_signed_by(_rsa())], host=HOST, at=NOW)
    assert result.record is None


def test_a_presented_ca_that_did_not_issue_the_leaf_never_links_it_to_the_anchor() -> None:
    """The leaf's issuer is not presented; another CA is, and the record's anchor issued that
    one: the chain does not reach the anchor (issuer name and signature, RFC 5280 §6.1)."""
    p = pki()
    leaf = p.issue([HOST]).leaf_der  # issued by the trusted intermediate, which is not sent
    anchor = TlsaRecord(2, 0, 0, p.untrusted_root.der.hex())
    result = match_chain([anchor], [leaf, p.untrusted_intermediate.der], host=HOST, at=NOW)
    assert result == ChainMatch(None, None, ("2 0 0: leaf does not chain to the trust anchor",))


@pytest.mark.parametrize("edge", ["not_valid_before_utc", "not_valid_after_utc"])
def test_validity_bounds_are_inclusive_below_the_anchor(edge: str) -> None:
    issued = pki().issue([HOST])
    record = TlsaRecord(2, 0, 0, pki().root.der.hex())
    at = getattr(issued.leaf, edge)
    assert match_chain([record], issued.chain_der, host=HOST, at=at).record == record
    outside = at - dt.timedelta(seconds=1) if edge == "not_valid_before_utc" else at + dt.timedelta(seconds=1)
    result = match_chain([record], issued.chain_der, host=HOST, at=outside)
    assert result.misses == ("2 0 0: a certificate below the trust anchor is outside its validity",)


@pytest.fixture
def local_zone_five_hours_behind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "EST+5")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_zone_five_hours_behind")
def test_a_time_without_zone_is_utc_whatever_the_local_zone() -> None:
    issued = pki().issue([HOST])
    record = TlsaRecord(2, 0, 0, pki().root.der.hex())
    last_hour = issued.leaf.not_valid_after_utc - dt.timedelta(hours=1)
    assert match_chain([record], issued.chain_der, host=HOST, at=last_hour.replace(tzinfo=None)).depth == 2
    tokyo = last_hour.astimezone(dt.timezone(dt.timedelta(hours=9)))
    assert match_chain([record], issued.chain_der, host=HOST, at=tokyo).depth == 2
    after = (issued.leaf.not_valid_after_utc + dt.timedelta(hours=1)).astimezone(
        dt.timezone(dt.timedelta(hours=9))
    )
    assert match_chain([record], issued.chain_der, host=HOST, at=after).record is None


def test_a_certificate_anchor_is_reported_before_the_bare_key_of_the_same_record() -> None:
    """ "2 1 0 <root key>" with the root presented: the presented root anchors at depth 2, the
    bare key at depth 1; OpenSSL reports the certificate anchor."""
    p = pki()
    chain = (*p.issue([HOST]).chain_der, p.root.der)
    record = TlsaRecord(2, 1, 0, _spki(p.root.key).hex())
    assert match_chain([record], chain, host=HOST, at=NOW) == ChainMatch(record, 2, ())


def test_on_a_tie_the_earlier_record_is_reported() -> None:
    p = pki()
    chain = p.issue([HOST]).chain_der
    by_cert = TlsaRecord(2, 0, 1, hashlib.sha256(chain[1]).hexdigest())
    by_key = TlsaRecord(2, 1, 1, hashlib.sha256(_spki(p.intermediate.key)).hexdigest())
    assert match_chain([by_cert, by_key], chain, host=HOST, at=NOW) == ChainMatch(by_cert, 1, ())
    assert match_chain([by_key, by_cert], chain, host=HOST, at=NOW) == ChainMatch(by_key, 1, ())


def test_a_dane_ee_match_has_no_misses() -> None:
    chain = pki().issue([HOST]).chain_der
    miss = TlsaRecord(3, 1, 1, "00" * 32)
    leaf = TlsaRecord(3, 0, 1, hashlib.sha256(chain[0]).hexdigest())
    assert match_chain([miss, leaf], chain, host=HOST, at=NOW) == ChainMatch(leaf, 0, ())


def test_the_bare_key_is_tried_when_a_presented_copy_of_it_names_another_subject() -> None:
    """A presented certificate carries the anchor key under another name, so it issued nothing
    in the chain by name; the bare key from the same "2 1 0" record still signed the issuer
    (RFC 7671 §5.2.2: a bare key is matched by signature alone)."""
    p = pki()
    renamed = _cert("Renamed Root", p.root.key.public_key(), "Renamed Root", p.root.key, ca=True)
    chain = (*p.issue([HOST]).chain_der, _der(renamed))
    record = TlsaRecord(2, 1, 0, _spki(p.root.key).hex())
    assert match_chain([record], chain, host=HOST, at=NOW) == ChainMatch(record, 1, ())


def test_a_later_anchor_is_tried_when_the_path_to_an_earlier_one_holds_an_expired_ca() -> None:
    """One key K under two presented CA names: N1 (valid), and N2 (expired, issued by N1), which
    issued the leaf's CA.  A "2 1 1 <K>" record matches both: the path to N1 runs through the
    expired N2, the path to N2 does not (an anchor's own dates are not checked)."""
    k, c_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    n1 = _cert("N1", k.public_key(), "N1", k, ca=True)
    n2 = _cert("N2", k.public_key(), "N1", k, ca=True, days=(-90, -1))
    c = _cert("C", c_key.public_key(), "N2", k, ca=True)
    leaf = _cert(HOST, ec.generate_private_key(ec.SECP256R1()).public_key(), "C", c_key, ca=False)
    record = TlsaRecord(2, 1, 1, hashlib.sha256(_spki(k)).hexdigest())
    chain = [_der(leaf), _der(c), _der(n1), _der(n2)]
    assert match_chain([record], chain, host=HOST, at=NOW) == ChainMatch(record, 2, ())


@pytest.mark.parametrize(
    ("chain", "miss"),
    [
        pytest.param([b"\x01\x02not a certificate"], "2 0 1: leaf unparsable", id="leaf-unparsable"),
    ],
)
def test_each_miss_says_why(chain: list[bytes], miss: str) -> None:
    record = TlsaRecord(2, 0, 1, "00" * 32)
    assert match_chain([record], chain, host=HOST, at=NOW) == ChainMatch(None, None, (miss,))


def test_a_malformed_extension_met_while_checking_is_a_miss_not_a_crash() -> None:
    p = pki()
    issued = p.issue([HOST])
    broken = (
        x509.CertificateBuilder()
        .subject_name(issued.leaf.subject)
        .issuer_name(p.intermediate.cert.subject)
        .public_key(issued.leaf.public_key())
        .serial_number(7)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(
            x509.UnrecognizedExtension(x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x04\x03abc"),
            critical=False,
        )
        .sign(p.intermediate.key, hashes.SHA256())
    )
    record = TlsaRecord(2, 0, 0, p.intermediate.der.hex())
    result = match_chain([record], [_der(broken), issued.chain_der[1]], host=HOST, at=NOW)
    assert result.record is None and len(result.misses) == 1
    assert result.misses[0].startswith("2 0 0: malformed certificate: ")
