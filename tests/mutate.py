"""Mutation testing of one pure-core module with its own unit tests (``./dev mutate MODULE``).

mutmut (the ``mutation`` extra) changes the module one small edit at a time (``>=`` into
``>``, ``and`` into ``or``, a constant into another …) and runs the module's unit tests
against each mutant: a mutant no test fails on ("survived") is a behaviour nothing pins.

It runs in a copy of the working tree (tracked files as they are on disk, in a temporary
directory), never in the tree itself: mutmut writes a ``mutants/`` directory next to the
code, and other work in the tree must never import a mutant.  The score and the
survivors are printed; ``--keep`` leaves the copy for ``mutmut show <name>`` there.

Usage: python -m tests.mutate MODULE [--tests TEST_FILE ...] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "probes", "mxscan", "report", "testbed")

#: Module -> the unit tests that pin its behaviour (the files a mutant must fail).
TESTS: dict[str, tuple[str, ...]] = {
    "probes/mtasts/match.py": ("test_mtasts_match.py", "test_edge_behaviours.py"),
    "probes/mtasts/record.py": ("test_mtasts_record.py", "test_mtasts_record_edges.py"),
    "probes/mtasts/policy.py": ("test_mtasts_policy.py", "test_mtasts_policy_edges.py"),
    "probes/dane/chain.py": (
        "test_dane.py",
        "test_dane_edges.py",
        "test_dane_chain_edges.py",
        "test_dane_path_building.py",
        "test_dane_openssl_vectors.py",
        "test_edge_behaviours.py",
    ),
    "probes/dane/record.py": ("test_dane.py", "test_dane_edges.py"),
    "probes/dane/tlsa.py": ("test_dane.py", "test_dane_edges.py", "test_edge_behaviours.py"),
    "probes/dns/wire.py": ("test_dns_wire.py", "test_dns_wire_edges.py"),
    "probes/dns/classify.py": ("test_dns_classify.py",),
    "probes/smtp/reply.py": ("test_smtp_reply.py", "test_edge_behaviours.py"),
    "probes/smtp/ehlo.py": ("test_smtp_ehlo.py",),
    "probes/tls/names.py": ("test_tls_names.py", "test_tls_verify.py", "test_tls_cn_fallback.py"),
    "probes/tls/verify.py": (
        "test_tls_verify.py",
        "test_tls_cn_fallback.py",
        "test_edge_behaviours.py",
        "test_tls_issuer_cache.py",
        "test_tls_cache_edges.py",
        "test_tls_verify_edges.py",
        "test_tls_verifier.py",
    ),
    "probes/transport.py": ("test_transport_rollups.py", "test_edge_behaviours.py", "test_dane.py"),
    "probes/posture.py": ("test_posture.py", "test_posture_edges.py"),
    "probes/rescan.py": ("test_rescan_rule.py", "test_rescan_edges.py", "test_retry.py"),
    "probes/providers.py": ("test_providers.py", "test_providers_edges.py", "test_edge_behaviours.py"),
    "engine/inputs.py": ("test_inputs.py", "test_inputs_edges.py"),
    "engine/limits.py": ("test_limits.py", "test_limits_release.py", "test_limits_edges.py"),
    "engine/checkpoint.py": (
        "test_checkpoint.py",
        "test_checkpoint_edges.py",
        "test_compressed_readers.py",
        "test_results_refs.py",
        "test_edge_behaviours.py",
    ),
    "engine/backoff.py": ("test_backoff.py", "test_backoff_edges.py"),
}


def _copy_tree(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = Path(os.fsdecode(raw))
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _config(module: str, tests: list[str]) -> str:
    return "\n".join(
        [
            "[mutmut]",
            "source_paths=",
            *(f"    {p}" for p in PACKAGES),
            "only_mutate=",
            f"    {module}",
            "pytest_add_cli_args_test_selection=",
            *(f"    {t}" for t in tests),
            "pytest_add_cli_args=",
            "    -p",
            "    no:cacheprovider",
            "    -x",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev mutate", description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="a module path, e.g. probes/mtasts/match.py")
    parser.add_argument("--tests", nargs="+", help="unit test files (default: the module's own)")
    parser.add_argument("--keep", action="store_true", help="keep the copy (mutmut show works there)")
    args = parser.parse_args(argv)
    module = args.module.removeprefix("./")
    if not (ROOT / module).is_file() or not module.endswith(".py"):
        parser.error(f"no such module: {module}")
    names = args.tests or TESTS.get(module)
    if not names:
        parser.error(f"no unit tests known for {module}: pass --tests")
    tests = [t if "/" in t else f"tests/unit/{t}" for t in names]
    work = Path(tempfile.mkdtemp(prefix="mxscan-mutate-"))
    try:
        _copy_tree(work)
        if (ROOT.parent / "shared").is_dir():
            # Tests read external vectors from ../shared beside the checkout; mutmut runs them
            # from work/mutants/, whose ../shared is this link.
            (work / "shared").symlink_to(ROOT.parent / "shared")
        (work / "setup.cfg").write_text(_config(module, tests))
        mutmut = [sys.executable, "-m", "mutmut"]
        print(f"mutating {module} against {' '.join(tests)} in {work} (one process) ...", flush=True)
        with (work / "mutmut.log").open("wb") as log:  # its progress spinner: kept out of the summary
            subprocess.run(
                [*mutmut, "run", "--max-children", "1"], cwd=work, stdout=log, stderr=log, check=False
            )
        listed = subprocess.run(
            [*mutmut, "results", "--all", "true"], cwd=work, capture_output=True, text=True, check=False
        ).stdout
        states = Counter(m.group(2) for m in re.finditer(r"^\s*(\S+): (\S+)", listed, re.M))
        total = sum(states.values())
        killed = states["killed"] + states["timeout"]
        print(
            f"\n{module}: {killed}/{total} mutants killed "
            f"({100 * killed / max(total, 1):.1f}%) {dict(states)}"
        )
        for line in listed.splitlines():
            if line.strip().endswith(": survived"):
                print("  survived:", line.strip().removesuffix(": survived"))
        if args.keep:
            print(f"copy kept in {work} (cd there; {sys.executable} -m mutmut show NAME)")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
