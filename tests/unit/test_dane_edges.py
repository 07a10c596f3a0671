"""Edges of TLSA parsing and the DANE verdict (RFC 6698, RFC 7672) that mutation testing found
unpinned: the whole ``DaneResult`` of each gate, not only its status (``usable``, how many
records an SMTP sender could use, RFC 7672 §3.1, and ``detail``: which answer was bogus, which
DNSSEC state made DANE not apply, why no record is usable, how a match was made and at which
depth, are written into every result line); the length cap of a record's text; what each
parse error and each unusable reason says; and zero-length association data, which the wire
allows (RFC 6698 §2.1) and dnspython renders as "3 1 0 "."""

from __future__ import annotations

import functools
import hashlib

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from probes.dane.record import MAX_TLSA_TEXT, unusable_reason
from probes.dane.tlsa import DaneResult, DaneStatus, TlsaParseError, TlsaRecord, assess_dane, parse_tlsa
from probes.dns.classify import format_rdata
from probes.dns.message import TlsaData
from probes.dns.records import Answer, Dnssec, MxHost, Outcome
from probes.plan import dane_for
from testbed.pki import TestPki

HOST = "mx1.dane-edges.example.test"
S, INS, B, X, U = Dnssec.SECURE, Dnssec.INSECURE, Dnssec.BOGUS, Dnssec.INDETERMINATE, Dnssec.UNKNOWN
NOT_OFFERED = "STARTTLS not offered"


@functools.cache
def pki() -> TestPki:
    return TestPki(label="dane-edges")


@functools.cache
def chain() -> tuple[bytes, ...]:
    return pki().issue([HOST]).chain_der


def digest(usage: int, der: bytes) -> TlsaRecord:
    """A "<usage> 0 1" record: SHA-256 of the full certificate."""
    return TlsaRecord(usage, 0, 1, hashlib.sha256(der).hexdigest())


OTHER_EE = TlsaRecord(3, 1, 1, "00" * 32)
PKIX_EE = TlsaRecord(1, 1, 1, "11" * 32)
UNKNOWN_USAGE = TlsaRecord(4, 1, 1, "22" * 32)


def assess(records: list[TlsaRecord], tlsa: Dnssec = S, mx: Dnssec = S, **kw: object) -> DaneResult:
    args: dict[str, object] = {"chain": chain(), "host": HOST, "at": pki().now, **kw}
    return assess_dane(records, tlsa_dnssec=tlsa, mx_dnssec=mx, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tlsa", "mx", "detail"),
    [
        pytest.param(B, S, "TLSA answer failed DNSSEC validation", id="tlsa-bogus"),
        pytest.param(S, B, "MX answer failed DNSSEC validation", id="mx-bogus"),
        pytest.param(INS, B, "MX answer failed DNSSEC validation", id="mx-bogus-tlsa-insecure"),
        pytest.param(B, B, "TLSA answer failed DNSSEC validation", id="both-bogus-tlsa-named"),
    ],
)
def test_bogus_names_the_answer_that_failed_validation(tlsa: Dnssec, mx: Dnssec, detail: str) -> None:
    assert assess([OTHER_EE], tlsa, mx) == DaneResult(DaneStatus.BOGUS, None, 0, detail)


@pytest.mark.parametrize(("tlsa", "word"), [(X, "indeterminate"), (U, "unknown")])
def test_undetermined_lookup_says_the_tlsa_state(tlsa: Dnssec, word: str) -> None:
    expected = DaneResult(DaneStatus.UNDETERMINED, None, 0, f"TLSA lookup {word}")
    assert assess([OTHER_EE], tlsa) == expected


def test_no_records_is_none_with_nothing_usable() -> None:
    assert assess([]) == DaneResult(DaneStatus.NONE, None, 0, "no TLSA records")


