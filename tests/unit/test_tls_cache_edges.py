"""The PKIX caches count time as the verifier does, down to the second at every validity edge.

cryptography's verifier drops the microseconds of the verification time, so it takes a
certificate until notAfter + 0.999999 s.  A cache that counted it expired from notAfter +
1 µs once remembered a chain verified in that last second as valid until the next validity
change of any certificate it could reach (possibly years).  These tests hold every warm
verdict equal to a cold one at times around every notBefore and notAfter of a hierarchy.
"""

from __future__ import annotations

import datetime as dt
import functools
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from probes.tls.pathcache import verifier_time
from probes.tls.truststore import TrustStore, load_trust_store
from probes.tls.verify import PkixReason, Verifier

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SECOND = dt.timedelta(seconds=1)

#: Validity (days from NOW) of two roots, each with an intermediate that outlives it or
#: not, and of the leaves under each intermediate: one leaf outlives its intermediate, one
#: starts later.  The caches are wrong only if something stays valid after the edge.
ROOTS = {"lasting": (-1000, 2000), "short": (-1000, 20)}
INTERMEDIATE = (-100, 1500)
LEAVES = {"short": (-10, 10), "late": (5, 30), "long": (-10, 1600), "past-root": (-10, 25)}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@functools.cache
def _key(label: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _ca(subject: str, issuer: str, days: tuple[int, int], serial: int) -> x509.Certificate:
    key, signer = _key(subject), _key(issuer)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW + days[0] * DAY)
        .not_valid_after(NOW + days[1] * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
        .sign(signer, hashes.SHA256())
    )


@functools.cache
def root(branch: str) -> x509.Certificate:
    return _ca(f"Edge Test Root {branch}", f"Edge Test Root {branch}", ROOTS[branch], 1)


@functools.cache
def intermediate(branch: str) -> bytes:
    ca = _ca(f"Edge Test CA {branch}", f"Edge Test Root {branch}", INTERMEDIATE, 2)
    return ca.public_bytes(serialization.Encoding.DER)


@functools.cache
def leaf(branch: str, kind: str, serial: int) -> bytes:
    start, end = LEAVES[kind]
    host = host_of(kind, serial)
    issuer = f"Edge Test CA {branch}"
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(_name(issuer))
        .public_key(_key("leaf").public_key())
        .serial_number(100 + serial * 7 + list(LEAVES).index(kind))
        .not_valid_before(NOW + start * DAY)
        .not_valid_after(NOW + end * DAY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_key(issuer).public_key()), critical=False
        )
        .sign(_key(issuer), hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def host_of(kind: str, serial: int) -> str:
    return f"mx{serial}-{kind}.edge.test"


@functools.cache
def store() -> TrustStore:
    path = Path(tempfile.mkdtemp(prefix="mxscan-edges-")) / "root.pem"
    path.write_bytes(b"".join(root(b).public_bytes(serialization.Encoding.PEM) for b in ROOTS))
    return load_trust_store("none", [str(path)])


Verdict = tuple[bool, PkixReason, str, str]


def verdict(verifier: Verifier, branch: str, kind: str, serial: int, at: dt.datetime) -> Verdict:
    chain = (leaf(branch, kind, serial), intermediate(branch))
    result = verifier.verify(chain, host_of(kind, serial), at)
    return result.valid, result.reason, result.detail, result.anchor


def test_a_chain_verified_in_its_last_second_is_not_served_once_expired() -> None:
    """Leaf L (notAfter T) under intermediate I: [L, I] at T + 0.5 s, then at T + 400 days."""
    end = NOW + LEAVES["short"][1] * DAY
    cold = verdict(Verifier(store()), "lasting", "short", 0, end + 400 * DAY)
    assert cold[1] is PkixReason.EXPIRED
    v = Verifier(store())
    assert verdict(v, "lasting", "short", 0, end + SECOND / 2)[0]  # the verifier's last second of L
    assert verdict(v, "lasting", "short", 0, end + 400 * DAY) == cold


def test_an_issuer_verified_in_its_roots_last_second_does_not_anchor_later_leaves() -> None:
    """Root expires at E; leaf A verified at E + 0.5 s; leaf B under the same intermediate
    at E + 30 days."""
    expiry = NOW + ROOTS["short"][1] * DAY
    cold = verdict(Verifier(store()), "short", "long", 2, expiry + 30 * DAY)
    assert not cold[0]
    v = Verifier(store())
    assert verdict(v, "short", "long", 1, expiry + SECOND / 2)[0]
    assert verdict(v, "short", "long", 2, expiry + 30 * DAY) == cold
    assert v.issuers.hits == 0


def test_the_verifier_time_is_the_utc_second() -> None:
    local = dt.timezone(dt.timedelta(hours=5, minutes=30))
    at = dt.datetime(2026, 6, 1, 5, 30, 7, 999_999, tzinfo=local)
    assert verifier_time(at) == dt.datetime(2026, 6, 1, 0, 0, 7, tzinfo=dt.UTC)
    assert verifier_time(at.replace(tzinfo=None)) == dt.datetime(2026, 6, 1, 5, 30, 7, tzinfo=dt.UTC)


Chain = tuple[str, str, int]  # branch (root), leaf kind, serial

#: Offsets that straddle an edge by a second or less, with the verifier's own boundaries.
NEAR = st.one_of(
    st.sampled_from([-1_000_000, -999_999, -500_000, -1, 0, 1, 500_000, 999_999, 1_000_000, 1_000_001]),
    st.integers(-2_000_000, 2_000_000),
).map(lambda us: dt.timedelta(microseconds=us))
CHAIN = st.tuples(st.sampled_from(list(ROOTS)), st.sampled_from(list(LEAVES)), st.integers(0, 2))


def edges_of(chain: Chain) -> list[dt.datetime]:
    """The notBefore and notAfter of the chain's leaf, intermediate and root."""
    branch, kind, _ = chain
    return [NOW + d * DAY for d in (*ROOTS[branch], *INTERMEDIATE, *LEAVES[kind])]


def moment(chain: Chain) -> st.SearchStrategy[dt.datetime]:
    """A time near a notBefore or notAfter of this chain, or days after it (over every chain,
    every edge of the hierarchy)."""
    return st.builds(
        lambda edge, near, days: edge + near + days * DAY,
        st.sampled_from(edges_of(chain)),
        NEAR,
        st.sampled_from([0, 0, 0, 1, 30, 400]),
    )


@given(st.data())
def test_warm_verdicts_equal_cold_ones_around_every_validity_edge(data: st.DataObject) -> None:
    """Whatever chains of the hierarchy verified before, at whatever times within two seconds
    of a notBefore or notAfter (or days after), a chain's verdict (the same chain as one
    verified before, or a sibling under the same intermediate) equals a cold one's."""
    warm_up = [
        (chain, data.draw(moment(chain))) for chain in data.draw(st.lists(CHAIN, min_size=1, max_size=4))
    ]
    asked = data.draw(st.sampled_from([chain for chain, _ in warm_up]) | CHAIN)
    at = data.draw(moment(asked))
    cold = verdict(Verifier(store()), *asked, at)
    v = Verifier(store())
    for chain, when in warm_up:
        verdict(v, *chain, when)
    assert verdict(v, *asked, at) == cold
