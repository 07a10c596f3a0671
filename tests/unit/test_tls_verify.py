"""PKIX verdicts and reasons; the verdict agrees with OpenSSL on every case."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import records
from probes.tls.truststore import TrustStore, TrustStoreError, load_trust_store
from probes.tls.verify import (
    IntermediatePool,
    PkixReason,
    PkixResult,
    Verifier,
    match_hostname,
    normalise_host,
    verify_chain,
)
from testbed.pki import IssuedCert, TestPki
from testbed.pkicheck import openssl_verify, ssl_handshake

HOST = "mx1.verify.example.test"
DAY = dt.timedelta(days=1)
R = PkixReason


@functools.cache
def pki() -> TestPki:
    return TestPki(label="verify")


@functools.cache
def store_dir() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="mxscan-verify-"))


@functools.cache
def store() -> TrustStore:
    path = store_dir() / "ca.pem"
    path.write_bytes(pki().root_pem())
    return load_trust_store("none", [str(path)])


@functools.cache
def pool() -> IntermediatePool:
    p = pki()
    return IntermediatePool.from_der([p.intermediate.der, p.untrusted_intermediate.der])


# name, certificate names, kind, host asked, days after pki.now, pool?, expected reason
CASES = [
    ("valid", [HOST], "valid", HOST, 0, True, R.OK),
    ("valid-host-case-and-dot", [HOST], "valid", "MX1.Verify.Example.Test.", 0, False, R.OK),
    ("expired", [HOST], "expired", HOST, 0, True, R.EXPIRED),
    ("valid-later-expired", [HOST], "valid", HOST, 100, False, R.EXPIRED),
    ("not-yet-valid", [HOST], "not-yet-valid", HOST, 0, True, R.NOT_YET_VALID),
    ("valid-earlier-not-yet-valid", [HOST], "valid", HOST, -40, False, R.NOT_YET_VALID),
    ("wrong-name", [HOST], "wrong-name", HOST, 0, True, R.HOSTNAME_MISMATCH),
    ("self-signed", [HOST], "self-signed", HOST, 0, True, R.SELF_SIGNED),
    ("untrusted-ca", [HOST], "untrusted-ca", HOST, 0, True, R.UNKNOWN_ISSUER),
    ("missing-intermediate-known", [HOST], "missing-intermediate", HOST, 0, True, R.INCOMPLETE_CHAIN),
    ("missing-intermediate-unknown", [HOST], "missing-intermediate", HOST, 0, False, R.UNKNOWN_ISSUER),
    ("self-signed-and-expired-says-self-signed", [HOST], "self-signed", HOST, 100, True, R.SELF_SIGNED),
    ("expired-and-wrong-name-says-expired", [HOST], "wrong-name", HOST, 100, True, R.EXPIRED),
    ("wrong-name-and-untrusted-says-mismatch", ["a.verify.example.test"], "untrusted-ca", HOST, 0, True,
     R.HOSTNAME_MISMATCH),
    ("wildcard-one-label", ["*.verify.example.test"], "valid", HOST, 0, False, R.OK),
    ("wildcard-not-two-labels", ["*.example.test"], "valid", HOST, 0, False, R.HOSTNAME_MISMATCH),
    ("wildcard-not-the-apex", ["*.verify.example.test"], "valid", "verify.example.test", 0, False,
     R.HOSTNAME_MISMATCH),
    ("second-san", ["other.example.test", HOST], "valid", HOST, 0, False, R.OK),
    ("idn-as-a-label", ["xn--bcher-kva.example.test"], "valid", "bücher.example.test", 0, False, R.OK),
    ("cn-only-fallback", [HOST], "cn-only", HOST, 0, False, R.OK),
    ("cn-only-other-host", ["other.example.test"], "cn-only", HOST, 0, False, R.HOSTNAME_MISMATCH),
    ("rsa-valid", [HOST, "rsa"], "valid", HOST, 0, False, R.OK),
]  # fmt: skip


def _issue(names: list[str], kind: str) -> IssuedCert:
    if names[-1] == "rsa":
        return pki().issue(names[:-1], kind=kind, key="rsa")
    return pki().issue(names, kind=kind)


@pytest.mark.parametrize(
    ("name", "names", "kind", "host", "days", "use_pool", "reason"), CASES, ids=[c[0] for c in CASES]
)
def test_reason_and_openssl_agreement(
    name: str, names: list[str], kind: str, host: str, days: int, use_pool: bool, reason: PkixReason
) -> None:
    p = pki()
    issued = _issue(names, kind)
    at = p.now + days * DAY
    result = verify_chain(
        issued.chain_der, host, store=store(), at=at, intermediates=pool() if use_pool else ()
    )
    assert result.reason is reason, result.detail
    assert result.valid is (reason is PkixReason.OK)
    ascii_host = normalise_host(host)
    assert ascii_host is not None
    by_openssl, message = openssl_verify(issued, p.root_pem(), ascii_host, at)
    assert by_openssl is result.valid, message
    if days == 0:  # the ssl module cannot move the clock; it verifies "now"
        # The scanner hands the normalised name to OpenSSL too (no trailing dot).
        by_handshake, message = ssl_handshake(issued, p.root_pem(), ascii_host)
        assert by_handshake is result.valid, message
    if result.valid:
        assert result.anchor == p.root.cert.subject.rfc4514_string()


def test_missing_intermediate_pool_may_be_given_as_der() -> None:
    p = pki()
    chain = p.issue([HOST], kind="missing-intermediate").chain_der
    result = verify_chain(chain, HOST, store=store(), at=p.now, intermediates=[p.intermediate.der, b"junk"])
    assert result.reason is PkixReason.INCOMPLETE_CHAIN


def test_chain_that_includes_the_root_is_valid() -> None:
    p = pki()
    chain = (*p.issue([HOST]).chain_der, p.root.der)
    assert verify_chain(chain, HOST, store=store(), at=p.now).valid


def test_extra_unrelated_certificates_do_not_matter() -> None:
    p = pki()
    chain = (*p.issue([HOST]).chain_der, p.untrusted_root.der, p.untrusted_intermediate.der)
    assert verify_chain(chain, HOST, store=store(), at=p.now).valid


def test_self_signed_leaf_that_is_a_trust_anchor(tmp_path: Path) -> None:
    p = pki()
    issued = p.issue([HOST], kind="self-signed")
    (tmp_path / "leaf.pem").write_bytes(issued.leaf_pem)
    own = load_trust_store("none", [str(tmp_path / "leaf.pem")])
    result = verify_chain(issued.chain_der, HOST, store=own, at=p.now)
    by_openssl, message = openssl_verify(issued, issued.leaf_pem, HOST, p.now)
    assert result.valid and by_openssl, (result, message)
    by_handshake, message = ssl_handshake(issued, issued.leaf_pem, HOST)
    assert by_handshake, message


def test_chain_complete_but_refused_is_other() -> None:
    p = pki()
    # The leaf's issuer is present and anchored, but the chain is checked for a
    # time when the CAs themselves had expired: not the leaf's fault.
    leaf = p.issue([HOST]).chain_der
    far = p.now + 4000 * DAY
    result = verify_chain(leaf, HOST, store=store(), at=far)
    assert result.reason is PkixReason.EXPIRED  # the leaf check comes first
    stale = TestPki(now=p.now - 3000 * DAY, label="stale")
    issued = stale.issue([HOST])
    path = store_dir() / "stale-ca.pem"
    path.write_bytes(stale.root_pem())
    result = verify_chain(
        issued.chain_der, HOST, store=load_trust_store("none", [str(path)]), at=stale.now + 1000 * DAY
    )
    assert result.reason is PkixReason.EXPIRED


@pytest.mark.parametrize(
    ("chain", "host", "detail"),
    [
        ((), HOST, "no certificate"),
        ((b"\x30\x03\x02\x01\x01",), HOST, "unparsable certificate"),
        ((b"x" * 70_000,), HOST, "unparsable certificate"),
        (None, "", "not a host name"),
        (None, "a..b", "not a host name"),
        (None, "*.verify.example.test", "host name the verifier refuses"),
    ],
    ids=["empty-chain", "garbage-der", "oversized-der", "empty-host", "empty-label", "wildcard-mx-host"],
)
def test_unusable_inputs_are_other(chain: tuple[bytes, ...] | None, host: str, detail: str) -> None:
    p = pki()
    chain = p.issue([HOST]).chain_der if chain is None else chain
    result = verify_chain(chain, host, store=store(), at=p.now)
    assert (result.valid, result.reason) == (False, PkixReason.OTHER)
    assert detail in result.detail


def test_a_chain_longer_than_the_cap_that_does_not_verify_is_chain_too_long() -> None:
    """41 certificates: the first 16 lead nowhere, so the verdict names the cut, not the issuer."""
    p = pki()
    leaf = p.issue([HOST], kind="untrusted-ca").leaf_der
    result = verify_chain([leaf] + [p.untrusted_root.der] * 40, HOST, store=store(), at=p.now)
    assert (result.valid, result.reason) == (False, PkixReason.CHAIN_TOO_LONG)
    assert "only the first 16 of 41" in result.detail
    assert len(result.detail) <= 400


def test_the_intermediate_past_the_cap_is_never_read() -> None:
    """The issuer the leaf needs is the 17th certificate: chain-too-long, while the same
    chain with it 16th verifies."""
    p = pki()
    leaf, intermediate = p.issue([HOST]).chain_der
    filler = [p.untrusted_root.der] * 14
    assert verify_chain([leaf, *filler, intermediate], HOST, store=store(), at=p.now).valid
    cut = verify_chain([leaf, *filler, p.untrusted_root.der, intermediate], HOST, store=store(), at=p.now)
    assert cut.reason is PkixReason.CHAIN_TOO_LONG


def test_a_long_chain_whose_first_certificates_verify_is_valid() -> None:
    p = pki()
    chain = [*p.issue([HOST]).chain_der, *[p.untrusted_root.der] * 30]
    assert verify_chain(chain, HOST, store=store(), at=p.now).valid


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("expired", R.EXPIRED), ("self-signed", R.SELF_SIGNED), ("wrong-name", R.HOSTNAME_MISMATCH)],
)
def test_a_long_chain_keeps_the_leafs_own_fault(kind: str, reason: PkixReason) -> None:
    """What is wrong with the leaf itself holds whatever the unread certificates are."""
    p = pki()
    chain = [p.issue([HOST], kind=kind).leaf_der, *[p.untrusted_root.der] * 30]
    result = verify_chain(chain, HOST, store=store(), at=p.now)
    assert result.reason is reason
    assert "only the first 16 of 31" in result.detail


def test_naive_time_is_utc() -> None:
    p = pki()
    naive = p.now.replace(tzinfo=None)
    assert verify_chain(p.issue([HOST]).chain_der, HOST, store=store(), at=naive).valid


@pytest.mark.parametrize(
    ("host", "sans", "ips", "matches"),
    [
        ("mx.example.com", ["mx.example.com"], [], True),
        ("MX.EXAMPLE.COM.", ["mx.example.com"], [], True),
        ("mx.example.com", ["MX.Example.COM."], [], True),
        ("mx.example.com", ["*.example.com"], [], True),
        ("a.mx.example.com", ["*.example.com"], [], False),
        ("example.com", ["*.example.com"], [], False),
        ("mx.com", ["*.com"], [], False),
        ("mx.example.com", ["m*.example.com"], [], False),
        ("mx.example.com", ["*.*.com"], [], False),
        ("mx.example.com", ["mx.*.com"], [], False),
        ("bücher.example", ["xn--bcher-kva.example"], [], True),
        ("xn--bcher-kva.example", ["bücher.example"], [], False),
        ("mx.example.com", [], [], False),
        ("192.0.2.1", ["192.0.2.1"], [], False),
        ("192.0.2.1", [], ["192.0.2.1"], True),
        ("2001:db8::1", [], ["2001:db8:0::1"], True),
        ("mx.example.com", [], ["192.0.2.1"], False),
    ],
    ids=lambda v: str(v),
)
def test_match_hostname_rfc6125(host: str, sans: list[str], ips: list[str], matches: bool) -> None:
    assert match_hostname(host, sans, ips) is matches


@given(st.lists(st.binary(max_size=300), max_size=4), st.text(max_size=40))
def test_any_input_gives_a_result(chain: list[bytes], host: str) -> None:
    result = verify_chain(chain, host, store=store(), at=pki().now)
    assert isinstance(result, PkixResult)
    assert not result.valid and len(result.detail) <= 400


@given(st.integers(min_value=0, max_value=3), st.data())
def test_mangled_real_certificates_give_a_result(index: int, data: st.DataObject) -> None:
    der = bytearray(pki().issue([HOST]).leaf_der)
    pos = data.draw(st.integers(min_value=0, max_value=len(der) - 1))
    der[pos] ^= data.draw(st.integers(min_value=1, max_value=255))
    chain = [bytes(der), pki().intermediate.der][: index + 1]
    assert isinstance(verify_chain(chain, HOST, store=store(), at=pki().now), PkixResult)


def test_result_record_round_trips() -> None:
    import orjson

    result = verify_chain(pki().issue([HOST]).chain_der, HOST, store=store(), at=pki().now)
    assert records.decode(PkixResult, orjson.loads(records.encode(result))) == result
    records.json_schema(PkixResult)


# -- trust stores ------------------------------------------------------------------------------------------


def test_mozilla_and_system_stores_load() -> None:
    mozilla = load_trust_store()
    assert mozilla.kind == "mozilla" and len(mozilla.roots) > 100
    system = load_trust_store("system")
    assert len(system.roots) > 100
    both = load_trust_store("mozilla", [str(store_dir() / "ca.pem")])
    assert len(both.roots) == len(mozilla.roots) + 1
    assert both.contains(pki().root.der) and not mozilla.contains(pki().root.der)


def test_test_world_chain_is_unknown_to_mozilla() -> None:
    result = verify_chain(pki().issue([HOST]).chain_der, HOST, store=load_trust_store(), at=pki().now)
    assert result.reason is PkixReason.UNKNOWN_ISSUER


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"", "no PEM certificate"),
        (b"hello", "no PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "malformed"),
    ],
    ids=["missing-file", "empty-file", "not-pem", "bad-certificate"],
)
def test_bad_ca_files_are_clear_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TrustStoreError, match=message):
        load_trust_store("none", [str(path)])


@pytest.mark.parametrize(
    ("kind", "files"), [("nss", ()), ("none", ())], ids=["unknown-kind", "none-without-files"]
)
def test_bad_store_choices_are_clear_errors(kind: str, files: tuple[str, ...]) -> None:
    with pytest.raises(TrustStoreError):
        load_trust_store(kind, files)


# ---------------------------------------------------------------- the verified-path cache

#: SAN sets a provider might present on many hosts, and names hosts might ask for.
SHARED_SANS = [
    ["*.mail.verify.example.test"],
    ["mx.verify.example.test", "*.mx.verify.example.test", "alt1.verify.example.test"],
    ["*.verify.example.test", "MX2.Verify.Example.Test"],
    ["xn--bcher-kva.verify.example.test", "*.idn.verify.example.test"],
]
ASKED = st.sampled_from(
    ["a", "b", "mx", "alt1", "mx2", "xn--bcher-kva", "xn--x", "a.b", "*", "a-b", "UPPER"]
).flatmap(
    lambda label: st.sampled_from(
        ["mail.verify.example.test", "mx.verify.example.test", "verify.example.test",
         "idn.verify.example.test", "example.test"]
    ).map(lambda tail: f"{label}.{tail}")
)  # fmt: skip


@functools.cache
def _shared(index: int) -> IssuedCert:
    return pki().issue(SHARED_SANS[index], kind="valid")


@given(st.integers(0, len(SHARED_SANS) - 1), st.lists(ASKED, min_size=1, max_size=6))
def test_a_cached_path_gives_the_verdict_the_verifier_gives(index: int, names: list[str]) -> None:
    """Whatever was verified before (warming the cache for this chain), each name's verdict
    equals a cold verification's."""
    issued, at = _shared(index), pki().now
    cold = [verify_chain(issued.chain_der, n, store=store(), at=at) for n in names]
    verifier = Verifier(store())
    warm_up = SHARED_SANS[index][0].replace("*", "warm").lower()
    assert verifier.verify(issued.chain_der, warm_up, at).valid
    warm = [verifier.verify(issued.chain_der, n, at) for n in names]
    assert [(r.valid, r.reason, r.anchor) for r in warm] == [(r.valid, r.reason, r.anchor) for r in cold]


