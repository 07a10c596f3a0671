"""x509-limbo and BetterTLS server-auth cases: warm PKIX verdicts equal cold ones, and every
difference from cryptography's own verifier is listed here (and in the README) with why.

Sources (both Apache-2.0), read from ``../shared/external-suites/`` beside the repository:

* ``x509-limbo-server.json.gz``: C2SP/x509-limbo at 8a2e6f4, generated with its own
  generator (limbo schema 1; format at https://x509-limbo.com, ``limbo/models.py``).  Every
  SERVER case with an expected peer name; a case without a validation time is checked at
  ``LIMBO_DEFAULT_TIME`` (limbo means "now"; every such certificate is valid for centuries).
* ``bettertls.json.gz``: Netflix/bettertls at e1e99e3, exported by ``bettertls
  export-tests``, converted as x509-limbo's ``limbo/testcases/bettertls.py`` does: the trust
  root removed from the presented certificates, checked at the leaf's notBefore + 1 s (its
  notAfter + 1 s for an expiry rejection).

For each case mxscan's ``verify_chain`` runs with both PKIX caches empty (cold), then again
over all cases with the caches kept, twice, in shuffled orders (warm): the verdicts (validity,
reason, detail, anchor) must be equal.  The reference is
``PolicyBuilder().store(roots).time(at).build_server_verifier(DNSName(host) or IPAddress)
.verify(leaf, rest)``; mxscan differs from it exactly on the cases of ``DIFFERENCES``.

By default every limbo and BetterTLS path-building case runs, with a deterministic
stratified eighth of BetterTLS's 9,491 name-constraint cases (every 8th of each stratum:
suite, expectation, warning flag, required features, chain length, host kind) and every
listed difference; ``MXSCAN_FULL_VECTORS=1`` runs all 9,769 cases (~25 s of CPU here).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import gzip
import ipaddress
import json
import os
import random
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, VerificationError

from probes.tls.certs import EXTENSION_ERRORS
from probes.tls.pathcache import IssuerCache, PathCache
from probes.tls.truststore import TrustStore, load_trust_store
from probes.tls.verify import PkixReason, Verifier, verify_chain

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

SUITES = Path(__file__).resolve().parents[2].parent / "shared" / "external-suites"
LIMBO, BETTERTLS = SUITES / "x509-limbo-server.json.gz", SUITES / "bettertls.json.gz"
LIMBO_DEFAULT_TIME = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
FULL = os.environ.get("MXSCAN_FULL_VECTORS") == "1"
SAMPLE_EVERY = 8


def _bettertls(suite: str, *numbers: int) -> frozenset[str]:
    return frozenset(f"bettertls::{suite}::tc{n}" for n in numbers)


#: BetterTLS name-constraint cases (all expecting a rejection as a warning only) whose leaf
#: has no dNSName SAN and a subject CN naming the host.
_CN_ONLY = (
    736, 737, 738, 742, 743, 744, 745, 746, 747, 751, 752, 753, 754, 755, 756, 760, 761, 762,
    763, 764, 765, 769, 770, 771, 772, 773, 774, 778, 779, 780, 781, 782, 783, 787, 788, 789,
    817, 819, 823, 825, 826, 828, 832, 834, 844, 846, 850, 852, 853, 855, 859, 861, 898, 899,
    904, 905, 916, 917, 922, 923, 925, 926, 931, 932, 943, 944, 949, 950,
)  # fmt: skip

#: Every case where mxscan's verdict differs from cryptography's server verifier: kind ->
#: (why, the cases).  OpenSSL 3.0's `openssl verify` gives mxscan's verdict on each of them.
DIFFERENCES: dict[str, tuple[str, frozenset[str]]] = {
    "cn-fallback": (
        "mxscan accepts: the leaf has no dNSName SAN and its subject CN names the host; OpenSSL's "
        "X509_check_host (Python's ssl, Postfix, Exim) falls back to the CN (RFC 6125 §6.4.4) and "
        "no name constraint forbids it, while cryptography requires a SAN.  BetterTLS expects a "
        "rejection as a warning only (failureIsWarning), limbo as a WebPKI rule.",
        frozenset({"webpki::san::no-san"}) | _bettertls("nameconstraints", *_CN_ONLY),
    ),
    "chain-too-long": (
        "mxscan refuses: 36 certificates presented and only the first 16 read (a bound on hostile "
        "input), which hold no path to the root; cryptography searches all 36 and finds one.",
        _bettertls("pathbuilding", *range(61, 69)),
    ),
}


@dataclass(frozen=True)
class Case:
    id: str
    roots: tuple[bytes, ...]
    chain: tuple[bytes, ...]
    host: str
    at: dt.datetime
    stratum: tuple[Any, ...] = ()


def _vectors_missing() -> None:
    message = f"x509-limbo / BetterTLS vectors not found in {SUITES} (see the module docstring)"
    if os.environ.get("MXSCAN_ALLOW_MISSING_VECTORS") == "1":
        pytest.skip(message)
    pytest.fail(message + "; set MXSCAN_ALLOW_MISSING_VECTORS=1 to skip")


def _der_of_pem(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def _limbo_cases() -> list[Case]:
    cases = json.loads(gzip.decompress(LIMBO.read_bytes()))["testcases"]
    assert len(cases) == 208, "the limbo vectors changed: re-derive DIFFERENCES"
    found = []
    for tc in cases:
        if tc["validation_kind"] != "SERVER" or tc["expected_peer_name"] is None:
            continue
        at = dt.datetime.fromisoformat(tc["validation_time"]) if tc["validation_time"] else LIMBO_DEFAULT_TIME
        chain = (_der_of_pem(tc["peer_certificate"]), *map(_der_of_pem, tc["untrusted_intermediates"]))
        roots = tuple(map(_der_of_pem, tc["trusted_certs"]))
        found.append(Case(tc["id"], roots, chain, tc["expected_peer_name"]["value"], at))
    assert len(found) == 197
    return found


def _host_kind(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "dns"
    return "ip"


def _bettertls_cases() -> list[Case]:
    data = json.loads(gzip.decompress(BETTERTLS.read_bytes()))
    root = base64.b64decode(data["trustRoot"])
    found = []
    for suite, content in data["suites"].items():
        for tc in content["testCases"]:
            ders = [base64.b64decode(c) for c in tc["certificates"]]
            chain = (ders[0], *(d for d in ders[1:] if d != root))
            leaf = x509.load_der_x509_certificate(ders[0])
            expiry = "INVALID_REASON_EXPIRED" in tc["requiredFeatures"] and tc["expected"] == "REJECT"
            at = (leaf.not_valid_after_utc if expiry else leaf.not_valid_before_utc) + dt.timedelta(seconds=1)
            stratum = (suite, tc["expected"], tc["failureIsWarning"], tuple(tc["requiredFeatures"]))
            stratum += (len(chain), _host_kind(tc["hostname"]))
            found.append(
                Case(f"bettertls::{suite}::tc{tc['id']}", (root,), chain, tc["hostname"], at, stratum)
            )
    assert len(found) == 9572, "the BetterTLS vectors changed: re-derive DIFFERENCES"
    return found


def _sample(cases: list[Case]) -> list[Case]:
    """Every case outside the name-constraint suite; of that suite, every ``SAMPLE_EVERY``-th
    case of each stratum (by suite order) and every listed difference."""
    listed = frozenset().union(*(ids for _, ids in DIFFERENCES.values()))
    seen: defaultdict[tuple[Any, ...], int] = defaultdict(int)
    kept = []
    for case in cases:
        index = seen[case.stratum]
        seen[case.stratum] += 1
        if (
            not case.id.startswith("bettertls::nameconstraints")
            or index % SAMPLE_EVERY == 0
            or case.id in listed
        ):
            kept.append(case)
    return kept


@functools.cache
def cases() -> tuple[Case, ...]:
    if not (LIMBO.is_file() and BETTERTLS.is_file()):
        _vectors_missing()
    every = _limbo_cases() + _bettertls_cases()
    return tuple(every if FULL else _sample(every))


@functools.cache
def _store_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="mxscan-suites-"))


@functools.cache
def store(roots: tuple[bytes, ...]) -> TrustStore:
    path = _store_dir() / f"roots-{len(list(_store_dir().iterdir()))}.pem"
    pems = (x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM) for d in roots)
    path.write_bytes(b"".join(pems))
    return load_trust_store("none", [str(path)])


Verdict = tuple[bool, PkixReason, str, str]


def mxscan_verdict(case: Case, caches: tuple[PathCache, IssuerCache] | None = None) -> Verdict:
    """The verdict of a new verifier (cold), or of one over ``caches`` shared by every case's
    trust store (warm)."""
    if caches is None:
        result = verify_chain(case.chain, case.host, store=store(case.roots), at=case.at)
    else:
        verifier = Verifier(store(case.roots), paths=caches[0], issuers=caches[1])
        result = verifier.verify(case.chain, case.host, case.at)
    return result.valid, result.reason, result.detail, result.anchor


def cryptography_accepts(case: Case) -> bool:
    """cryptography's own server verifier on the whole presented chain."""
    subject: x509.DNSName | x509.IPAddress = x509.DNSName(case.host)
    if _host_kind(case.host) == "ip":
        subject = x509.IPAddress(ipaddress.ip_address(case.host))
    try:
        leaf, *rest = (x509.load_der_x509_certificate(d) for d in case.chain)
        verifier = PolicyBuilder().store(store(case.roots).store).time(case.at).build_server_verifier(subject)
        verifier.verify(leaf, rest)
    except (VerificationError, *EXTENSION_ERRORS):
        return False
    return True


