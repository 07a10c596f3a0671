"""The dependency direction of STYLE.md, checked by walking every import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"engine", "probes", "testbed", "report", "mxscan", "scaleout"}

#: package -> our packages it may import
ALLOWED = {
    "engine": {"engine"},
    "probes": {"engine", "probes"},
    "testbed": {"testbed"},
    "report": {"engine", "probes", "report"},
    "mxscan": OURS,
    #: beyond one machine (static shards, their merge, a Ray cluster): a second composition root
    "scaleout": OURS,
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imports(path) - ALLOWED[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_walker_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import probes.dns\nfrom engine.status import Status\nimport os\n")
    assert _imports(sample) == {"probes", "engine"}


#: The per-domain plan and the polite prober live beside the probes (issue #15) and use only
#: these pieces of the engine; everything else they drive comes through probes/interfaces.py.
ENGINE_PIECES = {
    "probes/plan.py": {"engine.peertext", "engine.scheduler", "engine.singleflight", "engine.status"},
    "probes/smtp/polite.py": {"engine.backoff", "engine.exclude", "engine.limits", "engine.status"},
    "probes/interfaces.py": set(),
}


def _engine_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] == "engine"}


@pytest.mark.parametrize("module", sorted(ENGINE_PIECES))
def test_the_plan_and_the_polite_prober_use_only_their_engine_pieces(module: str) -> None:
    assert _engine_modules(ROOT / module) <= ENGINE_PIECES[module]


def test_the_composition_root_defines_no_plan_and_no_politeness() -> None:
    """mxscan/ wires; the plan and the throttling rules are not defined there again."""
    defined = {
        node.name
        for path in (ROOT / "mxscan").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    }
    plan_and_politeness = {"Pipeline", "PoliteProber", "Unresponsive", "RetryPolicy", "CorrelatedSignals"}
    assert not defined & {*plan_and_politeness, "HostLines", "WrittenProbe"}


def test_the_composition_root_holds_no_rescan_rule() -> None:
    """The rescan rule of --retry-unknown is a question of the record (probes/rescan.py, through
    the one reduction probes.posture.answers) and merging a retry pass is file work
    (engine/retrypass.py): mxscan/ neither defines them again nor reduces records itself."""
    defined, reduces = set(), []
    for path in sorted((ROOT / "mxscan").rglob("*.py")):
        tree = ast.parse(path.read_text())
        defined |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        reduces += [
            f"{path.relative_to(ROOT)} imports {node.module}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "probes.posture"
        ]
    assert not defined & {"needs_retry", "RescanRules", "RetryRun", "RetryPass"}
    assert not reduces


def test_the_engine_holds_no_mail_provider_data() -> None:
    """engine/ is blind to protocols and to whom it scans: which mail providers are big is
    data beside the provider attribution (probes/providers.py), handed to the engine."""
    from probes.providers import BUILTIN_OVERRIDES, STUDY_TOP_PROVIDERS

    providers = {*STUDY_TOP_PROVIDERS, *(o.provider for o in BUILTIN_OVERRIDES)}
    literals = {
        f"{path.relative_to(ROOT)}: {node.value}"
        for path in sorted((ROOT / "engine").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in providers
    }
    assert not literals


def test_the_product_imports_no_benchmark_only_package() -> None:
    """aiodns and aiosmtplib are the ``bench`` extra (pyproject.toml): only the benchmarks that
    measure our DNS and SMTP clients against them import them."""
    bench_only = {"aiodns", "aiosmtplib"}
    offenders = []
    for package in sorted(OURS):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                where = path.relative_to(ROOT)
                offenders += [f"{where}: {n}" for n in names if n.split(".")[0] in bench_only]
    assert not offenders
