"""Installing Debian 12's Postfix and Exim side by side, and running their daemons.

Postfix, Exim and OpenSMTPD all provide ``mail-transport-agent``, so apt
installs only one of them (Debian 12).  Postfix comes from
``apt-get install postfix``; Exim's unmodified .debs are fetched with
``apt-get download`` and unpacked with ``dpkg -x`` into a private folder
under the cache directory, and run from there with a config of our own.
Both steps are idempotent and cheap the second time: Postfix is looked up
with dpkg-query, the unpacked Exim is kept behind a stamp file.

``apt-get`` runs with ``--no-remove`` (it never replaces an MTA that is
already installed) and a dpkg lock timeout (other sessions may be installing
at the same time).  A ``policy-rc.d`` that exits 101 keeps the install
scripts from starting the system-wide daemons; it is removed again when we
were the ones who created it.

The second half holds what both instance types share: writing their TLS
files, waiting for the SMTP greeting, and stopping a daemon by its PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_CACHE_DIR",
    "EXIM_GROUP",
    "EXIM_LIBRARIES",
    "EXIM_PACKAGES",
    "EXIM_USER",
    "POSTFIX_BINARY",
    "InstallError",
    "RealMtas",
    "install_blocker",
    "install_real_mtas",
    "pid_alive",
    "stop_pid",
    "wait_for_greeting",
]

#: Where the unpacked Exim lives between runs; override with MXSCAN_REALMTA_CACHE.
DEFAULT_CACHE_DIR = Path("/var/cache/mxscan-testbed")

#: The .debs unpacked for Exim (binary, helper scripts, default config files).
EXIM_PACKAGES = ("exim4-daemon-light", "exim4-base", "exim4-config")
#: exim4-daemon-light's shared-library dependencies (Debian 12); plain libraries
#: that conflict with nothing, so apt installs them normally.  libidn12 is the one
#: a minimal image usually lacks.
EXIM_LIBRARIES = (
    "libc6",
    "libcrypt1",
    "libdb5.3",
    "libgnutls-dane0",
    "libgnutls30",
    "libidn12",
    "libidn2-0",
    "libnsl2",
    "libpcre2-8-0",
)
#: The system user and group exim4-base's postinst creates; Exim drops to it.
EXIM_USER = EXIM_GROUP = "Debian-exim"

POSTFIX_BINARY = Path("/usr/sbin/postfix")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
#: Waits for the dpkg lock when another apt run is in progress (seconds).
DPKG_LOCK_TIMEOUT = 600
APT_TIMEOUT = 1200


class InstallError(RuntimeError):
    """Installing or unpacking a server failed; the message says which step."""


@dataclass(frozen=True, slots=True)
class RealMtas:
    """Where the installed servers are.

    Fields:
      postfix: the ``postfix`` control command (from the postfix package).
      exim: the unpacked ``exim4`` binary.
      exim_version: the Exim package version that was unpacked.
      seconds: how long ``install_real_mtas`` took (near zero when cached).
    """

    postfix: Path
    exim: Path
    exim_version: str
    seconds: float


def install_blocker() -> str | None:
    """Why the servers cannot be installed here, or None if they can."""
    if os.environ.get("MXSCAN_NO_APT", "0") != "0":  # ./dev --no-system-packages
        return "MXSCAN_NO_APT is set: installing Postfix and unpacking Exim would change the system"
    if os.geteuid() != 0:
        return "installing Postfix and Exim needs root"
    for tool in ("apt-get", "dpkg", "dpkg-query"):
        if shutil.which(tool) is None:
            return f"{tool} is not available (not a Debian system)"
    return None


def _run(argv: Sequence[str], *, cwd: Path | None = None, step: str) -> str:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{step}: {exc}") from None
    if done.returncode != 0:
        tail = " ".join((done.stdout + done.stderr).split())[-600:]
        raise InstallError(f"{step}: {' '.join(argv)} exited {done.returncode}: {tail}")
    return done.stdout


def _installed(package: str) -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and "install ok installed" in done.stdout


def _apt(args: Sequence[str], step: str, cwd: Path | None = None) -> str:
    """``apt-get`` with the lock timeout; one ``apt-get update`` if a package is unknown."""
    argv = ["apt-get", "-q", "-o", f"DPkg::Lock::Timeout={DPKG_LOCK_TIMEOUT}", *args]
    try:
        return _run(argv, cwd=cwd, step=step)
    except InstallError as exc:
        if "Unable to locate package" not in str(exc) and "no installation candidate" not in str(exc):
            raise
    _run(["apt-get", "-q", "-o", f"DPkg::Lock::Timeout={DPKG_LOCK_TIMEOUT}", "update"], step="apt-get update")
    return _run(argv, cwd=cwd, step=step)


@contextlib.contextmanager
def _daemons_kept_down() -> Iterator[None]:
    """A policy-rc.d that exits 101 for the duration, unless one is already there."""
    created = False
    if not POLICY_RC_D.exists():
        POLICY_RC_D.write_text(
            "#!/bin/sh\n# mxscan testbed: never start daemons from package scripts\nexit 101\n"
        )
        POLICY_RC_D.chmod(0o755)
        created = True
    try:
        yield
    finally:
        if created:
            POLICY_RC_D.unlink(missing_ok=True)


def _apt_install(packages: Sequence[str], step: str) -> None:
    missing = [p for p in packages if not _installed(p)]
    if missing:
        with _daemons_kept_down():
            # --no-remove: never let apt swap out an MTA that is already installed.
            _apt(["install", "-y", "--no-install-recommends", "--no-remove", *missing], step)


def _ensure_exim_user() -> None:
    """Create the user exim4-base's postinst would (same options)."""
    if _lookup_ok(["getent", "passwd", EXIM_USER]):
        return
    if shutil.which("adduser"):
        argv = ["adduser", "--system", "--group", "--quiet", "--home", "/var/spool/exim4"]
        argv += ["--no-create-home", "--disabled-login", "--force-badname", EXIM_USER]
    else:
        argv = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/var/spool/exim4"]
        argv += ["--shell", "/usr/sbin/nologin", EXIM_USER]
    _run(argv, step="create the Debian-exim user")


