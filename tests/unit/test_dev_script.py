"""``./dev``'s footprint on the system (issue #18 item 7), checked by running its own functions.

The script is sourced in bash (it defines its functions and runs nothing when
sourced) with stand-ins for the system's package and service tools first on
PATH (``apt-get``, ``dpkg-query``, ``systemctl``, ``id``): they record what
they were asked and keep a fake package database, so nothing on this machine
is installed or changed.  Its policy-rc.d path is pointed into the test's
directory the same way (a shell variable set after sourcing).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "dev"

FAKES = {
    # The package database: one installed package per line; dpkg -L from files/<package>.
    "dpkg-query": """#!/bin/sh
case "$1" in
  -W) while read -r p; do echo "install ok installed $p"; done < "$FAKE/installed" ;;
  -L) cat "$FAKE/files/$2" 2>/dev/null || exit 1 ;;
  *) exit 2 ;;
esac
""",
    # Records each call and what policy-rc.d answered at that moment; "installs" like dpkg would,
    # enabling the services of what it installs (as Debian's postinst scripts do).
    "apt-get": """#!/bin/sh
if [ -x "$POLICY" ]; then "$POLICY"; echo "apt-get $* (policy-rc.d exits $?)" >> "$FAKE/calls"
else echo "apt-get $* (no policy-rc.d)" >> "$FAKE/calls"; fi
[ "$1" = install ] || exit 0
for p in "$@"; do
  case "$p" in -*|install) continue ;; esac
  echo "$p" >> "$FAKE/installed"; cat "$FAKE/deps/$p" >> "$FAKE/installed" 2>/dev/null
  for dep in "$p" $(cat "$FAKE/deps/$p" 2>/dev/null); do
    grep -v @ "$FAKE/files/$dep" 2>/dev/null | grep -o '[^/]*\\.service$' >> "$FAKE/enabled"  # not templates
  done
done
exit "${FAKE_APT_EXIT:-0}"
""",
    "systemctl": """#!/bin/sh
case "$1" in
  is-enabled) grep -qxF "$2" "$FAKE/enabled" && echo enabled || echo disabled ;;
  disable) [ "$2" = --quiet ] && shift; echo "systemctl disable $2" >> "$FAKE/calls"
           grep -vxF "$2" "$FAKE/enabled" > "$FAKE/enabled.new"; mv "$FAKE/enabled.new" "$FAKE/enabled" ;;
  *) exit 1 ;;
esac
""",
    "id": """#!/bin/sh
[ "$1" = -u ] && echo 0 || exec /usr/bin/id "$@"
""",
}


@dataclass
class FakeSystem:
    root: Path

    @property
    def policy(self) -> Path:
        return self.root / "policy-rc.d"

    def lines(self, name: str) -> list[str]:
        path = self.root / name
        return path.read_text().splitlines() if path.exists() else []

    def run(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``script`` in bash after sourcing ./dev, as root, with the fakes first on PATH."""
        prelude = f'source "{DEV}"; POLICY_RC_D="{self.policy}"; '
        environ = {**os.environ, "FAKE": str(self.root), "POLICY": str(self.policy), **env}
        environ["PATH"] = f"{self.root / 'bin'}{os.pathsep}{os.environ['PATH']}"
        environ.pop("MXSCAN_NO_APT", None)
        environ.update(env)
        return subprocess.run(["bash", "-c", prelude + script], capture_output=True, text=True, timeout=60,
                              env=environ, cwd=self.root)  # fmt: skip