@pytest.mark.parametrize(("tlsa", "mx"), [(INS, S), (S, INS), (INS, INS)])
def test_insecure_answers_say_which_state_each_had(tlsa: Dnssec, mx: Dnssec) -> None:
    detail = f"TLSA {tlsa.value}, MX {mx.value}: DANE does not apply"
    assert assess([OTHER_EE], tlsa, mx) == DaneResult(DaneStatus.INSECURE, None, 0, detail)


def test_no_tls_counts_the_usable_records_and_says_why() -> None:
    result = assess([OTHER_EE, PKIX_EE, digest(2, chain()[1])], chain=None, no_tls=NOT_OFFERED)
    why = f"no TLS session ({NOT_OFFERED}): a DANE sender would not deliver (RFC 7672 §2.2)"
    assert result == DaneResult(DaneStatus.NO_TLS, None, 2, why)


def test_host_not_probed_counts_the_usable_records() -> None:
    result = assess([OTHER_EE, PKIX_EE, digest(2, chain()[1])], chain=None)
    assert result == DaneResult(DaneStatus.UNDETERMINED, None, 2, "host not probed, no chain to match")


def test_unusable_lists_each_reason_once_sorted() -> None:
    result = assess([UNKNOWN_USAGE, PKIX_EE, TlsaRecord(0, 0, 1, "33" * 32)])
    detail = "PKIX usages are unusable for SMTP (RFC 7672 §3.1.3); unknown usage 4"
    assert result == DaneResult(DaneStatus.UNUSABLE, None, 0, detail)


def test_mismatch_counts_the_usable_records_and_joins_each_miss() -> None:
    untrusted_ca = digest(2, pki().untrusted_intermediate.der)
    result = assess([OTHER_EE, PKIX_EE, untrusted_ca])
    detail = (
        "3 1 1: leaf does not match; "
        "2 0 1: no presented CA certificate matches and the record holds no full certificate or key"
    )
    assert result == DaneResult(DaneStatus.MISMATCH, None, 2, detail)


def test_valid_says_how_the_chain_was_authenticated_and_at_which_depth() -> None:
    leaf, issuer = digest(3, chain()[0]), digest(2, chain()[1])
    ee = DaneResult(DaneStatus.VALID, leaf.text, 2, "DANE-EE matches the leaf (depth 0)")
    assert assess([OTHER_EE, PKIX_EE, leaf]) == ee
    ta = DaneResult(DaneStatus.VALID, issuer.text, 2, "DANE-TA anchors the chain (depth 1)")
    assert assess([OTHER_EE, PKIX_EE, issuer]) == ta


def test_record_text_is_read_up_to_its_cap_and_refused_past_it() -> None:
    hex_digits = MAX_TLSA_TEXT - len("3 1 0 ")
    at_cap = "3 1 0 " + "ab" * (hex_digits // 2)
    assert len(at_cap) == MAX_TLSA_TEXT and parse_tlsa(at_cap).data == "ab" * (hex_digits // 2)
    with pytest.raises(TlsaParseError, match=f"^record text longer than {MAX_TLSA_TEXT} characters$"):
        parse_tlsa(at_cap + "0")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("3 1", "expected '<usage> <selector> <mtype> <hex>'", id="two-fields"),
        pytest.param("x 1 1 ab", "usage 'x' is not an integer 0-255", id="usage"),
        pytest.param("3 256 1 ab", "selector '256' is not an integer 0-255", id="selector"),
        pytest.param("3 1 -1 ab", "matching type '-1' is not an integer 0-255", id="matching-type"),
        pytest.param(
            "123456789012 1 1 ab", "usage '1234567890' is not an integer 0-255", id="value-cut-at-10"
        ),
        pytest.param("3 1 1 zz", "association data is not hexadecimal", id="not-hex"),
        pytest.param("3 1 1 abc", "association data has an odd number of hex digits", id="odd-hex"),
    ],
)
def test_a_parse_error_says_which_field_is_wrong(text: str, message: str) -> None:
    with pytest.raises(TlsaParseError) as caught:
        parse_tlsa(text)
    assert str(caught.value) == message


