"""A remembered issuer standing in as anchor gives exactly the verifier's verdict.

``IssuerCache`` lets a new leaf under already-verified intermediates cost one
signature check.  These tests build CAs whose intermediates differ in the ways
that could make the stand-in disagree with a full verification (name
constraints, a short validity, an EKU that refuses serverAuth, a twin with the
same name and key, the root presented too) and hold every warm verdict equal to
a cold one.
"""

from __future__ import annotations

import datetime as dt
import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from probes.tls.truststore import TrustStore, load_trust_store
from probes.tls.verify import PkixReason, Verifier

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Ca:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@functools.cache
def _key(label: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, serial: int
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


#: Roots in the one trust store: the usual one, one for a cross-signed twin, one with
#: name constraints and one expiring soon (the stand-in skips every check above the
#: leaf's issuer, so each must be covered by IssuerCache's conditions).
ROOTS = ("usual", "cross", "constrained", "short", "dual")
CROSS_SKI = b"cross-signed twin"


@functools.cache
def root(kind: str = "usual") -> Ca:
    key = _key(f"root-{kind}")
    until = NOW + (5 * DAY if kind == "short" else 3650 * DAY)
    since = NOW + (5 * DAY if kind == "dual" else -3650 * DAY)  # "dual": trusted only from day 5
    builder = (
        _builder(f"Issuer Cache Test Root {kind}", _name(f"Issuer Cache Test Root {kind}"), key, 1)
        .not_valid_before(since)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
    )
    if kind == "constrained":
        builder = builder.add_extension(
            x509.NameConstraints([x509.DNSName("good.test")], None), critical=True
        )
    return Ca(builder.sign(key, hashes.SHA256()), key)


@functools.cache
def store() -> TrustStore:
    path = Path(tempfile.mkdtemp(prefix="mxscan-issuers-")) / "roots.pem"
    path.write_bytes(b"".join(root(kind).cert.public_bytes(serialization.Encoding.PEM) for kind in ROOTS))
    return load_trust_store("none", [str(path)])


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
    )  # fmt: skip


#: Intermediates that differ in what could make a stand-in anchor disagree; the twin and
#: the cross-signed one share the plain one's name and key.
INTERMEDIATES = (
    "plain", "constrained", "short", "client-only", "twin-of-plain", "cross-of-plain",
    "under-constrained-root", "under-short-root", "under-dual",
)  # fmt: skip
_ISSUING_ROOT = {
    "cross-of-plain": "cross",
    "under-constrained-root": "constrained",
    "under-short-root": "short",
    "under-dual": "dual",
}
_SHARES_PLAIN = ("twin-of-plain", "cross-of-plain")


def root_of(kind: str) -> Ca:
    return root(_ISSUING_ROOT.get(kind, "usual"))


@functools.cache
def intermediate(kind: str) -> Ca:
    key = _key("plain" if kind in _SHARES_PLAIN else kind)
    issuer = root_of(kind)
    subject = "Issuer Cache Test CA plain" if kind in _SHARES_PLAIN else f"Issuer Cache Test CA {kind}"
    until = NOW + (5 * DAY if kind == "short" else 1000 * DAY)
    eku = ExtendedKeyUsageOID.CLIENT_AUTH if kind == "client-only" else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(10 + INTERMEDIATES.index(kind))
        .not_valid_before(NOW - 100 * DAY)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    )
    ski = x509.SubjectKeyIdentifier(CROSS_SKI) if kind == "cross-of-plain" else None
    builder = builder.add_extension(
        ski or x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    )
    if kind == "constrained":
        builder = builder.add_extension(
            x509.NameConstraints([x509.DNSName("good.test")], None), critical=True
        )
    return Ca(builder.sign(issuer.key, hashes.SHA256()), key)


#: Leaves that differ in everything a leaf can get wrong, in the names constraints read, and
#: in which of two same-named issuers their authorityKeyIdentifier points at.
LEAVES = (
    "good", "outside-constraint", "expired", "not-yet-valid", "client-eku",
    "is-a-ca", "foreign-key", "long-lived", "points-at-cross",
)  # fmt: skip


