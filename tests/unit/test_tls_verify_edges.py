"""PKIX edges mutation testing of probes/tls/verify.py found unpinned: serverAuth in the
CN fallback's path checks, OpenSSL's bound on (name, constraint) pairs counted with every
name and every subtree, and the classifier's walk to a trust anchor (which certificate is a
step, cycles, long chains).  Certificates are built here, the way public CAs issue them;
where ``openssl verify`` has an opinion it is asked too."""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from cryptography.x509.verification import PolicyBuilder, VerificationError

from engine.peertext import TRUNCATION_MARK
from probes.tls.certs import MAX_CHAIN_CERTS
from probes.tls.truststore import TrustStore, load_trust_store
from probes.tls.verify import PkixReason, PkixResult, Verifier, classify, verify_chain
from testbed.pki import IssuedCert
from testbed.pkicheck import openssl_verify

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
ROOT = "Edge Test Root"
ROOT_SUBJECT = f"CN={ROOT}"
HOST = "mx.example.com"
SERVER, CLIENT, ANY = (
    ExtendedKeyUsageOID.SERVER_AUTH,
    ExtendedKeyUsageOID.CLIENT_AUTH,
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
)


@functools.cache
def _key(label: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(*cns: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in cns])


_CA_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
)  # fmt: skip
_serials = iter(range(10, 1_000_000))


