"""No silent skips of real-server tests (issue #19): tests/skipguard.py and ./dev's switch.

The plugin is exercised on a throw-away test directory run by a child pytest, so the skips
it judges are real pytest skips (marker, call, module-level importorskip).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.skipguard import ENV, what_to_install

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = """
import pytest

@pytest.mark.skipif(True, reason="curl not installed")
def test_needs_curl():
    pass

def test_needs_root():
    pytest.skip("needs root (port 53)")

def test_not_about_this_machine():
    pytest.skip("nginx cannot do 'garbage': it always answers with HTTP")

def test_runs():
    assert True
"""

SAMPLE_IMPORT = """
import pytest
pytest.importorskip("mxscan_no_such_module_anywhere")

def test_never_collected():
    pass
"""


def _child_pytest(tmp_path: Path, env_value: str | None, *files: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "test_sample_import.py").write_text(SAMPLE_IMPORT)
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["PYTHONPATH"] = str(ROOT)
    if env_value is not None:
        env[ENV] = env_value
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.skipguard",
            "-p",
            "no:cacheprovider",
            "-rs",
            "-q",
            *files,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_skip_for_a_missing_package_or_root_fails_when_real_servers_are_required(tmp_path: Path) -> None:
    done = _child_pytest(tmp_path, "1", "test_sample.py")
    out = done.stdout
    assert done.returncode == 1, out
    assert "apt-get install -y --no-install-recommends curl" in out
    assert "run as root" in out
    # One failure per machine-dependent skip; the other skip stays a skip, the test runs.
    assert "1 failed, 1 passed, 1 skipped, 1 error" in out, out  # setup error: the marker; failure: the call
    assert "nginx cannot do 'garbage'" in out


def test_module_skipped_for_a_missing_test_extra_fails_collection_when_required(tmp_path: Path) -> None:
    done = _child_pytest(tmp_path, "1", "test_sample_import.py")
    assert done.returncode != 0, done.stdout
    assert "a real-server test was skipped (could not import 'mxscan_no_such_module_anywhere'" in done.stdout
    assert ".venv/bin/pip install -e '.[test]'" in done.stdout


@pytest.mark.parametrize("env_value", [None, "0", ""], ids=["unset", "zero", "empty"])
def test_locally_the_skip_message_says_what_to_install(tmp_path: Path, env_value: str | None) -> None:
    done = _child_pytest(tmp_path, env_value)
    out = done.stdout
    assert done.returncode == 0, out
    assert "curl not installed [to run it: apt-get install -y --no-install-recommends curl]" in out
    assert "needs root (port 53) [to run it: run as root]" in out
    assert "1 passed, 4 skipped" in out, out


REASON_CASES = [
    ("curl not installed", ("curl",)),
    ("openssl or dig not installed", ("openssl", "dnsutils")),
    ("dig not installed (apt-get install dnsutils)", ("dnsutils",)),
    ("nsd/unbound not installed", ("nsd unbound",)),
    (
        "tier (b) needs root (port 53) and Debian's nsd, unbound and nginx (./dev test installs them)",
        ("run as root", "nsd unbound", "nginx-light"),
    ),
    ("'hang' needs nginx's echo module (libnginx-mod-http-echo)", ("libnginx-mod-http-echo",)),
    ("chromium is not installed (apt-get install -y chromium)", ("chromium",)),
    ("needs root (port 443/53) and postfix-mta-sts-resolver", ("run as root", "postfix-mta-sts-resolver")),
    (
        "cannot install Postfix and Exim here: installing Postfix and Exim needs root",
        ("run as root", "apt-get"),
    ),
    ("could not import 'duckdb': No module named 'duckdb'", ("[test]",)),
    ("nginx cannot do 'garbage': nginx always answers with an HTTP status line", ()),
    ("process substitution needs bash", ()),
]


@pytest.mark.parametrize(("reason", "wanted"), REASON_CASES, ids=[c[0][:40] for c in REASON_CASES])
def test_skip_reasons_name_what_to_install(reason: str, wanted: tuple[str, ...]) -> None:
    fixes = what_to_install(reason)
    assert len(fixes) == len(wanted)
    for fix, word in zip(fixes, wanted, strict=True):
        assert word in fix


#: Skips written in tests/ that are not about this machine lacking a package or root, and why.
NOT_ABOUT_THIS_MACHINE = {
    "nginx cannot do": "a limit of nginx itself: no package changes it",
    "process substitution needs bash": "bash is on every machine ./dev runs on",
    "systemd-analyze is not installed": "a container CI has no systemd; the unit files are checked "
    "by their own parser test, systemd-analyze only adds a second opinion",
    "<message>": "OpenSSL/x509-limbo vectors missing: a failure unless MXSCAN_ALLOW_MISSING_VECTORS=1 "
    "opts into the skip explicitly",
}


def _skip_reasons(source: str) -> list[str]:
    """Every skip reason in a test module: skipif(reason=...), pytest.skip(...), importorskip."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        args: list[ast.expr] = []
        if name == "skipif":
            args = [k.value for k in node.keywords if k.arg == "reason"]
        elif name == "skip":
            args = node.args[:1] + [k.value for k in node.keywords if k.arg in ("reason", "msg")]
        elif name == "importorskip":
            reason = [k.value for k in node.keywords if k.arg == "reason"]
            args = reason or [ast.Constant(f"could not import '{ast.literal_eval(node.args[0])}'")]
        for arg in args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append(arg.value)
            elif isinstance(arg, ast.JoinedStr):
                found.append("".join(v.value for v in arg.values if isinstance(v, ast.Constant)))
            else:
                found.append("<message>")
    return found