def _lookup_ok(argv: Sequence[str]) -> bool:
    return subprocess.run(list(argv), capture_output=True, check=False).returncode == 0


def _unpack_exim(cache_dir: Path) -> tuple[Path, str]:
    home = cache_dir / "exim"
    debs, root = home / "debs", home / "root"
    binary = root / "usr" / "sbin" / "exim4"
    stamp = home / "unpacked"
    if binary.exists() and stamp.exists():
        return binary, stamp.read_text().strip()
    shutil.rmtree(home, ignore_errors=True)
    debs.mkdir(parents=True)
    # apt-get download writes into its working directory.  APT::Sandbox::User=root:
    # the _apt user may not be allowed to write there.
    _apt(["-o", "APT::Sandbox::User=root", "download", *EXIM_PACKAGES], "apt-get download exim4", debs)
    files = sorted(debs.glob("*.deb"))
    if not files:
        raise InstallError("apt-get download exim4: no .deb files appeared")
    for deb in files:
        _run(["dpkg", "-x", str(deb), str(root)], step=f"dpkg -x {deb.name}")
    if not binary.exists():
        raise InstallError(f"unpacked Exim has no {binary}")
    version = next((f.name.split("_")[1] for f in files if f.name.startswith("exim4-daemon-light_")), "")
    stamp.write_text(version + "\n")
    return binary, version


def install_real_mtas(cache_dir: Path | None = None) -> RealMtas:
    """Install Postfix, unpack Exim and create its user; idempotent.

    Raises ``InstallError`` when a step fails (no package lists, no mirror,
    another MTA in the way).
    """
    started = time.perf_counter()
    blocker = install_blocker()
    if blocker:
        raise InstallError(blocker)
    cache = cache_dir or Path(os.environ.get("MXSCAN_REALMTA_CACHE", str(DEFAULT_CACHE_DIR)))
    _apt_install(["postfix", *EXIM_LIBRARIES], "apt-get install postfix and Exim's libraries")
    if not POSTFIX_BINARY.exists():
        raise InstallError(f"postfix is installed but {POSTFIX_BINARY} is missing")
    _ensure_exim_user()
    binary, version = _unpack_exim(cache)
    return RealMtas(POSTFIX_BINARY, binary, version, time.perf_counter() - started)


# -- lifecycle helpers shared by the instance types ---------------------------------------------


def wait_for_greeting(
    address: str, port: int, *, timeout: float, expect: str = "", alive: Callable[[], bool] | None = None
) -> str:
    """Connect until the server sends a ``220`` greeting line containing ``expect``
    (its host name: another server on the same address:port does not count);
    return that line.

    ``alive`` (says whether the daemon still runs) lets the
    wait end early when the daemon died instead of answering.
    """
    deadline = time.monotonic() + timeout
    last = "no attempt"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"the server exited before answering on {address}:{port} ({last})")
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(max(0.1, min(2.0, deadline - time.monotonic())))
                sock.connect((address, port))
                line = sock.recv(1024).decode("ascii", "replace").splitlines()[0:1]
                if line and line[0].startswith("220") and expect in line[0]:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"QUIT\r\n")
                        sock.recv(1024)
                    return line[0]
                last = f"greeting {line!r}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)
    raise TimeoutError(f"{address}:{port} gave no 220 greeting within {timeout} s ({last})")


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs.  A zombie counts as gone: a daemon that detached from
    us is reaped by PID 1, which here may take a second or two to do it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may contain spaces.
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def stop_pid(pid: int, *, timeout: float, reap: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM ``pid``, wait for it to go, SIGKILL it if it does not.

    ``reap`` is the Popen when the process is our child, so it is waited for
    (no zombie left behind that ``pid_alive`` would still see).
    """
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _gone(pid, timeout, reap):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _gone(pid, 5.0, reap)


def _gone(pid: int, timeout: float, reap: subprocess.Popen[bytes] | None) -> bool:
    if reap is not None:
        try:
            reap.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)
