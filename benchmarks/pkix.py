"""PKIX verification alone: microseconds per chain for what a scan meets.

    python benchmarks/pkix.py [--chains 400] [--rounds 5]

Four kinds of verification, each over ``--chains`` leaves of one test PKI (root,
intermediate, ECDSA P-256 leaves, the chain presented as leaf + intermediate):

- ``new chain``: a new ``Verifier`` per chain, so each is a full verification
  (cryptography's server verifier: both signatures, every check);
- ``new leaf, known issuer``: one ``Verifier``; every leaf is new but its
  intermediate was verified before (one signature check, ``IssuerCache``);
- ``same chain, other host``: one ``Verifier``, one wildcard chain presented for
  ``--chains`` host names (``PathCache``: the name is checked, the path is not);
- ``refused (expired)``: a new ``Verifier`` per expired chain: the verifier's
  refusal plus the classification of why.

Medians over ``--rounds`` rounds; certificate parsing is warm (a scan parses a
chain once per probe; ``load_der`` memoises it), so this is verification only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from probes.tls.truststore import TrustStore, load_trust_store
from probes.tls.verify import PkixReason, Verifier
from testbed.pki import TestPki

Chain = tuple[bytes, ...]


def _store(pki: TestPki) -> TrustStore:
    path = Path(tempfile.mkdtemp(prefix="mxscan-pkix-bench-")) / "root.pem"
    path.write_bytes(pki.root_pem())
    return load_trust_store("none", [str(path)])


def _timed(work: Callable[[], int]) -> float:
    """CPU microseconds per verification of one pass of ``work`` (which returns how many it
    made): CPU time, not wall time, so that other processes on a shared machine count less."""
    started = time.process_time()
    count = work()
    return (time.process_time() - started) / count * 1e6


def _passes(
    store: TrustStore, leaves: list[Chain], shared: Chain, expired: list[Chain], at: dt.datetime
) -> dict[str, Callable[[], int]]:
    hosts = [f"mx{i}.bench.pkix.test" for i in range(len(leaves))]

    def new_chain() -> int:
        for chain, host in zip(leaves, hosts, strict=True):
            assert Verifier(store).verify(chain, host, at).valid
        return len(leaves)

    def known_issuer() -> int:
        verifier = Verifier(store)
        assert verifier.verify(leaves[0], hosts[0], at).valid
        for chain, host in zip(leaves[1:], hosts[1:], strict=True):
            assert verifier.verify(chain, host, at).valid
        return len(leaves) - 1

    def same_chain() -> int:
        verifier = Verifier(store)
        for host in hosts:
            assert verifier.verify(shared, host, at).valid
        return len(hosts)

    def refused() -> int:
        for chain, host in zip(expired, hosts, strict=True):
            assert Verifier(store).verify(chain, host, at).reason is PkixReason.EXPIRED
        return len(expired)

    return {
        "new chain": new_chain,
        "new leaf, known issuer": known_issuer,
        "same chain, other host": same_chain,
        "refused (expired)": refused,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chains", type=int, default=400, help="leaves per kind of verification")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (medians are printed)")
    args = parser.parse_args()
    pki = TestPki(label="pkix-bench")
    store = _store(pki)
    n = args.chains
    leaves = [pki.issue([f"mx{i}.bench.pkix.test"]).chain_der for i in range(n)]
    shared = pki.issue(["*.bench.pkix.test"]).chain_der
    expired = [pki.issue([f"mx{i}.bench.pkix.test"], kind="expired").chain_der for i in range(n)]
    passes = _passes(store, leaves, shared, expired, pki.now)
    for work in passes.values():
        work()  # parse every certificate once (load_der memoises), as a scan's probe has
    timings: dict[str, list[float]] = {name: [] for name in passes}
    for _ in range(args.rounds):
        for name, work in passes.items():
            timings[name].append(_timed(work))
    print(f"PKIX verification, {n} chains per kind, medians of {args.rounds} rounds (CPU µs per chain)")
    for name, values in timings.items():
        spread = " ".join(f"{v:.0f}" for v in sorted(values))
        print(f"  {name:26} {statistics.median(values):8.1f}   ({spread})")


if __name__ == "__main__":
    main()
