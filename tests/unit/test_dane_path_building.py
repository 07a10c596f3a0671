"""DANE-TA path building over the presented chain, as OpenSSL 3.0 builds it (RFC 7671 §5.2.2;
``find_issuer`` in OpenSSL's crypto/x509/x509_vfy.c): of the presented certificates that
issued the current one, the first within its validity, else the one whose validity ends last
(the first of equals), and no backtracking.

The world: a root, and one intermediate ("Issuing", one key) presented in several copies: an
expired one and a renewed one issued by the root, and copies issued by another root that is
never presented (dead ends).  Every case of ``CASES`` is checked against OpenSSL itself by
``tests/integration/test_dane_openssl_oracle.py`` (``openssl s_client -dane_tlsa_rrdata``
against a TLS server on loopback presenting the chain); here the same table pins mxscan's
answers without running OpenSSL.

Also here: a hostile chain of many copies of one CA costs a bounded number of signature
checks however many records ask, and which exceptions DANE-TA matching turns into a
"malformed certificate" miss (cryptography's TypeError for a malformed subjectAltName) and
which it lets through (a programming error).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtensionOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

import probes.dane.chain
from probes.dane.chain import ChainMatch, match_chain
from probes.dane.record import TlsaRecord
from probes.tls.certs import is_issued_by

HOST = "mx.path-building.example.test"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
VALIDITY = "a certificate below the trust anchor is outside its validity"
NO_CHAIN = "leaf does not chain to the trust anchor"
# DSA is deprecated in cryptography, but servers still sign with it and the code verifies it.
pytestmark = pytest.mark.filterwarnings("ignore:DSA is deprecated")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    signer: ec.EllipticCurvePrivateKey,
    days: tuple[int, int],
    *,
    ca: bool = True,
    san: x509.Extension[x509.ExtensionType] | None = None,
) -> x509.Certificate:
    """A certificate as public CAs issue them (SAN not critical), valid ``days`` around NOW."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + days[0] * DAY)
        .not_valid_after(NOW + days[1] * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        value = san.value if san is not None else x509.SubjectAlternativeName([x509.DNSName(HOST)])
        builder = builder.add_extension(value, critical=False)
    return builder.sign(signer, hashes.SHA256())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class World:
    """The keys and certificates every case draws from (names as in the module docstring)."""

    root_key: ec.EllipticCurvePrivateKey
    leaf_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    leaf: x509.Certificate
    issuing: dict[str, x509.Certificate]


@functools.cache
def world() -> World:
    root_key, other_key, issuing_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))

    def copy(issuer: str, days: tuple[int, int]) -> x509.Certificate:
        return _cert("Issuing", issuing_key, issuer, root_key if issuer == "Root" else other_key, days)

    issuing = {
        "expired": copy("Root", (-400, -10)),
        "renewed": copy("Root", (-30, 300)),
        "not-yet-valid": copy("Root", (10, 400)),
        "dead-end": copy("Other Root", (-30, 300)),
        "dead-end-expired-later": copy("Other Root", (-400, -5)),
        "dead-end-expired-earlier": copy("Other Root", (-400, -20)),
        "dead-end-expired-same-day": copy("Other Root", (-300, -10)),
        "dead-end-not-yet-valid": copy("Other Root", (10, 400)),
        "unrelated": _cert("Unrelated CA", other_key, "Unrelated CA", other_key, (-30, 300)),
    }
    return World(
        root_key=root_key,
        leaf_key=leaf_key,
        root=_cert("Root", root_key, "Root", root_key, (-700, 3000)),
        leaf=_cert(HOST, leaf_key, "Issuing", issuing_key, (-5, 60), ca=False),
        issuing=issuing,
    )


#: How the root is named by the record, and whether the server presents it too.
ANCHORS: dict[str, tuple[Callable[[World], TlsaRecord], bool]] = {
    "2 0 0 root from DNS": (lambda w: TlsaRecord(2, 0, 0, der(w.root).hex()), False),
    "2 1 0 root key from DNS": (lambda w: TlsaRecord(2, 1, 0, spki(w.root_key).hex()), False),
    "2 0 1 root presented": (lambda w: TlsaRecord(2, 0, 1, hashlib.sha256(der(w.root)).hexdigest()), True),
    "2 1 1 root presented": (
        lambda w: TlsaRecord(2, 1, 1, hashlib.sha256(spki(w.root_key)).hexdigest()),
        True,
    ),
}


