"""A private Postfix instance on one loopback address, for the scanner to probe.

Each instance has its own ``config_directory`` (a main.cf and master.cf we
render), ``queue_directory`` and ``data_directory`` under its state dir and
is driven with ``postfix -c DIR start|stop``, so several run side by side
(each master.cf binds only its own address:port) and the system-wide
``/etc/postfix`` is never touched.

Choices that keep it self-contained:

* ``maillog_file`` with the ``postlog`` service (Postfix >= 3.4): logs go to
  a file in the state dir through postlogd, no syslog needed; the state dir
  must be listed in ``maillog_file_prefixes`` (default "/var, /dev/stdout").
* ``inet_interfaces = loopback-only``: Postfix refuses to start when an
  address in ``inet_interfaces`` is not configured on an interface, and only
  127.0.0.1 is (the rest of 127/8 routes to lo without being an interface
  address).  master.cf names the instance's own address:port instead.
* ``postfix(1)`` reports start-up errors on stderr only when stderr is a
  terminal (else to syslog, which may not exist): it runs on a pty here so
  that ``start()`` can say why it failed.
* ``smtpd_peername_lookup = no``: smtpd would otherwise reverse-resolve the
  scanner's 127.x address through the system resolver (which is not on
  loopback).
* no chroot (the state dir is not a chroot jail); no relaying and no local
  delivery: every recipient is rejected, so nothing is ever queued.
* ``smtpd_tls_security_level = may`` with the given chain and key
  (RFC 3207 opportunistic STARTTLS), or ``none``: STARTTLS not offered.
"""

from __future__ import annotations

import ipaddress
import os
import pty
import select
import shutil
import subprocess
import time
from pathlib import Path

from testbed.realmta.install import POSTFIX_BINARY, pid_alive, stop_pid
from testbed.realmta.instance import MtaInstance

__all__ = ["PostfixInstance", "render_main_cf", "render_master_cf", "run_on_pty"]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# The services a receive-only smtpd talks to (trivial-rewrite, cleanup, anvil,
# tlsmgr, postlogd …), as in Debian's master.cf but with chroot off.
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _endpoint(address: str, port: int) -> str:
    ip = ipaddress.ip_address(address)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def render_master_cf(address: str, port: int) -> str:
    """master.cf: smtpd on exactly ``address:port``, plus its helper services."""
    return f"{_endpoint(address, port)} inet n - n - - smtpd\n{_SERVICES}"


def render_main_cf(
    *,
    address: str,
    hostname: str,
    state_dir: Path,
    cert_file: Path | None,
    key_file: Path | None,
) -> str:
    """main.cf for one instance; TLS is offered exactly when a cert and key are given."""
    ip = ipaddress.ip_address(address)
    lines = {
        "compatibility_level": "3.6",
        "queue_directory": str(state_dir / "queue"),
        "data_directory": str(state_dir / "data"),
        # Debian's compiled-in locations, stated so nothing depends on /etc/postfix/main.cf.
        "command_directory": "/usr/sbin",
        "daemon_directory": "/usr/lib/postfix/sbin",
        "shlib_directory": "/usr/lib/postfix",
        "meta_directory": "/etc/postfix",
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "myhostname": hostname,
        "mydomain": hostname.partition(".")[2] or hostname,
        "myorigin": "$myhostname",
        "mydestination": "",
        "mynetworks": "",
        "relay_domains": "",
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv6" if ip.version == 6 else "ipv4",
        "smtpd_banner": "$myhostname ESMTP Postfix",
        "smtpd_peername_lookup": "no",
        # Accept nothing: the scanner never sends MAIL/RCPT, and nobody else should either.
        "smtpd_relay_restrictions": "reject",
        "smtpd_recipient_restrictions": "reject",
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
        "biff": "no",
        "maillog_file": str(state_dir / "log" / "maillog"),
        "maillog_file_prefixes": str(state_dir),
        "smtp_tls_security_level": "none",
    }
    if cert_file is not None and key_file is not None:
        lines |= {
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": str(cert_file),
            "smtpd_tls_key_file": str(key_file),
            "smtpd_tls_loglevel": "1",
        }
    else:
        lines["smtpd_tls_security_level"] = "none"
    return "".join(f"{key} = {value}\n" for key, value in lines.items())


