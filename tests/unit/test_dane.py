"""TLSA parsing and DANE assessment (RFC 6698, RFC 7672) against the test PKI."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from engine import records
from probes.dane.tlsa import (
    DaneResult,
    DaneStatus,
    TlsaParseError,
    TlsaRecord,
    assess_dane,
    match_chain,
    parse_tlsa,
)
from probes.dns.records import Answer, Dnssec, MxHost, Outcome
from probes.transport import dane_published
from testbed.pki import TestPki

HOST = "mx1.dane.example.test"
S, INS, B, X = Dnssec.SECURE, Dnssec.INSECURE, Dnssec.BOGUS, Dnssec.INDETERMINATE


@functools.cache
def pki() -> TestPki:
    return TestPki(label="dane")


def spki(der_cert: bytes) -> bytes:
    from cryptography import x509

    key = x509.load_der_x509_certificate(der_cert).public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def tlsa(usage: int, selector: int, mtype: int, der_cert: bytes) -> TlsaRecord:
    data = der_cert if selector == 0 else spki(der_cert)
    if mtype == 1:
        data = hashlib.sha256(data).digest()
    elif mtype == 2:
        data = hashlib.sha512(data).digest()
    return TlsaRecord(usage, selector, mtype, data.hex())


ZERO32 = TlsaRecord(3, 1, 1, "00" * 32)

# name, served kind, records as (usage, selector, mtype, which cert) or ready TlsaRecord, expected status
CASES = [
    ("ee-spki-sha256", "valid", [(3, 1, 1, "leaf")], DaneStatus.VALID),
    ("ee-cert-sha256", "valid", [(3, 0, 1, "leaf")], DaneStatus.VALID),
    ("ee-spki-sha512", "valid", [(3, 1, 2, "leaf")], DaneStatus.VALID),
    ("ee-cert-exact", "valid", [(3, 0, 0, "leaf")], DaneStatus.VALID),
    ("ee-spki-exact", "valid", [(3, 1, 0, "leaf")], DaneStatus.VALID),
    ("ee-ignores-expiry", "expired", [(3, 1, 1, "leaf")], DaneStatus.VALID),
    ("ee-ignores-name", "wrong-name", [(3, 1, 1, "leaf")], DaneStatus.VALID),
    ("ee-ignores-self-signed", "self-signed", [(3, 0, 1, "leaf")], DaneStatus.VALID),
    ("ee-other-key", "valid", [ZERO32], DaneStatus.MISMATCH),
    ("ee-record-for-the-ca", "valid", [(3, 1, 1, "ca")], DaneStatus.MISMATCH),
    ("ta-cert-sha256", "valid", [(2, 0, 1, "ca")], DaneStatus.VALID),
    ("ta-spki-sha256", "valid", [(2, 1, 1, "ca")], DaneStatus.VALID),
    ("ta-ignores-pkix-trust", "untrusted-ca", [(2, 0, 1, "ca")], DaneStatus.VALID),
    ("ta-checks-name", "wrong-name", [(2, 0, 1, "ca")], DaneStatus.MISMATCH),
    ("ta-checks-expiry", "expired", [(2, 0, 1, "ca")], DaneStatus.MISMATCH),
    ("ta-checks-not-yet-valid", "not-yet-valid", [(2, 0, 1, "ca")], DaneStatus.MISMATCH),
    ("ta-cn-only-uses-cn", "cn-only", [(2, 0, 1, "ca")], DaneStatus.VALID),
    ("ta-must-not-be-the-leaf", "valid", [(2, 0, 1, "leaf")], DaneStatus.MISMATCH),
    ("ta-not-presented", "missing-intermediate", [(2, 0, 1, "intermediate")], DaneStatus.MISMATCH),
    ("ta-root-not-presented", "valid", [(2, 0, 1, "root")], DaneStatus.MISMATCH),
    ("ta-presented-root", "valid+root", [(2, 0, 1, "root")], DaneStatus.VALID),
    ("ta-other-ca", "valid+untrusted", [(2, 0, 1, "untrusted")], DaneStatus.MISMATCH),
    # Issue 13 item 7: a full anchor in the record need not be sent (RFC 7671 §5.2.2).
    ("ta-full-cert-root-from-dns", "valid", [(2, 0, 0, "root")], DaneStatus.VALID),
    ("ta-full-spki-root-from-dns", "valid", [(2, 1, 0, "root")], DaneStatus.VALID),
    (
        "ta-full-cert-intermediate-from-dns",
        "missing-intermediate",
        [(2, 0, 0, "intermediate")],
        DaneStatus.VALID,
    ),
    (
        "ta-full-spki-intermediate-from-dns",
        "missing-intermediate",
        [(2, 1, 0, "intermediate")],
        DaneStatus.VALID,
    ),
    ("ta-full-cert-from-dns-checks-name", "wrong-name", [(2, 0, 0, "root")], DaneStatus.MISMATCH),
    ("ta-full-spki-from-dns-checks-expiry", "expired", [(2, 1, 0, "root")], DaneStatus.MISMATCH),
    ("ta-full-cert-of-another-root", "valid", [(2, 0, 0, "untrusted-root")], DaneStatus.MISMATCH),
    ("ta-full-spki-of-another-root", "valid", [(2, 1, 0, "untrusted-root")], DaneStatus.MISMATCH),
    ("ta-full-cert-leaf-not-an-anchor", "valid", [(2, 0, 0, "leaf")], DaneStatus.MISMATCH),
    # A cross-signed copy of the anchor sent instead of the anchor itself.
    ("ta-cross-signed-copy-full-cert", "valid+cross", [(2, 0, 0, "root")], DaneStatus.VALID),
    ("ta-cross-signed-copy-spki-digest", "valid+cross", [(2, 1, 1, "root")], DaneStatus.VALID),
    ("ta-cross-signed-copy-cert-digest", "valid+cross", [(2, 0, 1, "root")], DaneStatus.MISMATCH),
    ("ta-full-data-not-a-cert", "valid", [TlsaRecord(2, 0, 0, "30" * 40)], DaneStatus.UNUSABLE),
    ("ee-full-data-not-a-key", "valid", [TlsaRecord(3, 1, 0, "30" * 40)], DaneStatus.UNUSABLE),
    ("pkix-ta-unusable", "valid", [(0, 0, 1, "ca")], DaneStatus.UNUSABLE),
    ("pkix-ee-unusable", "valid", [(1, 1, 1, "leaf")], DaneStatus.UNUSABLE),
    ("unknown-usage", "valid", [TlsaRecord(4, 1, 1, "00" * 32)], DaneStatus.UNUSABLE),
    ("unknown-selector", "valid", [TlsaRecord(3, 2, 1, "00" * 32)], DaneStatus.UNUSABLE),
    ("unknown-mtype", "valid", [TlsaRecord(3, 1, 3, "00" * 32)], DaneStatus.UNUSABLE),
    ("short-digest", "valid", [TlsaRecord(3, 1, 1, "00" * 20)], DaneStatus.UNUSABLE),
    ("unusable-plus-matching", "valid", [(1, 1, 1, "leaf"), (3, 1, 1, "leaf")], DaneStatus.VALID),
    ("unusable-plus-mismatch", "valid", [(0, 0, 1, "ca"), ZERO32], DaneStatus.MISMATCH),
    ("rollover-old-and-new", "valid", [ZERO32, (3, 1, 1, "leaf")], DaneStatus.VALID),
]


def _chain(served: str) -> tuple[bytes, ...]:
    p = pki()
    kind, _, extra = served.partition("+")
    chain = p.issue([HOST], kind=kind).chain_der
    if extra == "root":
        chain = (*chain, p.root.der)
    elif extra == "untrusted":
        chain = (*chain, p.untrusted_intermediate.der)
    elif extra == "cross":
        chain = (*chain, cross_signed_root(), p.untrusted_root.der)
    return chain


@functools.cache
def cross_signed_root() -> bytes:
    """The test root's subject and key, issued by the untrusted root: a cross-signed copy."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    p = pki()
    root = p.root.cert
    copy = (
        x509.CertificateBuilder()
        .subject_name(root.subject)
        .issuer_name(p.untrusted_root.cert.subject)
        .public_key(root.public_key())
        .serial_number(4242)
        .not_valid_before(root.not_valid_before_utc)
        .not_valid_after(root.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(p.untrusted_root.key, hashes.SHA256())
    )
    return copy.public_bytes(serialization.Encoding.DER)


def _records(served: str, specs: list[tuple[int, int, int, str] | TlsaRecord]) -> list[TlsaRecord]:
    p = pki()
    chain = _chain(served)
    which = {
        "leaf": chain[0],
        "ca": chain[1] if len(chain) > 1 else b"",
        "intermediate": p.intermediate.der,
        "root": p.root.der,
        "untrusted": p.untrusted_intermediate.der,
        "untrusted-root": p.untrusted_root.der,
    }
    return [s if isinstance(s, TlsaRecord) else tlsa(*s[:3], which[s[3]]) for s in specs]


@pytest.mark.parametrize(("name", "served", "specs", "status"), CASES, ids=[c[0] for c in CASES])
def test_assess_dane_matching(
    name: str, served: str, specs: list[tuple[int, int, int, str] | TlsaRecord], status: DaneStatus
) -> None:
    recs = _records(served, specs)
    result = assess_dane(recs, tlsa_dnssec=S, mx_dnssec=S, chain=_chain(served), host=HOST, at=pki().now)
    assert result.status is status, result.detail
    if status is DaneStatus.VALID:
        assert result.matched is not None and parse_tlsa(result.matched) in recs
    else:
        assert result.matched is None
    assert len(result.detail) <= 300


# name, tlsa dnssec, mx dnssec, records, chain given, why no TLS (None: not probed), expected
NO_STARTTLS = "STARTTLS not offered"
GATES = [
    ("bogus-tlsa", B, S, "ee", True, None, DaneStatus.BOGUS),
    ("bogus-mx", S, B, "ee", True, None, DaneStatus.BOGUS),
    ("bogus-tlsa-even-without-records", B, S, "", True, None, DaneStatus.BOGUS),
    ("tlsa-lookup-failed", X, S, "", True, None, DaneStatus.UNDETERMINED),
    ("tlsa-resolver-not-validating", Dnssec.UNKNOWN, S, "", True, None, DaneStatus.UNDETERMINED),
    ("no-records-secure", S, S, "", True, None, DaneStatus.NONE),
    ("no-records-insecure", INS, INS, "", True, None, DaneStatus.NONE),
    ("records-insecure", INS, S, "ee", True, None, DaneStatus.INSECURE),
    ("mx-insecure", S, INS, "ee", True, None, DaneStatus.INSECURE),
    ("host-not-probed", S, S, "ee", False, None, DaneStatus.UNDETERMINED),
    ("all-secure", S, S, "ee", True, None, DaneStatus.VALID),
    # Issue 13 item 6: DANE applies, the host gives no TLS: a DANE sender would not deliver.
    ("no-tls-when-starttls-not-offered", S, S, "ee", False, NO_STARTTLS, DaneStatus.NO_TLS),
    ("no-tls-when-unreachable", S, S, "ee", False, "connection-refused at connect", DaneStatus.NO_TLS),
    ("no-tls-even-if-no-record-is-usable", S, S, "pkix", False, NO_STARTTLS, DaneStatus.NO_TLS),
    ("no-tls-needs-secure-mx", S, INS, "ee", False, NO_STARTTLS, DaneStatus.INSECURE),
    ("no-tls-needs-records", S, S, "", False, NO_STARTTLS, DaneStatus.NONE),
    ("no-tls-ignored-with-a-chain", S, S, "ee", True, NO_STARTTLS, DaneStatus.VALID),
]


@pytest.mark.parametrize(
    ("name", "tlsa_s", "mx_s", "recs", "chain", "no_tls", "status"), GATES, ids=[g[0] for g in GATES]
)
def test_assess_dane_gates(
    name: str, tlsa_s: Dnssec, mx_s: Dnssec, recs: str, chain: bool, no_tls: str | None, status: DaneStatus
) -> None:
    served = _chain("valid")
    specs: dict[str, list[tuple[int, int, int, str] | TlsaRecord]] = {
        "": [],
        "ee": [(3, 1, 1, "leaf")],
        "pkix": [(1, 1, 1, "leaf")],
    }
    result = assess_dane(
        _records("valid", specs[recs]),
        tlsa_dnssec=tlsa_s,
        mx_dnssec=mx_s,
        chain=served if chain else None,
        host=HOST,
        at=pki().now,
        no_tls=no_tls,
    )
    assert result.status is status, result.detail
    if status is DaneStatus.NO_TLS:
        assert no_tls is not None and no_tls in result.detail and "would not deliver" in result.detail


def test_empty_chain_is_undetermined() -> None:
    recs = _records("valid", [(3, 1, 1, "leaf")])
    result = assess_dane(recs, tlsa_dnssec=S, mx_dnssec=S, chain=(), host=HOST, at=pki().now)
    assert result.status is DaneStatus.UNDETERMINED


def test_nearest_anchor_is_reported_whatever_the_record_order() -> None:
    """OpenSSL's choice (SSL_get0_dane_authority): DANE-EE, then the anchor nearest the leaf."""
    chain = _chain("valid+root")
    root, issuer, leaf = _records("valid+root", [(2, 0, 1, "root"), (2, 0, 1, "ca"), (3, 1, 1, "leaf")])
    ta = match_chain([root, issuer], chain, host=HOST, at=pki().now)
    assert (ta.record, ta.depth) == (issuer, 1)
    ee = match_chain([root, issuer, leaf], chain, host=HOST, at=pki().now)
    assert (ee.record, ee.depth) == (leaf, 0)
    dns_root = _records("valid", [(2, 0, 0, "root")])[0]
    from_dns = match_chain([dns_root], _chain("valid"), host=HOST, at=pki().now)
    assert (from_dns.record, from_dns.depth) == (dns_root, 2)


def test_unparsable_leaf_still_matches_selector_0_exact_bytes() -> None:
    junk = b"\x01\x02not a certificate"
    recs = [TlsaRecord(3, 0, 1, hashlib.sha256(junk).hexdigest()), TlsaRecord(3, 1, 1, "00" * 32)]
    result = assess_dane(recs, tlsa_dnssec=S, mx_dnssec=S, chain=[junk], host=HOST, at=pki().now)
    assert result.status is DaneStatus.VALID
    result = assess_dane(recs[1:], tlsa_dnssec=S, mx_dnssec=S, chain=[junk], host=HOST, at=pki().now)
    assert result.status is DaneStatus.MISMATCH


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 1 1 ABCDEF01", TlsaRecord(3, 1, 1, "abcdef01")),
        ("2 0 1 ab cd\tef 01", TlsaRecord(2, 0, 1, "abcdef01")),
        ("  3 1 2 00 ", TlsaRecord(3, 1, 2, "00")),
        ("255 255 255 ff", TlsaRecord(255, 255, 255, "ff")),
        ("3 1 0", TlsaRecord(3, 1, 0, "")),
    ],
    ids=["upper-hex", "split-hex", "padding", "max-fields", "no-data-is-zero-length-data"],
)
def test_parse_tlsa(text: str, expected: TlsaRecord) -> None:
    assert parse_tlsa(text) == expected
    assert parse_tlsa(expected.text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "3 1", "3 1 x ab", "256 1 1 ab", "-1 1 1 ab", "3 1 1 abc", "3 1 1 zz", "3 1 1 ½½", "٣ 1 1 ab",
     "3 1 1 " + "a" * 200_000],
    ids=["empty", "no-mtype", "non-numeric", "over-255", "negative", "odd-hex", "not-hex", "non-ascii-hex",
         "arabic-digit", "too-long"],
)  # fmt: skip
def test_parse_tlsa_rejects(text: str) -> None:
    with pytest.raises(TlsaParseError):
        parse_tlsa(text)