@dataclass(frozen=True)
class PathCase:
    """One presented chain (the leaf, then ``issuing`` copies in this order, then the root when
    the anchor says it is presented) and the answer OpenSSL gives: the match depth, or the miss."""

    name: str
    issuing: tuple[str, ...]
    anchor: str
    depth: int | None
    miss: str | None = None

    def record(self) -> TlsaRecord:
        return ANCHORS[self.anchor][0](world())

    def chain(self) -> list[bytes]:
        w = world()
        presented = [w.leaf, *(w.issuing[copy] for copy in self.issuing)]
        if ANCHORS[self.anchor][1]:
            presented.append(w.root)
        return [der(c) for c in presented]


_DNS = "2 0 0 root from DNS"
CASES = [
    *(
        PathCase(f"expired copy first, then the renewed one; {anchor}", ("expired", "renewed"), anchor, depth)
        for anchor, depth in zip(ANCHORS, (2, 1, 2, 2), strict=True)
    ),
    PathCase("renewed copy first, then the expired one", ("renewed", "expired"), _DNS, 2),
    PathCase("only the expired copy", ("expired",), _DNS, None, VALIDITY),
    PathCase("a certificate that issued nothing sent before the issuer", ("unrelated", "renewed"), _DNS, 2),
    PathCase("a not-yet-valid copy before the renewed one", ("not-yet-valid", "renewed"), _DNS, 2),
    PathCase(
        "a not-yet-valid dead end before the renewed one", ("dead-end-not-yet-valid", "renewed"), _DNS, 2
    ),
    PathCase(
        "the first valid issuer is a dead end: no backtracking", ("dead-end", "renewed"), _DNS, None, NO_CHAIN
    ),
    PathCase(
        "expired, then a valid dead end, then renewed",
        ("expired", "dead-end", "renewed"),
        _DNS,
        None,
        NO_CHAIN,
    ),
    PathCase(
        "none valid: the one ending last, a dead end",
        ("expired", "dead-end-expired-later"),
        _DNS,
        None,
        NO_CHAIN,
    ),
    PathCase(
        "none valid: the one ending last, anchored",
        ("dead-end-expired-earlier", "expired"),
        _DNS,
        None,
        VALIDITY,
    ),
    PathCase(
        "none valid, ending alike: the first, anchored",
        ("expired", "dead-end-expired-same-day"),
        _DNS,
        None,
        VALIDITY,
    ),
    PathCase(
        "none valid, ending alike: the first, a dead end",
        ("dead-end-expired-same-day", "expired"),
        _DNS,
        None,
        NO_CHAIN,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_issuer_picked_is_the_one_openssl_picks(case: PathCase) -> None:
    record = case.record()
    result = match_chain([record], case.chain(), host=HOST, at=NOW)
    if case.depth is not None:
        assert result == ChainMatch(record, case.depth, ())
    else:
        assert result == ChainMatch(
            None, None, (f"{record.usage} {record.selector} {record.mtype}: {case.miss}",)
        )


def test_the_issuer_picked_is_the_same_whichever_record_asks_first() -> None:
    """One chain, two records: the signature checks remembered for the first record must give
    the second the same path (the remembered answers belong to this chain)."""
    case = CASES[0]
    by_dns, by_key = ANCHORS[_DNS][0](world()), ANCHORS["2 1 0 root key from DNS"][0](world())
    chain = case.chain()
    assert match_chain([by_key, by_dns], chain, host=HOST, at=NOW) == ChainMatch(by_dns, 2, ())
    assert match_chain([by_dns, by_key], chain, host=HOST, at=NOW) == ChainMatch(by_dns, 2, ())


def test_a_hostile_chain_of_copies_costs_one_signature_check_per_pair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The leaf and 15 copies of one CA that issue each other (same name and key), and 8
    records naming an anchor of that name under another key, which none of them reaches: every
    path runs through all 15 copies and fails.  Each (certificate, issuer) signature is checked
    at most once for the whole chain: 16 by 15 pairs plus the 16 certificates against each of the
    8 anchors, not that times the records."""
    ca_key, anchor_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    copies = [_cert("Loop CA", ca_key, "Loop CA", ca_key, (-30 - i, 300)) for i in range(15)]
    leaf = _cert(HOST, leaf_key, "Loop CA", ca_key, (-5, 60), ca=False)
    anchors = [_cert("Loop CA", anchor_key, "Loop CA", anchor_key, (-30 - i, 300)) for i in range(8)]
    records = [TlsaRecord(2, 0, 0, der(a).hex()) for a in anchors]
    checks: list[tuple[x509.Certificate, x509.Certificate]] = []

    def counted(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        checks.append((cert, issuer))
        return is_issued_by(cert, issuer)

    monkeypatch.setattr(probes.dane.chain, "is_issued_by", counted)
    result = match_chain(records, [der(leaf), *map(der, copies)], host=HOST, at=NOW)
    assert result == ChainMatch(None, None, tuple(f"2 0 0: {NO_CHAIN}" for _ in records))
    assert len(checks) == len(set(checks)) <= 16 * 15 + 16 * len(anchors)


def _raw_san(general_name: bytes) -> x509.Extension[x509.ExtensionType]:
    """A subjectAltName of one GeneralName given as DER (under 128 bytes), unparsed."""
    value = b"\x30" + bytes([len(general_name)]) + general_name
    return x509.Extension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        False,
        x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, value),
    )


def test_a_type_error_cryptography_raises_reading_the_leaf_names_is_a_malformed_certificate() -> None:
    """A subjectAltName directoryName whose CN is a BIT STRING: cryptography raises TypeError
    ("oid must be X500_UNIQUE_IDENTIFIER for BitString type") when the extension is read, so
    TypeError stays among the errors a malformed extension may raise."""
    w = world()
    cn_as_bit_string = bytes.fromhex("a40e300c310a30080603550403030178")
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = _cert("Issuing", issuing_key, "Root", w.root_key, (-30, 300))
    leaf = _cert(HOST, w.leaf_key, "Issuing", issuing_key, (-5, 60), ca=False, san=_raw_san(cn_as_bit_string))
    with pytest.raises(TypeError):
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    record = ANCHORS[_DNS][0](w)
    result = match_chain([record], [der(leaf), der(issuing)], host=HOST, at=NOW)
    assert result.misses == (
        "2 0 0: malformed certificate: oid must be X500_UNIQUE_IDENTIFIER for BitString type.",
    )


def test_a_programming_error_in_dane_ta_matching_is_raised_not_reported_as_a_malformed_certificate() -> None:
    """Association data handed over as bytes instead of hex text: a caller's mistake, which
    must fail loudly, not read as a miss that blames the server's certificate."""
    case = CASES[0]
    record = TlsaRecord(2, 0, 0, der(world().root))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        match_chain([record], case.chain(), host=HOST, at=NOW)


@functools.cache
def _signers() -> tuple[tuple[CertificateIssuerPrivateKeyTypes, bytes], ...]:
    """One key of each type the bare-key check knows, and a leaf it signed."""
    keys: tuple[CertificateIssuerPrivateKeyTypes, ...] = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
        ed448.Ed448PrivateKey.generate(),
        dsa.generate_private_key(key_size=2048),
    )
    leaf_key = world().leaf_key
    signed = []
    for key in keys:
        digest = (
            None if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
        )
        leaf = (
            x509.CertificateBuilder()
            .subject_name(_name(HOST))
            .issuer_name(_name("Bare Key CA"))
            .public_key(leaf_key.public_key())
            .serial_number(1)
            .not_valid_before(NOW - DAY)
            .not_valid_after(NOW + DAY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .sign(key, digest)
        )
        signed.append((key, der(leaf)))
    return tuple(signed)


@given(st.integers(0, 4), st.integers(0, 1 << 16), st.integers(1, 255))
def test_a_damaged_leaf_under_a_bare_key_of_any_type_is_a_match_or_a_miss(
    signer: int, at: int, flip: int
) -> None:
    """One byte of a signed leaf changed (signature, algorithm, key, anything), checked against
    the bare key ("2 1 0") of every key type: a result, never an exception.  The signature check
    catches no TypeError (that would be our own mistake), so this holds only because nothing a
    peer sends makes cryptography raise one there."""
    signers = _signers()
    damaged = bytearray(signers[signer][1])
    damaged[at % len(damaged)] ^= flip
    records = [
        TlsaRecord(
            2,
            1,
            0,
            key.public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            .hex(),
        )
        for key, _ in signers
    ]
    result = match_chain(records, [bytes(damaged)], host=HOST, at=NOW)
    assert isinstance(result, ChainMatch)
    assert (result.record is None) == (len(result.misses) == len(records))