def run_on_pty(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a pty; (exit code, output); -9 on timeout.

    The output is read while the command runs (a pty buffer is small) and
    no longer than ``timeout``: a daemon the command starts may keep the pty open.
    """
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    finally:
        os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            finished = proc.poll() is not None
            ready, _, _ = select.select([leader], [], [], 0 if finished else 0.05)
            if ready:
                try:
                    data = os.read(leader, 4096)
                except OSError:  # EIO: every holder of the pty has closed it
                    data = b""
                if data:
                    chunks.append(data)
                    continue
                break
            if finished:
                break
    finally:
        os.close(leader)
    try:
        code = proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    return code, " ".join(b"".join(chunks).decode("utf-8", "replace").split())[-1000:]


class PostfixInstance(MtaInstance):
    """One Postfix master with its own config, queue and log, bound to ``address:port``.

    Without a certificate STARTTLS is not offered.  Use as a context manager, or
    call ``start()`` / ``stop()``.
    """

    server = "postfix"

    def __init__(
        self,
        address: str,
        port: int,
        hostname: str,
        cert_chain_pem: bytes | None,
        key_pem: bytes | None,
        state_dir: str | os.PathLike[str],
        *,
        postfix_binary: Path = POSTFIX_BINARY,
    ) -> None:
        super().__init__(address, port, hostname, cert_chain_pem, key_pem, state_dir)
        self.config_dir = self.state_dir / "config"
        self.log_file = self.state_dir / "log" / "maillog"
        self._postfix = postfix_binary
        self.pid: int | None = None

    def _render(self) -> None:
        for sub in ("config", "queue", "data", "log", "tls"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        # postfix(1) insists on root-owned config and queue directories.
        self.state_dir.chmod(0o755)
        cert_file, key_file = self._write_tls()  # smtpd reads the key as root, before dropping privileges
        main_cf = render_main_cf(
            address=self.address,
            hostname=self.hostname,
            state_dir=self.state_dir,
            cert_file=cert_file,
            key_file=key_file,
        )
        (self.config_dir / "main.cf").write_text(main_cf)
        (self.config_dir / "master.cf").write_text(render_master_cf(self.address, self.port))
        # postlogd opens the log file as root; data_directory belongs to the mail owner.
        shutil.chown(self.state_dir / "data", "postfix", "postfix")

    def _postfix_cmd(self, verb: str, timeout: float) -> tuple[int, str]:
        """Run ``postfix -c DIR verb`` on a pty; return its exit code and what it said."""
        return run_on_pty([str(self._postfix), "-c", str(self.config_dir), verb], timeout)

    def _read_pid(self) -> int | None:
        try:
            return int((self.state_dir / "queue" / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Render the config, start the master, wait for the 220 greeting."""
        self._render()
        code, said = self._postfix_cmd("start", timeout)
        if code != 0:
            raise RuntimeError(
                f"postfix -c {self.config_dir} start failed ({code}): {said}; log: {self.log_tail(5)}"
            )
        self.pid = self._read_pid()
        self._await_greeting(timeout)

    def _alive(self) -> bool:
        self.pid = self.pid or self._read_pid()
        return self.pid is None or pid_alive(self.pid)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop this instance's master: SIGTERM by PID, as ``postfix stop`` does, then
        SIGKILL if it lingers; ``postfix -c DIR stop`` when the PID is unknown.

        (postfix-script's own stop polls once a second; signalling the PID
        we know is the same act without the wait.)
        """
        pid = self.pid or self._read_pid()
        if pid is not None:
            stop_pid(pid, timeout=timeout)
        elif self.config_dir.exists():
            self._postfix_cmd("stop", timeout)
        self.pid = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