@given(st.text(max_size=80))
def test_any_text_gives_a_record_or_tlsa_parse_error(text: str) -> None:
    try:
        record = parse_tlsa(text)
    except TlsaParseError:
        return
    assert parse_tlsa(record.text) == record


@given(
    st.lists(
        st.builds(
            TlsaRecord,
            st.integers(0, 4),
            st.integers(0, 2),
            st.integers(0, 3),
            st.binary(max_size=70).map(bytes.hex),
        ),
        max_size=4,
    ),
    st.lists(st.binary(max_size=200), max_size=3),
    st.sampled_from(list(Dnssec)),
    st.sampled_from(list(Dnssec)),
    st.one_of(st.none(), st.just(NO_STARTTLS)),
)
def test_any_inputs_give_a_result(
    recs: list[TlsaRecord], chain: list[bytes], tlsa_s: Dnssec, mx_s: Dnssec, no_tls: str | None
) -> None:
    result = assess_dane(
        recs, tlsa_dnssec=tlsa_s, mx_dnssec=mx_s, chain=chain, host=HOST, at=pki().now, no_tls=no_tls
    )
    assert isinstance(result.status, DaneStatus)
    if result.status is not DaneStatus.VALID:
        assert result.matched is None


@pytest.mark.parametrize("cls", [DaneResult, TlsaRecord])
def test_records_round_trip(cls: type) -> None:
    value: object = assess_dane(
        _records("valid", [(3, 1, 1, "leaf")]),
        tlsa_dnssec=S,
        mx_dnssec=S,
        chain=_chain("valid"),
        host=HOST,
        at=pki().now,
    )
    if cls is TlsaRecord:
        value = parse_tlsa("3 1 1 " + "ab" * 32)
    assert records.decode(cls, orjson.loads(records.encode(value))) == value
    records.json_schema(cls)


