"""The ``Verifier``: a scan's trust store, known intermediates and caches in one object,
made once per scan (mxscan/wiring.py) and handed to the SMTP prober and the policy
fetcher.  Nothing verified lives in a module: each Verifier remembers only its own work."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from mxscan.config import ScanConfig
from mxscan.wiring import policy_fetcher, smtp_prober
from probes.tls.pathcache import IssuerCache, PathCache
from probes.tls.truststore import TrustStore, load_trust_store, read_certificates
from probes.tls.verify import IntermediatePool, PkixReason, Verifier, verify_chain
from testbed.pki import TestPki

HOST = "mx.verifier.test"


@functools.cache
def pki() -> TestPki:
    return TestPki(label="verifier")


@functools.cache
def root_file() -> Path:
    path = Path(tempfile.mkdtemp(prefix="mxscan-verifier-")) / "root.pem"
    path.write_bytes(pki().root_pem())
    return path


def store() -> TrustStore:
    return load_trust_store("none", [str(root_file())])


def test_each_verifier_remembers_only_what_it_verified() -> None:
    chain = pki().issue([HOST]).chain_der
    first, second = Verifier(store()), Verifier(store())
    assert first.verify(chain, HOST, pki().now).valid
    assert second.verify(chain, HOST, pki().now).valid
    assert (second.paths.hits, second.paths.misses) == (0, 1)  # the first one's work is not seen
    assert first.verify(chain, HOST, pki().now).valid
    assert (first.paths.hits, first.paths.misses) == (1, 1)


def test_verifiers_given_the_same_caches_share_their_work() -> None:
    """Caches handed in are the ones used (the external-suite tests share one warm pair across
    trust stores this way): a second verifier finds the first one's path."""
    chain = pki().issue([HOST]).chain_der
    paths, issuers = PathCache(), IssuerCache()
    first = Verifier(store(), paths=paths, issuers=issuers)
    second = Verifier(store(), paths=paths, issuers=issuers)
    assert (first.paths, first.issuers, second.paths, second.issuers) == (paths, issuers, paths, issuers)
    assert first.verify(chain, HOST, pki().now).valid
    assert second.verify(chain, HOST, pki().now).valid
    assert (paths.hits, paths.misses) == (1, 1)
    assert second.full_verifications == 0


def test_verify_chain_is_a_verification_with_nothing_remembered() -> None:
    """The one-off form gives the verdict a long-lived verifier gives, cold or warm."""
    p = pki()
    chain = p.issue([HOST]).chain_der
    warm = Verifier(store())
    for host in (HOST, "other.verifier.test", HOST):
        once = verify_chain(chain, host, store=store(), at=p.now)
        assert once == warm.verify(chain, host, p.now)
    assert warm.paths.hits == 2  # the path was found for both later hosts; each name is checked


def test_a_verifiers_known_intermediates_tell_an_incomplete_chain_from_an_unknown_issuer() -> None:
    p = pki()
    alone = (p.issue([HOST], kind="missing-intermediate").leaf_der,)
    junk_first = [b"not a certificate", p.intermediate.der]  # an unparsable one is skipped, not the end
    for known in ([p.intermediate.der], IntermediatePool.from_der([p.intermediate.der]), junk_first):
        assert Verifier(store(), known).verify(alone, HOST, p.now).reason is PkixReason.INCOMPLETE_CHAIN
    assert Verifier(store()).verify(alone, HOST, p.now).reason is PkixReason.UNKNOWN_ISSUER


def test_the_scans_smtp_prober_and_policy_fetcher_share_one_verifier(tmp_path: Path) -> None:
    """A chain the SMTP probe verified is remembered for the policy fetch (one per scan)."""
    intermediates = tmp_path / "intermediates.pem"
    intermediates.write_bytes(pki().intermediate_pems())
    cfg = ScanConfig(
        domains="list.txt",
        out=tmp_path / "r.ndjson",
        ehlo_name="scanner.verifier.test",
        trust_store="none",
        ca_files=(str(root_file()),),
        intermediates=tuple(
            cert.public_bytes(Encoding.DER) for cert in read_certificates(str(intermediates))
        ),
    )
    prober = smtp_prober(cfg)
    assert prober is not None
    verifier = prober.settings.verifier
    assert policy_fetcher(cfg, prober).verifier is verifier
    assert len(verifier.intermediates) == 2 and verifier.store.fingerprints == store().fingerprints
    assert smtp_prober(cfg).settings.verifier is not verifier  # type: ignore[union-attr]  # a new scan, a new one