def _cert(
    subject: x509.Name,
    key: str,
    issuer: str,
    *,
    ca: bool,
    eku: Sequence[ObjectIdentifier] | None = (SERVER,),
    sans: Sequence[x509.GeneralName] = (),
    constraints: tuple[list[str], list[str]] | None = None,
    days: tuple[int, int] = (-10, 80),
) -> x509.Certificate:
    """A certificate for ``subject`` with key ``key``, signed by the key of ``issuer`` (a CA
    whose subject CN is ``issuer`` and whose key label is the same)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(_name(issuer))
        .public_key(_key(key).public_key())
        .serial_number(next(_serials))
        .not_valid_before(NOW + days[0] * DAY)
        .not_valid_after(NOW + days[1] * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_key(issuer).public_key()), critical=False
        )
    )
    if ca:
        builder = builder.add_extension(_CA_USAGE, critical=True).add_extension(
            x509.SubjectKeyIdentifier.from_public_key(_key(key).public_key()), critical=False
        )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if constraints is not None:
        permitted, excluded = constraints
        builder = builder.add_extension(
            x509.NameConstraints(
                [x509.DNSName(n) for n in permitted] or None, [x509.DNSName(n) for n in excluded] or None
            ),
            critical=True,
        )
    return builder.sign(_key(issuer), hashes.SHA256())


def _ca(cn: str, issuer: str = ROOT, **kwargs: object) -> x509.Certificate:
    return _cert(_name(cn), cn, issuer, ca=True, eku=None, **kwargs)  # type: ignore[arg-type]


@functools.cache
def root() -> x509.Certificate:
    return _ca(ROOT, ROOT, days=(-100, 1000))


@functools.cache
def store() -> TrustStore:
    path = Path(tempfile.mkdtemp(prefix="mxscan-verify-edges-")) / "root.pem"
    path.write_bytes(root().public_bytes(serialization.Encoding.PEM))
    return load_trust_store("none", [str(path)])


def _der(certs: Sequence[x509.Certificate]) -> tuple[bytes, ...]:
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in certs)


def verify(certs: Sequence[x509.Certificate], host: str = HOST) -> PkixResult:
    return verify_chain(_der(certs), host, store=store(), at=NOW)


def by_openssl(certs: Sequence[x509.Certificate], host: str = HOST) -> bool:
    issued = IssuedCert((host,), "edge", "ec", certs[0], tuple(certs), b"")
    return openssl_verify(issued, root().public_bytes(serialization.Encoding.PEM), host, NOW)[0]


# -- the CN fallback's path checks demand serverAuth (CA/B BR §7.1.2) -------------------------


@pytest.mark.parametrize(
    ("leaf_eku", "ca_eku", "valid"),
    [
        ((SERVER,), None, True),
        (None, None, True),  # no EKU: unrestricted
        ((ANY,), None, True),
        ((CLIENT,), None, False),
        ((SERVER,), (SERVER, CLIENT), True),
        ((SERVER,), (ANY,), True),
        ((SERVER,), (CLIENT,), False),  # a CA restricted to clientAuth issues no server certificate
    ],
)
def test_the_cn_fallback_demands_server_auth_of_the_leaf_and_its_cas(
    leaf_eku: tuple[ObjectIdentifier, ...] | None, ca_eku: tuple[ObjectIdentifier, ...] | None, valid: bool
) -> None:
    issuer = "Edge CA eku " + ("none" if ca_eku is None else " ".join(o.dotted_string for o in ca_eku))
    ca = _cert(_name(issuer), issuer, ROOT, ca=True, eku=ca_eku)
    leaf = _cert(_name(HOST), "leaf", issuer, ca=False, eku=leaf_eku)  # no SAN: the CN decides
    result = verify([leaf, ca])
    assert (result.valid, result.reason) == (valid, PkixReason.OK if valid else PkixReason.OTHER), (
        result.detail
    )
    if valid:
        assert result.detail == "chain verifies to a trusted root; name matched by CN fallback (no dNSName)"
        assert result.anchor == ROOT_SUBJECT
    else:
        assert result.anchor == ""  # a refused chain names no anchor


# -- OpenSSL's bound: names x (permitted + excluded) subtrees at most 2**20 per CA -------------


def _constrained_ca(permitted: int, excluded: int) -> x509.Certificate:
    cn = f"Edge CA {permitted}+{excluded} subtrees"
    allowed = ["example.com", *(f"p{i}.test" for i in range(permitted - 1))]
    return _ca(cn, constraints=(allowed, [f"x{i}.test" for i in range(excluded)]))


def _many_names(ca: x509.Certificate, cns: int, ip: bool) -> x509.Certificate:
    issuer = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    sans = [x509.IPAddress(ipaddress.ip_address("192.0.2.7"))] if ip else []
    names = _name(HOST, *(f"unit{i}" for i in range(cns - 1)))
    return _cert(names, "leaf", str(issuer), ca=False, sans=sans)


@pytest.mark.parametrize(
    ("permitted", "excluded", "cns", "ip", "refused"),
    [
        (1025, 0, 1023, True, True),  # the SAN entry is a name too: 1,024 x 1,025 > 2**20
        (1025, 0, 1022, True, False),  # 1,023 x 1,025 <= 2**20
        (1024, 1, 1024, False, True),  # an excluded subtree counts like a permitted one
        (1024, 0, 1024, False, False),  # exactly 2**20 pairs: checked
    ],
)
def test_names_and_subtrees_past_openssls_bound_are_refused_not_checked(
    permitted: int, excluded: int, cns: int, ip: bool, refused: bool
) -> None:
    ca = _constrained_ca(permitted, excluded)
    chain = [_many_names(ca, cns, ip), ca]
    result = verify(chain)
    assert by_openssl(chain) is not refused
    assert result.valid is not refused, result.detail
    if refused:
        names, subtrees = cns + ip, permitted + excluded
        assert f"{names} names against {subtrees} name constraints: too many to check" in result.detail


# -- the classifier's walk from the leaf to a trust anchor -------------------------------------


def test_a_presented_certificate_that_did_not_issue_the_leaf_is_no_step_to_the_root() -> None:
    """A trusted intermediate presented beside a leaf it did not sign: still unknown-issuer."""
    trusted = _ca("Edge CA trusted")
    stranger = _ca("Edge CA stranger", "Edge Root nobody trusts", days=(-100, 1000))
    leaf = _cert(_name(HOST), "leaf", "Edge CA stranger", ca=False, sans=[x509.DNSName(HOST)])
    assert verify([leaf, trusted]).reason is PkixReason.UNKNOWN_ISSUER
    assert verify([leaf, stranger, trusted]).reason is PkixReason.UNKNOWN_ISSUER


def test_a_self_signed_twin_presented_first_does_not_hide_the_way_to_the_root() -> None:
    """The leaf's CA is presented twice, self-signed and cross-signed by the root (expired, so
    the chain is refused): the walk must not go round the twin but on to the root."""
    twin = _cert(_name("Edge CA twin"), "Edge CA twin", "Edge CA twin", ca=True, eku=None)
    expired_cross = _ca("Edge CA twin", days=(-100, -1))
    leaf = _cert(_name(HOST), "leaf", "Edge CA twin", ca=False, sans=[x509.DNSName(HOST)])
    result = verify([leaf, twin, expired_cross])
    assert (result.valid, result.reason) == (False, PkixReason.OTHER), result.detail
    assert "reaches a trusted root" in result.detail


def test_a_refused_chain_through_nine_intermediates_still_reaches_its_root() -> None:
    """Nine CAs between the leaf and the root, the topmost expired: the walk goes all the way
    up (the chain is complete, something else is wrong), not unknown-issuer."""
    cas = [_ca("Edge CA level 0", days=(-100, -1))]
    for level in range(1, 9):
        cas.append(_ca(f"Edge CA level {level}", f"Edge CA level {level - 1}"))
    leaf = _cert(_name(HOST), "leaf", "Edge CA level 8", ca=False, sans=[x509.DNSName(HOST)])
    chain = [leaf, *reversed(cas)]
    result = verify(chain)
    assert (result.valid, result.reason) == (False, PkixReason.OTHER), result.detail
    assert not by_openssl(chain)
    fresh = Verifier(store())
    assert fresh.verify(_der(chain), HOST, NOW) == result


# -- why a refused chain is refused: the leaf's own faults, at their boundaries ------------------


def _leaf(
    *, days: tuple[int, int] = (-10, 80), sans: Sequence[x509.GeneralName] = (), issuer: str = "Edge CA plain"
) -> x509.Certificate:
    return _cert(_name(HOST), "leaf", issuer, ca=False, sans=sans or [x509.DNSName(HOST)], days=days)


@pytest.mark.parametrize(
    ("days", "reason"),
    [
        ((0, 80), PkixReason.HOSTNAME_MISMATCH),  # valid from this very second (RFC 5280 §4.1.2.5)
        ((-10, 0), PkixReason.HOSTNAME_MISMATCH),  # valid until this very second
        ((1, 80), PkixReason.NOT_YET_VALID),
        ((-10, -1), PkixReason.EXPIRED),
    ],
)
def test_a_leaf_is_valid_from_its_not_before_to_its_not_after_both_included(
    days: tuple[int, int], reason: PkixReason
) -> None:
    """Asked for another name, a leaf inside its validity is a hostname mismatch; outside it,
    its validity is the reason (it comes first)."""
    result = verify([_leaf(days=days), _ca("Edge CA plain")], host="other.example.com")
    assert result.reason is reason, result.detail


def test_a_leaf_named_like_its_issuer_but_signed_by_another_key_is_not_self_signed() -> None:
    leaf = _cert(_name("Edge CA plain"), "leaf", "Edge CA plain", ca=False, sans=[x509.DNSName(HOST)])
    impostor = _cert(_name("Edge CA plain"), "impostor", "Edge CA plain", ca=False, sans=[x509.DNSName(HOST)])
    assert verify([leaf, _ca("Edge CA plain")]).valid  # the CA of that name signed it
    assert verify([impostor]).reason is PkixReason.UNKNOWN_ISSUER


def test_a_trusted_self_signed_leaf_that_expired_is_expired(tmp_path: Path) -> None:
    """A leaf that is itself a trust anchor is not "self-signed" (that reason means untrusted)."""
    leaf = _cert(_name(HOST), HOST, HOST, ca=False, sans=[x509.DNSName(HOST)], days=(-100, -1))
    (tmp_path / "pinned.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pinned = load_trust_store("none", [str(tmp_path / "pinned.pem")])
    result = verify_chain(_der([leaf]), HOST, store=pinned, at=NOW)
    assert result.reason is PkixReason.EXPIRED, result.detail
    assert verify([leaf]).reason is PkixReason.SELF_SIGNED  # the same leaf, not trusted


def test_an_address_host_in_the_leafs_ip_sans_is_refused_for_its_issuer_not_its_name() -> None:
    leaf = _leaf(sans=[x509.IPAddress(ipaddress.ip_address("192.0.2.7"))], issuer="Edge CA stranger")
    result = verify([leaf], host="192.0.2.7")
    assert result.reason is PkixReason.UNKNOWN_ISSUER, result.detail


def test_the_classifiers_detail_names_the_verifiers_message_only_when_there_is_one() -> None:
    leaf = _leaf(days=(-10, -1))
    without = classify([leaf], HOST, store=store(), at=NOW)
    assert without == (PkixReason.EXPIRED, f"leaf expired {leaf.not_valid_after_utc.isoformat()}")
    said = classify([leaf], HOST, store=store(), at=NOW, verifier_message="cert is expired")
    assert said == (PkixReason.EXPIRED, f"{without[1]}; verifier: cert is expired")


def test_a_hostname_mismatch_names_up_to_five_dns_names_and_five_addresses_of_the_leaf() -> None:
    dns = [x509.DNSName(f"mx{i}.example.com") for i in range(7)]
    ips = [x509.IPAddress(ipaddress.ip_address(f"192.0.2.{i}")) for i in range(6)]
    result = verify([_leaf(sans=[*dns, *ips]), _ca("Edge CA plain")], host="other.example.com")
    shown = [f"mx{i}.example.com" for i in range(5)] + [f"192.0.2.{i}" for i in range(5)]
    assert result.detail.startswith(f"other.example.com not in [{', '.join(shown)}]"), result.detail
    no_san = _cert(_name("mail.example.com"), "leaf", "Edge CA plain", ca=False)
    result = verify([no_san, _ca("Edge CA plain")], host="other.example.com")
    assert result.detail.startswith("other.example.com not in [no subjectAltName]"), result.detail


# -- what is read of a hostile chain: MAX_CHAIN_CERTS certificates, a 300-character detail -------


@pytest.mark.parametrize(
    ("presented", "leaf_days", "reason", "note"),
    [
        (MAX_CHAIN_CERTS, (-10, 80), PkixReason.UNKNOWN_ISSUER, ""),
        (MAX_CHAIN_CERTS + 1, (-10, 80), PkixReason.CHAIN_TOO_LONG, "only the first 16 of 17"),
        (MAX_CHAIN_CERTS + 1, (-10, -1), PkixReason.EXPIRED, "only the first 16 of 17"),  # the leaf's own
    ],
)
def test_a_chain_is_too_long_only_past_max_chain_certs_and_only_for_what_the_rest_could_change(
    presented: int, leaf_days: tuple[int, int], reason: PkixReason, note: str
) -> None:
    leaf = _leaf(days=leaf_days, issuer="Edge CA stranger")
    filler = [_ca(f"Edge CA filler {i}") for i in range(presented - 1)]
    result = verify([leaf, *filler])
    assert (result.reason, result.anchor) == (reason, ""), result.detail
    assert (
        result.detail.startswith(f"{note} certificates considered")
        if note
        else "considered" not in result.detail
    )


def test_a_refusals_detail_is_bounded_to_300_characters() -> None:
    host = "a" * 1000
    result = verify([_leaf()], host=host)
    assert result.detail == f"not a host name: {host!r}"[:299] + TRUNCATION_MARK


def test_a_leaf_presented_with_another_copy_of_its_issuer_is_judged_with_that_copy() -> None:
    """The remembered issuer stands in only for the same presented intermediates: the same CA
    (name and key) presented as an expired copy is not served by the valid copy seen before."""
    valid_copy, expired_copy = _ca("Edge CA copy"), _ca("Edge CA copy", days=(-100, -1))
    first = _cert(_name(HOST), "leaf", "Edge CA copy", ca=False, sans=[x509.DNSName(HOST)])
    second = _cert(_name(HOST), "leaf 2", "Edge CA copy", ca=False, sans=[x509.DNSName(HOST)])
    cold = verify([second, expired_copy])
    assert (cold.valid, cold.reason) == (False, PkixReason.OTHER), cold.detail
    warm = Verifier(store())
    assert warm.verify(_der([first, valid_copy]), HOST, NOW).valid
    assert warm.verify(_der([second, expired_copy]), HOST, NOW) == cold
    assert warm.verify(_der([second, valid_copy]), HOST, NOW).valid and warm.issuers.hits == 1


def test_issuers_presented_together_are_remembered_each_under_its_own_name() -> None:
    """Two CAs presented in every chain, leaves of each: after one leaf of each verified, the
    next leaf of each is served by its own issuer (a stand-in asked for a leaf it did not
    issue would fail and cost a full verification on top)."""
    rest = [_ca("Edge CA one"), _ca("Edge CA two")]
    verifier = Verifier(store())
    for serial in range(2):
        for issuer in ("Edge CA one", "Edge CA two"):
            leaf = _cert(_name(HOST), f"leaf {serial}", issuer, ca=False, sans=[x509.DNSName(HOST)])
            assert verifier.verify(_der([leaf, *rest]), HOST, NOW).valid
    assert (verifier.issuers.hits, verifier.issuers.misses) == (2, 2)
    assert verifier.full_verifications == 2  # one leaf of each issuer


# -- the verdict's words: every detail starts with what happened, and only a valid chain has an anchor


@pytest.mark.parametrize(
    ("chain", "host", "detail"),
    [
        ((), HOST, "no certificate"),
        ((b"\x30\x03\x02\x01\x01",), HOST, "unparsable certificate: "),
        (None, "a..b", "not a host name: 'a..b'"),
        (None, "*.example.com", "host name the verifier refuses: '*.example.com' ("),
        (None, "a_b.example.com", "host name the verifier refuses: 'a_b.example.com' ("),
    ],
)
def test_input_that_cannot_be_verified_says_why_and_names_no_anchor(
    chain: tuple[bytes, ...] | None, host: str, detail: str
) -> None:
    presented = _der([_leaf(), _ca("Edge CA plain")]) if chain is None else chain
    result = verify_chain(presented, host, store=store(), at=NOW)
    assert (result.valid, result.reason, result.anchor) == (False, PkixReason.OTHER, "")
    assert result.detail == detail if detail == "no certificate" else result.detail.startswith(detail)


def test_a_valid_chain_says_so_and_names_its_root() -> None:
    result = verify([_leaf(), _ca("Edge CA plain")])
    assert result == PkixResult(True, PkixReason.OK, "chain verifies to a trusted root", ROOT_SUBJECT)


def test_a_refused_chains_detail_carries_the_verifiers_own_message() -> None:
    leaf = _leaf(issuer="Edge CA stranger")
    with pytest.raises(VerificationError) as refused:
        PolicyBuilder().store(store().store).time(NOW).build_server_verifier(x509.DNSName(HOST)).verify(
            leaf, []
        )
    result = verify([leaf])
    assert result.reason is PkixReason.UNKNOWN_ISSUER
    assert f"; verifier: {refused.value}"[:120] in result.detail, result.detail