@functools.cache
def cold_verdicts() -> dict[str, Verdict]:
    return {case.id: mxscan_verdict(case) for case in cases()}


def test_warm_verdicts_equal_cold_ones_on_every_case() -> None:
    cold = cold_verdicts()
    paths, issuers = PathCache(), IssuerCache()
    shuffled, unequal = list(cases()), []
    for seed in (13, 14):
        random.Random(seed).shuffle(shuffled)
        unequal += [
            (case.id, seed) for case in shuffled if mxscan_verdict(case, (paths, issuers)) != cold[case.id]
        ]
    assert not unequal, unequal[:20]
    assert paths.hits > 0 and issuers.hits > 0  # the caches were used


def test_every_difference_from_cryptographys_verifier_is_listed() -> None:
    cold = cold_verdicts()
    differing = {case.id for case in cases() if cold[case.id][0] is not cryptography_accepts(case)}
    listed = {case_id: kind for kind, (_, ids) in DIFFERENCES.items() for case_id in ids}
    run = {case.id for case in cases()}
    assert sorted(differing - set(listed)) == [], (
        "new differences: explain them in DIFFERENCES and the README"
    )
    assert sorted(set(listed) & run - differing) == [], "listed cases that no longer differ"
    for case_id in differing:
        valid, reason, detail, _ = cold[case_id]
        if listed[case_id] == "cn-fallback":
            assert valid and "CN fallback" in detail, (case_id, detail)
        else:
            assert reason is PkixReason.CHAIN_TOO_LONG, (case_id, reason, detail)
