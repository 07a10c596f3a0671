"""Edge behaviours one plausible one-line bug would break (issue #19).

Each test here was checked against the bug it names: applied to the product code, the test
fails; on the real code it passes.  The bug is quoted in each docstring.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.checkpoint import ResultStore, read_records
from probes.dane.record import TlsaRecord
from probes.dane.tlsa import DaneResult, DaneStatus, assess_dane
from probes.dns.records import Dnssec
from probes.mtasts.match import coverage, mx_matches
from probes.providers import ProviderMap
from probes.smtp.reply import ReplyParser, SmtpProtocolError
from probes.tls.truststore import TrustStore, load_trust_store
from probes.tls.verify import IntermediatePool, PkixReason, verify_chain
from probes.transport import Coverage3, posture
from testbed.pki import TestPki

DAY = dt.timedelta(days=1)

# --- MTA-STS: a "*" is only ever the whole left-most label (RFC 8461 §4.1) ----------------------

WILDCARD_SUFFIX_CASES = [
    ("*.*.example.com", "a.*.example.com", "star-in-suffix-never-matches-a-literal-star-label"),
    ("*.*.example.com", "a.b.example.com", "star-in-suffix-is-no-second-wildcard"),
    ("*.a*.example.com", "x.a*.example.com", "star-inside-a-suffix-label"),
    ("*.example.*", "a.example.*", "star-as-last-label"),
]


@pytest.mark.parametrize(
    ("pattern", "host"), [c[:2] for c in WILDCARD_SUFFIX_CASES], ids=[c[2] for c in WILDCARD_SUFFIX_CASES]
)
def test_mx_pattern_with_a_star_after_the_first_label_matches_nothing(pattern: str, host: str) -> None:
    """Bug: the "no ``*`` in the suffix" check dropped, so ``*.*.example.com`` matches
    ``a.*.example.com`` (the host's rest equals the pattern's suffix literally)."""
    assert not mx_matches(pattern, host)
    assert coverage([pattern], [host]).uncovered == (host,)


# --- DANE-TA: every certificate below the anchor must be within its dates (RFC 7671 §5.2.1) -----


@functools.cache
def _expired_intermediate_world() -> tuple[x509.Certificate, x509.Certificate, x509.Certificate, dt.datetime]:
    """A root, an intermediate it issued that expired 10 days ago, and a valid leaf that
    intermediate issued (the leaf's own dates are fine)."""
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

    def build(
        cn: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
        start: dt.datetime,
        end: dt.datetime,
        *,
        ca: bool,
        san: str | None = None,
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        issuer_name, issuer_key = issuer if issuer is not None else (name, key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = build("edge Root", root_key, None, now - 700 * DAY, now + 3000 * DAY, ca=True)
    mid = build(
        "edge Issuing CA", mid_key, (root.subject, root_key), now - 400 * DAY, now - 10 * DAY, ca=True
    )
    leaf = build(
        "mx.edge.example",
        leaf_key,
        (mid.subject, mid_key),
        now - 30 * DAY,
        now + 60 * DAY,
        ca=False,
        san="mx.edge.example",
    )
    return root, mid, leaf, now


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("presented_root", [True, False], ids=["root-presented", "root-from-dns"])
def test_dane_ta_refuses_a_chain_with_an_expired_intermediate_below_the_anchor(presented_root: bool) -> None:
    """Bug: DANE-TA checks only the leaf's validity dates, so an expired intermediate between
    the leaf and the anchor passes as ``valid``."""
    root, mid, leaf, now = _expired_intermediate_world()
    if presented_root:
        record = TlsaRecord(2, 0, 1, hashlib.sha256(_der(root)).hexdigest())
        chain: tuple[bytes, ...] = (_der(leaf), _der(mid), _der(root))
    else:  # RFC 7671 §5.2.2: a full "2 0 0" anchor need not be sent
        record = TlsaRecord(2, 0, 0, _der(root).hex())
        chain = (_der(leaf), _der(mid))
    result = assess_dane(
        [record],
        chain=chain,
        host="mx.edge.example",
        mx_dnssec=Dnssec.SECURE,
        tlsa_dnssec=Dnssec.SECURE,
        at=now,
    )
    assert result.status is DaneStatus.MISMATCH
    assert "outside its validity" in result.detail
    # The same chain is valid while the intermediate still was: only its dates refuse it.
    earlier = assess_dane(
        [record],
        chain=chain,
        host="mx.edge.example",
        mx_dnssec=Dnssec.SECURE,
        tlsa_dnssec=Dnssec.SECURE,
        at=now - 20 * DAY,
    )
    assert earlier.status is DaneStatus.VALID


# --- PKIX: a pool intermediate that reaches no trusted root is no incomplete chain --------------


@functools.cache
def _pki() -> TestPki:
    return TestPki(label="edges")


def _store(tmp: Path) -> TrustStore:
    path = tmp / "ca.pem"
    path.write_bytes(_pki().root_pem())
    return load_trust_store("none", [str(path)])


def test_pool_intermediate_without_a_trusted_root_is_unknown_issuer(tmp_path: Path) -> None:
    """Bug: ``incomplete-chain`` whenever the pool supplied an intermediate, even though the
    walk through it reached no trusted root (it must be ``unknown-issuer``)."""
    p = _pki()
    untrusted = p.issue(["mx.pool.example"], kind="untrusted-ca")
    pool = IntermediatePool.from_der([p.intermediate.der, p.untrusted_intermediate.der])
    store = _store(tmp_path)
    alone = (untrusted.leaf_der,)  # its issuer (in the pool) omitted
    result = verify_chain(alone, "mx.pool.example", store=store, at=p.now, intermediates=pool)
    assert (result.valid, result.reason) == (False, PkixReason.UNKNOWN_ISSUER)
    # The trusted intermediate omitted the same way is what incomplete-chain means.
    missing = p.issue(["mx.pool.example"], kind="missing-intermediate")
    result = verify_chain(missing.chain_der, "mx.pool.example", store=store, at=p.now, intermediates=pool)
    assert (result.valid, result.reason) == (False, PkixReason.INCOMPLETE_CHAIN)


# --- SMTP replies: the caps are inclusive bounds ----------------------------------------------


def _reply(lines: int) -> bytes:
    return b"".join(b"250-l%d\r\n" % i for i in range(lines - 1)) + b"250 last\r\n"


@pytest.mark.parametrize("max_lines", [3, 256])
def test_reply_of_exactly_max_lines_is_accepted_and_one_more_refused(max_lines: int) -> None:
    """Bug: the line-count check ``>=`` turned into ``>``, accepting max_lines + 1 lines."""
    parser = ReplyParser() if max_lines == 256 else ReplyParser(max_lines=max_lines)
    (reply,) = parser.feed(_reply(max_lines))
    assert len(reply.lines) == max_lines
    with pytest.raises(SmtpProtocolError) as caught:
        ReplyParser(max_lines=max_lines).feed(_reply(max_lines + 1))
    assert caught.value.reason == "too-many-lines"


@pytest.mark.parametrize("ending", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_reply_line_of_exactly_max_line_bytes_is_accepted_and_one_more_refused(ending: bytes) -> None:
    """The line cap counts the line without its ending; one byte over is ``line-too-long``,
    whether the line arrives whole or is still waiting for its end."""
    text = b"250 " + b"x" * 16
    (reply,) = ReplyParser(max_line=len(text)).feed(text + ending)
    assert reply.lines == ("x" * 16,)
    assert ReplyParser(max_line=len(text)).feed(text + b"\r") == []  # waiting for LF: not over
    for data in (text + b"y" + ending, text + b"y"):
        with pytest.raises(SmtpProtocolError) as caught:
            ReplyParser(max_line=len(text)).feed(data)
        assert caught.value.reason == "line-too-long"


def test_reply_of_exactly_max_bytes_is_accepted_and_one_more_refused() -> None:
    """The byte cap of one reply counts every line with its ending."""
    data = _reply(4)
    (reply,) = ReplyParser(max_bytes=len(data)).feed(data)
    assert len(reply.lines) == 4
    with pytest.raises(SmtpProtocolError) as caught:
        ReplyParser(max_bytes=len(data) - 1).feed(data)
    assert caught.value.reason == "reply-too-large"


# --- Posture: an undetermined DANE verdict is unknown, never "no" -------------------------------

_UNDETERMINED = DaneResult(DaneStatus.UNDETERMINED, None, 0, "TLSA lookup timeout")
_VALID = DaneResult(DaneStatus.VALID, "3 1 1 00", 1, "")
_MISMATCH = DaneResult(DaneStatus.MISMATCH, None, 1, "leaf does not match")

DANE_ROLL_CASES = [
    ([_UNDETERMINED], Coverage3.UNKNOWN, "only-host-undetermined"),
    ([_MISMATCH, _UNDETERMINED], Coverage3.UNKNOWN, "undetermined-could-still-be-valid"),
    ([_VALID, _UNDETERMINED], Coverage3.SOME, "one-valid-settles-some"),
    ([_VALID, _VALID], Coverage3.ALL, "all-valid"),
    ([_MISMATCH, None], Coverage3.UNKNOWN, "not-assessed-is-unknown"),
    ([_MISMATCH], Coverage3.NONE, "mismatch-is-none"),
    ([], Coverage3.NOT_APPLICABLE, "no-hosts"),
]


@pytest.mark.parametrize(
    ("verdicts", "expected"), [c[:2] for c in DANE_ROLL_CASES], ids=[c[2] for c in DANE_ROLL_CASES]
)
def test_undetermined_dane_verdict_rolls_up_to_unknown_not_none(
    verdicts: list[DaneResult | None], expected: Coverage3
) -> None:
    """Bug: ``_host_dane`` maps ``undetermined`` to False, so a domain whose TLSA lookup timed
    out is counted as "no DANE" instead of unknown."""
    rolled = posture(
        [((), v) for v in verdicts], dnssec_mx="secure", dane_published=True, mta_sts_mode=None, tlsrpt=None
    )
    assert rolled.dane_valid is expected


# --- Providers: every RFC 8552 attribute leaf is stripped, not just the first -------------------


@pytest.mark.parametrize(
    "name",
    ["_25._tcp.mx.example.com", "_tcp.mx.example.com", "_443._tcp._mta-sts.mx.example.com"],
)
def test_attribute_leaf_names_are_attributed_to_the_host_they_qualify(name: str) -> None:
    """Bug: the loop that strips ``_label.`` prefixes turned into one ``if``, so the TLSA
    owner ``_25._tcp.mx.example.com`` is attributed to nobody."""
    providers = ProviderMap()  # its own: a map is memoised, a shared one answers from its cache
    assert providers.provider_of(name) == providers.provider_of("mx.example.com") == "example.com"


# --- Checkpoint: kill -9 during the very first write ------------------------------------------

FIRST_WRITE_TORN = [
    ("partial-object", b'{"schema_version":2,"dom'),
    ("complete-object-no-newline", b'{"schema_version":2,"domain":"a.com"}'),
    ("single-brace", b"{"),
    ("nul-filler", b"\x00\x00\x00"),
]


@pytest.mark.parametrize("torn", [c[1] for c in FIRST_WRITE_TORN], ids=[c[0] for c in FIRST_WRITE_TORN])
def test_results_file_whose_only_line_is_torn_resumes_empty(tmp_path: Path, torn: bytes) -> None:
    """Bug: a torn line that is also line 1 refused as "not an mxscan results file", so a scan
    killed during its first write could not resume ("kill -9 at any moment")."""
    path = tmp_path / "out.ndjson"
    path.write_bytes(torn)
    store = ResultStore(path)
    keys = store.open()
    assert len(keys) == 0 and store.dropped_torn_tail and store.resumed == 0
    assert path.read_bytes() == b""
    store.append(orjson.dumps({"schema_version": 2, "domain": "a.com"}) + b"\n")
    store.close()
    assert [r["domain"] for r in read_records(path)] == ["a.com"]