def test_hosts_sharing_a_chain_verify_its_path_once() -> None:
    issued, at = _shared(0), pki().now
    verifier = Verifier(store())
    for customer in ("a", "b", "c"):
        assert verifier.verify(issued.chain_der, f"{customer}.mail.verify.example.test", at).valid
    assert (verifier.paths.hits, verifier.paths.misses) == (2, 1)


def test_a_cached_path_never_outlives_its_certificates() -> None:
    issued, p = _shared(0), pki()
    verifier = Verifier(store())
    assert verifier.verify(issued.chain_der, "a.mail.verify.example.test", p.now).valid
    later = verifier.verify(issued.chain_der, "b.mail.verify.example.test", p.now + 100 * DAY)
    assert later.reason is R.EXPIRED


def test_a_cached_path_belongs_to_its_trust_store(tmp_path: Path) -> None:
    """Verifiers over different trust stores may share caches: what one store verified is
    never served to the other."""
    issued, p = _shared(0), pki()
    verifier = Verifier(store())
    assert verifier.verify(issued.chain_der, "a.mail.verify.example.test", p.now).valid
    other_root = TestPki(label="other-root")
    (tmp_path / "other.pem").write_bytes(other_root.root_pem())
    other = load_trust_store("none", [str(tmp_path / "other.pem")])
    sharing = Verifier(other, paths=verifier.paths, issuers=verifier.issuers)
    refused = sharing.verify(issued.chain_der, "b.mail.verify.example.test", p.now)
    assert refused.reason is R.UNKNOWN_ISSUER


@given(
    st.one_of(st.ip_addresses().map(str), st.text(alphabet="0123456789abcdef.:%x-", max_size=40), st.text())
)
def test_anything_that_parses_as_an_address_is_seen_as_a_literal(text: str) -> None:
    """The cheap pre-check never hides an address from the parser."""
    import ipaddress

    from probes.tls.names import is_address_literal

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return
    assert is_address_literal(text)