def _packages() -> list[str]:
    done = subprocess.run(["bash", "-c", f'source "{DEV}"; printf "%s\\n" "${{APT_PACKAGES[@]}}"'],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout.split()


@pytest.fixture
def system(tmp_path: Path) -> FakeSystem:
    """Every package ./dev wants is installed except nginx-light (pulling in nginx-common) and
    postfix; unbound was installed earlier and its service is enabled (not ours to touch)."""
    (tmp_path / "bin").mkdir()
    for name, text in FAKES.items():
        path = tmp_path / "bin" / name
        path.write_text(text)
        path.chmod(0o755)
    wanted = _packages()
    (tmp_path / "installed").write_text(
        "".join(f"{p}\n" for p in wanted if p not in ("nginx-light", "postfix"))
    )
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "nginx-light").write_text("nginx-common\n")
    files = tmp_path / "files"
    files.mkdir()
    (files / "nginx-common").write_text("/etc/init.d/nginx\n/lib/systemd/system/nginx.service\n/etc/nginx\n")
    (files / "postfix").write_text(
        "/etc/init.d/postfix\n/lib/systemd/system/postfix.service\n/lib/systemd/system/postfix@.service\n"
    )
    (files / "unbound").write_text("/etc/init.d/unbound\n/lib/systemd/system/unbound.service\n")
    (tmp_path / "enabled").write_text("unbound.service\n")
    return FakeSystem(tmp_path)


def test_dev_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(DEV)], capture_output=True, check=False).returncode == 0


def test_setup_blocks_daemons_only_while_apt_runs_and_disables_the_services_it_added(
    system: FakeSystem,
) -> None:
    done = system.run("need_apt")
    assert done.returncode == 0, done.stderr
    install = [c for c in system.lines("calls") if c.startswith("apt-get") and " install " in c]
    assert len(install) == 1 and "nginx-light postfix" in install[0]
    assert install[0].endswith("(policy-rc.d exits 101)")  # no daemon started by package scripts
    assert not system.policy.exists()  # and no policy left behind to block every later start
    assert sorted(c for c in system.lines("calls") if c.startswith("systemctl")) == [
        "systemctl disable nginx.service",
        "systemctl disable postfix.service",
    ]
    assert system.lines("enabled") == ["unbound.service"]  # installed before: left as it was
    assert "nginx.service postfix.service" in done.stderr or "postfix.service nginx.service" in done.stderr


def test_a_failed_install_still_removes_the_policy_it_created(system: FakeSystem) -> None:
    done = system.run("need_apt", FAKE_APT_EXIT="100")
    assert done.returncode == 100
    assert any("(policy-rc.d exits 101)" in c for c in system.lines("calls"))
    assert not system.policy.exists()


def test_a_policy_file_that_was_already_there_is_left_alone(system: FakeSystem) -> None:
    theirs = "#!/bin/sh\n# Docker's: no services in images\nexit 101\n"
    system.policy.write_text(theirs)
    system.policy.chmod(0o755)
    done = system.run("need_apt")
    assert done.returncode == 0, done.stderr
    assert system.policy.read_text() == theirs


def test_no_system_packages_never_calls_apt_and_says_what_is_skipped(system: FakeSystem) -> None:
    # setup's own venv step is not what this checks: only its package step runs.
    done = system.run("setup() { need_apt; }; main --no-system-packages setup")
    assert done.returncode == 0, done.stderr
    assert system.lines("calls") == [] and not system.policy.exists()
    assert "not installing nginx-light postfix" in done.stderr
    assert "test_tier_b_nginx" in done.stderr and "test_real_mtas" in done.stderr
    done = system.run("need_apt", MXSCAN_NO_APT="1")
    assert done.returncode == 0 and system.lines("calls") == []


def test_no_system_packages_reaches_the_tests_that_would_install_real_mtas(system: FakeSystem) -> None:
    done = system.run(
        'setup() { :; }; cmd_test() { echo "MXSCAN_NO_APT=$MXSCAN_NO_APT"; }; main --no-system-packages test'
    )
    assert done.stdout.strip() == "MXSCAN_NO_APT=1"
    from testbed.realmta.install import install_blocker

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MXSCAN_NO_APT", "1")
        blocker = install_blocker()
    assert blocker is not None and "MXSCAN_NO_APT" in blocker
