"""A private Exim daemon on one loopback address, run from the unpacked .debs.

The unmodified ``exim4`` binary of exim4-daemon-light (built with GnuTLS) is
started as ``exim4 -C <our config> -bdf``: a foreground daemon that is our
child process, so its PID is known from the start and it is stopped by that
PID.  The config is minimal: one listening address and port, TLS offered to
every client or to none, spool and logs in the state dir, no routers and no
transports (nothing can ever be delivered), every recipient refused.

Exim and privileges: with ``-C`` the binary does not keep root for an
untrusted config, and the daemon runs as ``exim_user`` (``Debian-exim``, made
by ``install_real_mtas``).  That user must be able to reach the state dir
(every parent directory searchable) and to read the TLS key, which it loads
per connection; ``start()`` hands the spool, logs and key to it.  Lookups
that would reach the system resolver (reverse DNS of the client, ident) are
switched off: the system resolver is not on loopback.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

from testbed.realmta.install import (
    DEFAULT_CACHE_DIR,
    EXIM_GROUP,
    EXIM_USER,
    pid_alive,
    stop_pid,
)
from testbed.realmta.instance import MtaInstance

__all__ = ["DEFAULT_EXIM_BINARY", "EximInstance", "render_exim_conf"]

#: Where ``install_real_mtas`` unpacks Exim by default.
DEFAULT_EXIM_BINARY = DEFAULT_CACHE_DIR / "exim" / "root" / "usr" / "sbin" / "exim4"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def render_exim_conf(
    *,
    address: str,
    port: int,
    hostname: str,
    state_dir: Path,
    cert_file: Path | None,
    key_file: Path | None,
) -> str:
    """The whole Exim configuration; STARTTLS is advertised exactly when a cert and key are given."""
    ip = ipaddress.ip_address(address)
    tls = cert_file is not None and key_file is not None
    main = {
        "primary_hostname": hostname,
        "qualify_domain": hostname,
        "exim_user": EXIM_USER,
        "exim_group": EXIM_GROUP,
        "spool_directory": str(state_dir / "spool"),
        "log_file_path": str(state_dir / "log" / "%slog"),
        "pid_file_path": str(state_dir / "exim.pid"),
        # "<;" switches the list separator so an IPv6 address's colons survive.
        "local_interfaces": f"<; {ip}",
        "daemon_smtp_ports": str(port),
        # Fail at once when the address:port is taken (the default retries 9 times, 30 s apart).
        "daemon_startup_retries": "0",
        "smtp_banner": "$smtp_active_hostname ESMTP Exim $version_number $tod_full",
        # No reverse DNS, no ident (RFC 1413) lookups of the client.
        "host_lookup": "",
        "rfc1413_hosts": "",
        "keep_environment": "",
        "acl_smtp_rcpt": "refuse_all",
        # RFC 3207: advertise STARTTLS to all clients, or to none.
        "tls_advertise_hosts": "*" if tls else "",
    }
    if tls:
        main["tls_certificate"] = str(cert_file)
        main["tls_privatekey"] = str(key_file)
    text = "".join(f"{key} = {value}\n" for key, value in main.items())
    text += "\nbegin acl\n\nrefuse_all:\n  deny message = relaying and delivery are not offered here\n"
    # No routers and no transports: nothing accepted could be delivered anywhere.
    text += "\nbegin routers\n\nbegin transports\n"
    return text


class EximInstance(MtaInstance):
    """One Exim daemon (``-bdf``) with its own config, spool and logs, bound to ``address:port``.

    Without a certificate STARTTLS is not advertised.  Use as a context manager, or
    call ``start()`` / ``stop()``.
    """

    server = "exim"

    def __init__(
        self,
        address: str,
        port: int,
        hostname: str,
        cert_chain_pem: bytes | None,
        key_pem: bytes | None,
        state_dir: str | os.PathLike[str],
        *,
        exim_binary: Path = DEFAULT_EXIM_BINARY,
    ) -> None:
        super().__init__(address, port, hostname, cert_chain_pem, key_pem, state_dir)
        self.config_file = self.state_dir / "exim.conf"
        self.log_file = self.state_dir / "log" / "mainlog"
        self._exim = exim_binary
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _render(self) -> None:
        for sub in ("spool", "log", "tls"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)  # the exim user must reach spool, logs and key
        cert_file, key_file = self._write_tls()
        if key_file is not None:
            shutil.chown(key_file, EXIM_USER, EXIM_GROUP)
        for owned in (self.state_dir / "spool", self.state_dir / "log"):
            shutil.chown(owned, EXIM_USER, EXIM_GROUP)
        # Exim refuses a config that is not owned by root (or is writable by others).
        self.config_file.write_text(
            render_exim_conf(
                address=self.address,
                port=self.port,
                hostname=self.hostname,
                state_dir=self.state_dir,
                cert_file=cert_file,
                key_file=key_file,
            )
        )
        self.config_file.chmod(0o644)

    def _unreachable_parent(self) -> Path | None:
        """The first ancestor of the state dir others cannot search, if any."""
        for parent in self.state_dir.resolve().parents:
            if not os.stat(parent).st_mode & 0o001:
                return parent
        return None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Write the config, start the daemon in the foreground, wait for the 220 greeting."""
        blocked = self._unreachable_parent()
        if blocked is not None:
            raise RuntimeError(f"{blocked} is not searchable by {EXIM_USER}; choose another state dir")
        self._render()
        console = (self.state_dir / "log" / "console").open("wb")
        try:
            self._process = subprocess.Popen(
                [str(self._exim), "-C", str(self.config_file), "-bdf"],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
            )
        finally:
            console.close()
        self._await_greeting(timeout)

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the daemon by its PID (SIGKILL if it lingers) and reap it."""
        if self._process is not None and pid_alive(self._process.pid):
            stop_pid(self._process.pid, timeout=timeout, reap=self._process)
        self._process = None

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for path in (self.state_dir / "log" / "console", self.log_file, self.state_dir / "log" / "paniclog"):
            try:
                out += path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
        return "\n".join(out) or "(no log)"