@functools.cache
def leaf(issuer_kind: str, kind: str, serial: int) -> bytes:
    issuer = intermediate(issuer_kind)
    signer = _key("foreign") if kind == "foreign-key" else issuer.key
    name = "outside.other.test" if kind == "outside-constraint" else f"mx{serial}.good.test"
    start, end = NOW - 10 * DAY, NOW + 80 * DAY
    if kind == "expired":
        start, end = NOW - 100 * DAY, NOW - DAY
    elif kind == "not-yet-valid":
        start, end = NOW + DAY, NOW + 100 * DAY
    elif kind == "long-lived":
        end = NOW + 2000 * DAY  # past its issuer's notAfter: allowed, and the window must still hold
    eku = ExtendedKeyUsageOID.CLIENT_AUTH if kind == "client-eku" else ExtendedKeyUsageOID.SERVER_AUTH
    if kind == "points-at-cross":
        aki = x509.AuthorityKeyIdentifier(CROSS_SKI, None, None)
    else:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
    cert = (
        _builder(name, issuer.cert.subject, _key("leaf"), 1000 + serial * 31 + LEAVES.index(kind))
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=kind == "is-a-ca", path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(aki, critical=False)
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _cross_signed(root_kind: str, serial: int) -> Ca:
    """Root ``root_kind`` (same name and key, no name constraints) signed by the usual root."""
    original, usual = root(root_kind), root()
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(usual.key.public_key())
    cert = (
        _builder(f"Issuer Cache Test Root {root_kind}", usual.cert.subject, original.key, serial)
        .not_valid_before(NOW - 100 * DAY)
        .not_valid_after(NOW + 1000 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(aki, critical=False)
        .sign(usual.key, hashes.SHA256())
    )
    return Ca(cert, original.key)


@functools.cache
def dual_cross() -> Ca:
    """Root "dual" cross-signed, valid now: until the store's own "dual" becomes valid
    (day 5) the search reaches the usual root through it; afterwards the store's "dual" is
    tried first and wins.  The anchor changes with time although no certificate on the first
    path expires."""
    return _cross_signed("dual", 77)


@functools.cache
def constrained_cross() -> Ca:
    """Root "constrained" cross-signed without its name constraints: the store's constrained
    root is tried first and refuses a leaf outside good.test, which then reaches the usual
    root through this one.  Which root anchors the path depends on the leaf's names, though
    the path found for an outside leaf carries no constraint."""
    return _cross_signed("constrained", 78)


def presented_rest(issuer_kind: str, layout: str) -> tuple[bytes, ...]:
    issuer = intermediate(issuer_kind).der
    return {
        "issuer": (issuer,),
        "issuer+root": (issuer, root_of(issuer_kind).der),
        "issuer+twin": (issuer, intermediate("twin-of-plain").der),
        "issuer+cross": (issuer, intermediate("cross-of-plain").der),
        "issuer-twice": (issuer, issuer),
        "issuer+dual-cross": (issuer, dual_cross().der),
        "issuer+constrained-cross": (issuer, constrained_cross().der),
    }[layout]


LAYOUTS = (
    "issuer", "issuer+root", "issuer+twin", "issuer+cross", "issuer-twice",
    "issuer+dual-cross", "issuer+constrained-cross",
)  # fmt: skip


def _fresh() -> Verifier:
    """A verifier that has verified nothing yet (a scan's, or a cold one)."""
    return Verifier(store())


def _verify(
    verifier: Verifier, chain: tuple[bytes, ...], host: str, at: dt.datetime
) -> tuple[bool, PkixReason, str, str]:
    result = verifier.verify(chain, host, at)
    return result.valid, result.reason, result.detail, result.anchor


def _host(kind: str, serial: int, asked: str) -> str:
    if asked == "own":
        return "outside.other.test" if kind == "outside-constraint" else f"mx{serial}.good.test"
    return asked


@given(
    issuer_kind=st.sampled_from(INTERMEDIATES),
    layout=st.sampled_from(LAYOUTS),
    leaves=st.lists(
        st.tuples(st.sampled_from(LEAVES), st.integers(0, 6), st.sampled_from(["own", "mx0.good.test"])),
        min_size=1,
        max_size=6,
    ),
    days=st.sampled_from([0, 3, 10, -5]),
    warm_days=st.sampled_from([0, 3, 10, -5]),
    warm_kind=st.sampled_from(["good", "outside-constraint"]),
)
def test_warm_verdicts_equal_cold_ones(
    issuer_kind: str,
    layout: str,
    leaves: list[tuple[str, int, str]],
    days: int,
    warm_days: int,
    warm_kind: str,
) -> None:
    """Whatever verified before under the same intermediates (the same chains included), at
    whatever time, each leaf's verdict (reason, detail and anchor included) equals a
    verification with every cache empty: both the issuer and the path cache are exact."""
    rest, at = presented_rest(issuer_kind, layout), NOW + days * DAY
    chains = [
        ((leaf(issuer_kind, kind, serial), *rest), _host(kind, serial, asked))
        for kind, serial, asked in leaves
    ]
    cold = [_verify(_fresh(), chain, host, at) for chain, host in chains]
    v = _fresh()
    warm_up = (leaf(issuer_kind, warm_kind, 99), *rest)
    _verify(v, warm_up, _host(warm_kind, 99, "own"), NOW + warm_days * DAY)
    for chain, host in chains:  # every chain seen once before, at the warm-up's time
        _verify(v, chain, host, NOW + warm_days * DAY)
    warm = [_verify(v, chain, host, at) for chain, host in chains]
    assert warm == cold


def test_a_new_leaf_under_a_verified_issuer_costs_no_full_verification() -> None:
    v = _fresh()
    rest = presented_rest("plain", "issuer+root")
    for serial in range(4):
        assert _verify(v, (leaf("plain", "good", serial), *rest), f"mx{serial}.good.test", NOW)[0]
    assert (v.issuers.hits, v.issuers.misses) == (3, 1)
    assert v.full_verifications == 1  # the first leaf's


def test_the_stand_in_serves_the_path_cache_too() -> None:
    """After a leaf verified under a remembered issuer, its own chain is a path-cache hit."""
    v = _fresh()
    rest = presented_rest("plain", "issuer")
    assert _verify(v, (leaf("plain", "good", 0), *rest), "mx0.good.test", NOW)[0]
    assert _verify(v, (leaf("plain", "good", 1), *rest), "mx1.good.test", NOW)[0]
    assert _verify(v, (leaf("plain", "good", 1), *rest), "MX1.good.test", NOW)[0]
    assert (v.paths.hits, v.issuers.hits) == (1, 1)


def test_issuers_that_could_disagree_are_not_remembered() -> None:
    """Name constraints read the leaf; a twin makes the search branch; both stay uncached."""
    for kind, layout in (("constrained", "issuer"), ("plain", "issuer+twin")):
        v = _fresh()
        rest = presented_rest(kind, layout)
        assert _verify(v, (leaf(kind, "good", 0), *rest), "mx0.good.test", NOW)[0]
        assert _verify(v, (leaf(kind, "good", 1), *rest), "mx1.good.test", NOW)[0]
        assert v.issuers.hits == 0, (kind, layout)


def test_a_remembered_issuer_never_outlives_itself() -> None:
    v = _fresh()
    rest = presented_rest("short", "issuer")
    assert _verify(v, (leaf("short", "good", 0), *rest), "mx0.good.test", NOW)[0]
    later = _verify(v, (leaf("short", "long-lived", 1), *rest), "mx1.good.test", NOW + 10 * DAY)
    assert not later[0]
    assert later[1] is PkixReason.OTHER  # the leaf is fine; its issuer expired
    assert v.issuers.hits == 0


def test_a_leaf_that_is_itself_trusted_ends_its_own_path(tmp_path: Path) -> None:
    """A trusted leaf is its own path's anchor; the stand-in must not name the issuer's root."""
    trusted_leaf = leaf("plain", "good", 5)
    bundle = b"".join(root(kind).cert.public_bytes(serialization.Encoding.PEM) for kind in ROOTS)
    pem = x509.load_der_x509_certificate(trusted_leaf).public_bytes(serialization.Encoding.PEM)
    (tmp_path / "roots.pem").write_bytes(bundle + pem)
    with_leaf = load_trust_store("none", [str(tmp_path / "roots.pem")])
    rest = presented_rest("plain", "issuer")

    def verdict(verifier: Verifier) -> tuple[bool, PkixReason, str, str]:
        result = verifier.verify((trusted_leaf, *rest), "mx5.good.test", NOW)
        return result.valid, result.reason, result.detail, result.anchor

    cold = verdict(Verifier(with_leaf))
    v = Verifier(with_leaf)
    assert v.verify((leaf("plain", "good", 0), *rest), "mx0.good.test", NOW).valid
    assert verdict(v) == cold


Verdict = tuple[bool, PkixReason, str, str]


def _warm_then(
    kind: str, layout: str, warm: tuple[str, int, int], then: tuple[str, int, int]
) -> tuple[Verdict, Verdict, Verifier]:
    """Cold verdict of ``then`` (leaf kind, serial, day), its verdict after ``warm`` verified,
    and the verifier that verified both."""
    rest = presented_rest(kind, layout)

    def verdict(verifier: Verifier, leaf_kind: str, serial: int, day: int) -> Verdict:
        chain = (leaf(kind, leaf_kind, serial), *rest)
        return _verify(verifier, chain, _host(leaf_kind, serial, "own"), NOW + day * DAY)

    cold = verdict(_fresh(), *then)
    v = _fresh()
    verdict(v, *warm)
    return cold, verdict(v, *then), v


def test_constraints_off_the_path_found_still_rule_out_the_stand_in() -> None:
    """An outside leaf's path avoids the constrained root; a good.test leaf's path goes
    through it, so what one leaf found must not anchor another."""
    cold, warm, v = _warm_then(
        "under-constrained-root", "issuer+constrained-cross", ("outside-constraint", 98, 0), ("good", 1, 0)
    )
    assert cold[3] == "CN=Issuer Cache Test Root constrained"
    assert warm == cold
    assert v.issuers.hits == 0


def test_a_certificate_becoming_valid_off_the_path_ends_the_window() -> None:
    """On day 0 the path runs through the cross-signed "dual" to the usual root; from day 5
    the store's own "dual" is valid, is tried first and anchors the path instead."""
    cold, warm, v = _warm_then("under-dual", "issuer+dual-cross", ("good", 98, 0), ("good", 1, 10))
    assert cold[3] == "CN=Issuer Cache Test Root dual"
    assert warm == cold and v.issuers.hits == 0
    cold, warm, v = _warm_then("under-dual", "issuer+dual-cross", ("good", 98, 0), ("good", 1, 3))
    assert cold[3] == "CN=Issuer Cache Test Root usual"
    assert warm == cold and v.issuers.hits == 1  # a second path to a root is fine in-window


def test_a_path_remembered_before_a_root_became_valid_is_not_served_after() -> None:
    """The same chain, day 0 then day 10: the path cache must not repeat day 0's anchor."""
    rest = presented_rest("under-dual", "issuer+dual-cross")
    chain = (leaf("under-dual", "good", 1), *rest)
    cold = _verify(_fresh(), chain, "mx1.good.test", NOW + 10 * DAY)
    v = _fresh()
    assert _verify(v, chain, "mx1.good.test", NOW)[3] == "CN=Issuer Cache Test Root usual"
    assert _verify(v, chain, "mx1.good.test", NOW + 3 * DAY) == _verify(v, chain, "mx1.good.test", NOW)
    assert v.paths.hits == 2
    assert _verify(v, chain, "mx1.good.test", NOW + 10 * DAY) == cold
    assert cold[3] == "CN=Issuer Cache Test Root dual"