def _spki_hex(der: bytes) -> str:
    key = x509.load_der_x509_certificate(der).public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo).hex()


PKIX = "PKIX usages are unusable for SMTP (RFC 7672 §3.1.3)"
UNUSABLE = [
    pytest.param(TlsaRecord(0, 0, 1, "00" * 32), PKIX, id="pkix-ta"),
    pytest.param(TlsaRecord(1, 1, 1, "00" * 32), PKIX, id="pkix-ee"),
    pytest.param(TlsaRecord(4, 1, 1, "00" * 32), "unknown usage 4", id="usage-4"),
    pytest.param(TlsaRecord(3, 2, 1, "00" * 32), "unknown selector 2", id="selector-2"),
    pytest.param(TlsaRecord(3, 1, 3, "00" * 32), "unknown matching type 3", id="mtype-3"),
    pytest.param(TlsaRecord(3, 1, 1, "00" * 20), "digest of 20 bytes for matching type 1", id="short-sha256"),
    pytest.param(
        TlsaRecord(2, 0, 2, "00" * 32), "digest of 32 bytes for matching type 2", id="sha256-as-512"
    ),
    pytest.param(TlsaRecord(3, 1, 0, ""), "empty association data", id="empty-spki"),
    pytest.param(TlsaRecord(2, 0, 0, ""), "empty association data", id="empty-cert"),
    pytest.param(
        TlsaRecord(2, 0, 0, "30" * 40), "full association data is not a DER certificate", id="bad-cert"
    ),
    pytest.param(
        TlsaRecord(3, 1, 0, "30" * 40),
        "full association data is not a DER SubjectPublicKeyInfo",
        id="bad-spki",
    ),
    pytest.param(TlsaRecord(3, 1, 1, "00" * 32), None, id="sha256"),
    pytest.param(TlsaRecord(2, 0, 2, "00" * 64), None, id="sha512"),
]


@pytest.mark.parametrize(("record", "reason"), UNUSABLE)
def test_each_unusable_record_says_why(record: TlsaRecord, reason: str | None) -> None:
    assert unusable_reason(record) == reason


def test_full_certificate_and_key_of_the_test_pki_are_usable() -> None:
    leaf, issuer = chain()[0], chain()[1]
    assert unusable_reason(TlsaRecord(2, 0, 0, issuer.hex())) is None
    assert unusable_reason(TlsaRecord(3, 1, 0, _spki_hex(leaf))) is None
    assert unusable_reason(TlsaRecord(2, 1, 0, _spki_hex(leaf)[:-2])) == (
        "full association data is not a DER SubjectPublicKeyInfo"
    )


def _answer(rrtype: str, data: tuple[str, ...]) -> Answer:
    return Answer(HOST, rrtype, Outcome.OK, S, True, 300, (), data, "NOERROR", (), "")


def test_a_secure_tlsa_rrset_of_empty_records_is_unusable_not_none() -> None:
    """Bug: zero-length association data, legal on the wire (RFC 6698 §2.1) and rendered
    "3 1 0 " by the DNS layer as by dnspython, was refused by parse_tlsa and dropped, so a
    secure non-empty TLSA RRset read as "no TLSA records" (none), although it makes TLS
    mandatory for a DANE sender (RFC 7672 §2.2)."""
    text = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.TLSA, b"\x03\x01\x00", 0, 3).to_text()
    assert format_rdata(TlsaData(3, 1, 0, b"")) == text == "3 1 0 "
    assert parse_tlsa(text) == TlsaRecord(3, 1, 0, "")
    host = MxHost(10, HOST, _answer("A", ("192.0.2.1",)), _answer("AAAA", ()), _answer("TLSA", (text,)), None)
    result = dane_for(host, _answer("MX", (f"10 {HOST}",)), list(chain()), pki().now)
    assert result == DaneResult(DaneStatus.UNUSABLE, None, 0, "empty association data")
