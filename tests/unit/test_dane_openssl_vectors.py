"""OpenSSL's DANE test vectors as a regression suite for mxscan's DANE matching (issue 13, item 7).

Source: OpenSSL ``test/danetest.in`` and ``test/dane-cross.in`` (Apache-2.0; the
format is described in ``test/danetest.c``), read from
``../shared/external-suites/openssl-dane/`` beside the repository.  Each block
gives TLSA records, a chain (leaf first), a "no name checks for DANE-EE" flag,
the verify result OpenSSL must give and the depth of the match
(``SSL_get0_dane_authority``).  The base domain (the name checked) is the one
OpenSSL's ``test/recipes/80-test_dane.t`` passes: ``example.com`` for
danetest.in, ``server.example`` for dane-cross.in.

OpenSSL implements generic DANE (RFC 6698/7671); mxscan implements SMTP DANE
(RFC 7672).  Each vector is mapped to SMTP semantics by these rules, and then
must agree exactly (status, and depth where OpenSSL validates):

* PKIX-TA(0) and PKIX-EE(1) records are unusable for SMTP (RFC 7672 §3.1.3): a
  block with no DANE-TA/DANE-EE record is ``unusable`` whatever OpenSSL's PKIX
  verdict (those blocks test PKIX chains against ``danetest.pem``, which SMTP
  DANE never consults).
* DANE-EE ignores names (RFC 7672 §3.1.1): a block OpenSSL fails only with a
  host name mismatch (error 62) after a DANE-EE match, because that block leaves
  OpenSSL's DANE-EE name checks on, is ``valid`` at depth 0.
* Otherwise OpenSSL's success is ``valid`` at OpenSSL's depth and any failure
  (no match 65, name mismatch 62 after a DANE-TA match) is ``mismatch``; the MX
  host name is the file's base domain; DNSSEC is secure.

Vectors whose SMTP answer differs from that mapping are listed in EXCEPTIONS
with the reason (none today); a test checks each listed vector really differs.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from probes.dane.tlsa import DaneStatus, TlsaRecord, assess_dane, match_chain, parse_tlsa
from probes.dns.records import Dnssec

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT.parent / "shared" / "external-suites" / "openssl-dane"
#: File -> the base domain OpenSSL's test recipe checks its names against.
FILES = {"danetest.in": "example.com", "dane-cross.in": "server.example"}
#: Every certificate of the vectors is valid then (they run to 2116 and 3015); the
#: "never valid" leaves of danetest.in are only ever matched by DANE-EE, which ignores dates.
AT = dt.datetime(2024, 7, 19, tzinfo=dt.UTC)
X509_V_OK, X509_V_ERR_HOSTNAME_MISMATCH = 0, 62
#: "<file>#<block>" -> why mxscan's SMTP DANE answer differs from the mapped expectation.
EXCEPTIONS: dict[str, str] = {}


@dataclass(frozen=True)
class Vector:
    name: str
    host: str
    records: tuple[TlsaRecord, ...]
    chain: tuple[bytes, ...]
    no_ee_name_checks: bool
    want: int
    want_depth: int


def _missing() -> None:
    message = (
        f"OpenSSL DANE vectors not found in {VECTORS} (expected {', '.join(FILES)}; "
        "see the module docstring for the source)"
    )
    if os.environ.get("MXSCAN_ALLOW_MISSING_VECTORS") == "1":
        pytest.skip(message)
    pytest.fail(message + "; set MXSCAN_ALLOW_MISSING_VECTORS=1 to skip")


def _pem_blocks(lines: list[str], start: int, count: int) -> tuple[list[bytes], int]:
    """``count`` PEM certificates from ``lines[start:]`` as DER (other text skipped, as
    PEM_read_bio does), and the index after the last one."""
    found: list[bytes] = []
    pem: list[str] | None = None
    i = start
    while len(found) < count:
        line = lines[i]
        i += 1
        if line.startswith("-----BEGIN CERTIFICATE-----"):
            pem = [line]
        elif pem is not None:
            pem.append(line)
            if line.startswith("-----END CERTIFICATE-----"):
                cert = x509.load_pem_x509_certificate("\n".join(pem).encode())
                found.append(cert.public_bytes(serialization.Encoding.DER))
                pem = None
    return found, i


def read_vectors(path: Path, host: str) -> list[Vector]:
    """The blocks of one file, as danetest.c reads them."""
    lines = path.read_text().splitlines()
    vectors: list[Vector] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        ntlsa, ncert, nonamechecks, want, depth = (int(f) for f in line.split())
        records = tuple(parse_tlsa(lines[i + j]) for j in range(ntlsa))
        chain, i = _pem_blocks(lines, i + ntlsa, ncert)
        name = f"{path.name}#{len(vectors) + 1}"
        vectors.append(Vector(name, host, records, tuple(chain), bool(nonamechecks), want, depth))
    return vectors


def all_vectors() -> list[Vector]:
    if not all((VECTORS / f).is_file() for f in FILES):
        return []
    return [v for f, host in FILES.items() for v in read_vectors(VECTORS / f, host)]


def smtp_expectation(v: Vector) -> tuple[DaneStatus, int | None]:
    """The SMTP DANE answer (status, depth) a vector maps to (see the module docstring)."""
    usable = [r for r in v.records if r.usage in (2, 3)]
    if not usable:
        return DaneStatus.UNUSABLE, None
    if v.want == X509_V_OK:
        return DaneStatus.VALID, v.want_depth
    if v.want == X509_V_ERR_HOSTNAME_MISMATCH and v.want_depth == 0 and all(r.usage == 3 for r in usable):
        return DaneStatus.VALID, 0
    return DaneStatus.MISMATCH, None


def smtp_answer(v: Vector) -> tuple[DaneStatus, int | None]:
    result = assess_dane(
        v.records, tlsa_dnssec=Dnssec.SECURE, mx_dnssec=Dnssec.SECURE, chain=v.chain, host=v.host, at=AT
    )
    if result.status is not DaneStatus.VALID:
        return result.status, None
    usable = [r for r in v.records if r.usage in (2, 3)]
    match = match_chain(usable, v.chain, host=v.host, at=AT)
    assert match.record is not None and match.record.text == result.matched
    return result.status, match.depth


VECTOR_LIST = all_vectors()


def test_vectors_are_present() -> None:
    """55 blocks: 54 in danetest.in, 1 in dane-cross.in (the snapshot the README names)."""
    if not VECTOR_LIST:
        _missing()
    assert len(VECTOR_LIST) == 55


@pytest.mark.parametrize("vector", [v for v in VECTOR_LIST if v.name not in EXCEPTIONS], ids=lambda v: v.name)
def test_openssl_dane_vector_agrees_under_smtp_semantics(vector: Vector) -> None:
    assert smtp_answer(vector) == smtp_expectation(vector)


def test_listed_exceptions_really_differ() -> None:
    """The exception list cannot go stale: a listed vector that agrees must leave it."""
    by_name = {v.name: v for v in VECTOR_LIST}
    for name in EXCEPTIONS:
        assert smtp_answer(by_name[name]) != smtp_expectation(by_name[name]), f"{name} agrees: unlist it"


def test_vectors_cover_anchors_from_dns_and_cross_signed_chains() -> None:
    """Guards the suite's point (issue 13 item 7): full TA records ("2 0 0", "2 1 0") whose
    anchor the server does not send, and a chain carrying a cross-signed copy of the anchor."""
    if not VECTOR_LIST:
        _missing()
    from_dns = [
        v
        for v in VECTOR_LIST
        if any(r.usage == 2 and r.mtype == 0 for r in v.records)
        and not any(bytes.fromhex(r.data) in v.chain for r in v.records if r.selector == 0)
        and v.want == X509_V_OK
    ]
    assert {(r.selector, r.mtype) for v in from_dns for r in v.records} >= {(0, 0), (1, 0)}
    cross = next(v for v in VECTOR_LIST if v.name == "dane-cross.in#1")
    assert smtp_answer(cross) == (DaneStatus.VALID, 2)