def test_time_may_be_naive_utc() -> None:
    naive = (pki().now + dt.timedelta(days=100)).replace(tzinfo=None)
    result = assess_dane(
        _records("valid", [(2, 0, 1, "ca")]),
        tlsa_dnssec=S,
        mx_dnssec=S,
        chain=_chain("valid"),
        host=HOST,
        at=naive,
    )
    assert result.status is DaneStatus.MISMATCH  # the leaf expired by then


def _answer(rrtype: str, outcome: Outcome, dnssec: Dnssec, data: tuple[str, ...] = ()) -> Answer:
    return Answer("d.test", rrtype, outcome, dnssec, dnssec is S, 300, (), data, "NOERROR", (), "")


@pytest.mark.parametrize(
    ("mx", "tlsa", "published"),
    [
        pytest.param(S, (Outcome.OK, S), True, id="mx-and-tlsa-secure"),
        pytest.param(INS, (Outcome.OK, S), False, id="dane-provider-hosting-an-unsigned-domain"),
        pytest.param(S, (Outcome.OK, INS), False, id="tlsa-insecure"),
        pytest.param(S, (Outcome.NODATA, S), False, id="no-tlsa"),
        pytest.param(Dnssec.UNKNOWN, (Outcome.OK, S), False, id="mx-status-unknown"),
    ],
)
def test_dane_published_needs_mx_and_tlsa_answers_secure(
    mx: Dnssec, tlsa: tuple[Outcome, Dnssec], published: bool
) -> None:
    """Issue 13 item 8 (RFC 7672 §2.2.1): the study's DANE needs the MX RRset secure too."""
    data = ("3 1 1 " + "ab" * 32,) if tlsa[0] is Outcome.OK else ()
    host = MxHost(
        10,
        HOST,
        _answer("A", Outcome.OK, S, ("192.0.2.1",)),
        _answer("AAAA", Outcome.NODATA, S),
        _answer("TLSA", tlsa[0], tlsa[1], data),
        None,
    )
    mx_answer = _answer("MX", Outcome.OK, mx, (f"10 {HOST}",))
    assert dane_published(mx_answer, [host]) is published