def test_every_skip_in_the_suite_is_either_enforced_or_known_not_to_be_about_this_machine() -> None:
    """A new skip for a missing package must be added to skipguard.NEEDS, or CI would skip it
    silently; a deliberate other skip is listed above with its reason."""
    unexplained = []
    seen = 0
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for reason in _skip_reasons(path.read_text()):
            seen += 1
            known = any(reason.startswith(k) or k in reason for k in NOT_ABOUT_THIS_MACHINE)
            if not what_to_install(reason) and not known:
                unexplained.append(f"{path.relative_to(ROOT)}: {reason!r}")
    assert seen >= 20  # the scan finds the suite's skips (there are ~30)
    assert not unexplained, "\n".join(unexplained)


def _dev_switch(tmp_path: Path, *, uid: int, no_apt: str | None, preset: str | None) -> str:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "id").write_text(f'#!/bin/sh\n[ "$1" = -u ] && echo {uid} || exec /usr/bin/id "$@"\n')
    (fake / "id").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in (ENV, "MXSCAN_NO_APT")}
    env["PATH"] = f"{fake}:{env.get('PATH', '/usr/bin:/bin')}"
    if no_apt is not None:
        env["MXSCAN_NO_APT"] = no_apt
    if preset is not None:
        env[ENV] = preset
    script = f'source "{ROOT / "dev"}"; require_real_servers; echo "[${{{ENV}-unset}}]"'
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("uid", "no_apt", "preset", "expected"),
    [
        (0, None, None, "[1]"),
        (0, "0", None, "[1]"),
        (0, "1", None, "[unset]"),
        (1000, None, None, "[unset]"),
        (0, None, "0", "[0]"),
    ],
    ids=["root", "root-apt-allowed", "no-system-packages", "not-root", "explicitly-off"],
)
def test_dev_test_requires_real_servers_as_root_with_packages(
    tmp_path: Path, uid: int, no_apt: str | None, preset: str | None, expected: str
) -> None:
    assert _dev_switch(tmp_path, uid=uid, no_apt=no_apt, preset=preset) == expected


def test_ci_requires_real_servers() -> None:
    """.ci/run fails a run that skipped a real-server test, root or not."""
    text = (ROOT / ".ci" / "run").read_text()
    assert f"export {ENV}=1" in text
