"""nginx (Debian) serving the world's MTA-STS policy hosts: tier (b)'s HTTPS side.

    layout = write_nginx(world, state_dir / "tier-b" / "nginx", world_pki, port=443)
    pid = start_nginx(layout)      # ... stop_nginx(pid)

Theory of operation
-------------------
Every policy host ``mta-sts.<domain>`` gets one ``server`` block listening on
its own 127.x.y.z address and the shared port, with SNI (``server_name``) and
its own certificate chain and key from the world's PKI (``WorldPki``:
``<state>/pki/leaves/<host>.<kind>.chain.pem``/``.key.pem``, persisted so the
bytes equal what tier (a) presents).  Sites sharing an address are told apart
by SNI; the first one of an address is its default, as in tier (a).

The behaviours of ``testbed/httpsserver.py`` map to nginx like this, and the
answers are the same on the wire as far as a policy fetch can tell (status,
Content-Type, Location, body bytes, certificate):

  ok                  ``default_type text/plain`` (no MIME map) + the policy file
  404                 ``return 404 "not found\\n"``: text/plain, as tier (a)
  wrong-content-type  the policy file under ``default_type text/html; charset utf-8``
  redirect            ``return 301 <location>`` with ``error_page 301`` pointing at an
                      empty file: 301, Location, text/plain, Content-Length 0 (a bare
                      ``return 301`` would add nginx's 162-byte text/html page)
  wrong-cert          as ok; the certificate is the host's "wrong-name" leaf
  no-server           no server block: nothing listens on that address
  oversized           a 1 MiB text/plain file (tier (a) streams the same size slowly;
                      a client that stops at 64 KiB sees no difference)
  hang                only with Debian's echo module (``libnginx-mod-http-echo``, which
                      nginx-light pulls in): ``echo_sleep`` holds the request without a
                      byte of answer; without the module the behaviour is refused
  garbage             impossible: nginx always answers with an HTTP status line

Other paths answer 404 (tier (a) answers every path alike; a fetch asks only
the well-known one).  Connections close after each answer
(``keepalive_timeout 0``), like tier (a)'s ``Connection: close``.

Files, all under one directory (``NginxLayout``): nginx.conf, nginx.pid,
error.log, access.log, ``tmp/`` (nginx's temp paths, which default to
/var/lib/nginx), ``www/`` (one body file per site, the oversized and the empty
file).  nginx runs in the foreground (``daemon off``) with a master and one
worker; ``start_nginx``/``stop_nginx`` go by PID.

This module imports nothing of mxscan's: it is part of the world.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from testbed.tier_b.world_b import descendants
from testbed.world import CertKind, HostRole, PolicyHttp, World
from testbed.worldpki import WorldPki

__all__ = [
    "ECHO_MODULE",
    "HANG_SECONDS",
    "OVERSIZED_BYTES",
    "POLICY_PATH",
    "REDIRECT_LOCATION",
    "UNSUPPORTED",
    "NginxError",
    "NginxLayout",
    "NginxSite",
    "nginx_argv",
    "nginx_binary",
    "nginx_layout",
    "nginx_sites",
    "render_nginx_conf",
    "start_nginx",
    "stop_nginx",
    "write_nginx",
]

#: RFC 8461 §3.3: the well-known path of the policy.
POLICY_PATH = "/.well-known/mta-sts.txt"
#: Where "redirect" points (tier (a)'s ``PolicySite.location`` default).
REDIRECT_LOCATION = "https://elsewhere.test/.well-known/mta-sts.txt"
#: Size of the "oversized" body, as tier (a)'s ``httpsserver.OVERSIZED_BYTES``.
OVERSIZED_BYTES = 1024 * 1024
#: Debian's echo module (package libnginx-mod-http-echo): the only way to "hang" here.
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
#: How long a "hang" site holds a request: longer than any client's deadline.
HANG_SECONDS = 3600
#: Behaviours nginx cannot imitate -> why (tier (a) serves them).
UNSUPPORTED = {"garbage": "nginx always answers with an HTTP status line; it cannot send non-HTTP bytes"}
#: Connections per worker beyond one per listening socket (nginx counts listeners as connections).
SPARE_CONNECTIONS = 1024
#: The hard limit on open files per process here (measured): nginx may not ask for more.
MAX_OPEN_FILES = 19_000
#: Seconds to wait for nginx to listen, and between SIGTERM and SIGKILL.
READY_TIMEOUT = 30.0
STOP_GRACE = 5.0

_OVERSIZED_LINE = b"mx: mail.example.test\r\n"  # the filler tier (a) streams


class NginxError(RuntimeError):
    """nginx could not be configured or started; the message says why."""


@dataclass(frozen=True, slots=True)
class NginxSite:
    """One policy host: ``host_name`` at ``address``, behaving as ``behaviour``.

    ``cert_kind`` is the leaf kind WorldPki issues for it ("wrong-name" for wrong-cert).
    """

    host_name: str
    address: str
    behaviour: str
    body: bytes
    cert_kind: str
    location: str = REDIRECT_LOCATION


class NginxLayout(NamedTuple):
    """Where one nginx instance keeps its files."""

    directory: Path
    conf: Path
    pid_file: Path
    error_log: Path
    access_log: Path
    tmp: Path
    www: Path
    port: int
    #: (address, port) of one listener ``start_nginx`` waits for; None when nothing listens.
    probe: tuple[str, int] | None = None


def nginx_layout(directory: Path, port: int = 443) -> NginxLayout:
    return NginxLayout(
        directory=directory,
        conf=directory / "nginx.conf",
        pid_file=directory / "nginx.pid",
        error_log=directory / "error.log",
        access_log=directory / "access.log",
        tmp=directory / "tmp",
        www=directory / "www",
        port=port,
    )


def nginx_sites(world: World) -> list[NginxSite]:
    """Every policy host with an IPv4 address, "no-server" ones included, in world order.

    The certificate kind follows ``services.policy_site``: the host's own kind, "wrong-name"
    for a wrong-cert policy.
    """
    hosts = {h.name: h for h in world.hosts if h.role is HostRole.POLICY}
    sites = []
    for domain in world.domains:
        policy = domain.policy
        host = hosts.get(f"mta-sts.{domain.name}")
        if policy is None or host is None or host.ipv4 is None:
            continue
        wrong = policy.http is PolicyHttp.WRONG_CERT
        kind = CertKind.WRONG_NAME if wrong else (host.cert or CertKind.VALID)
        sites.append(NginxSite(host.name, host.ipv4, policy.http.value, policy.body, kind.value))
    return sites


def _quote(value: str | Path) -> str:
    text = str(value)
    if any(c in text for c in '"\\\n;{}'):
        raise NginxError(f"cannot quote {text!r} in nginx.conf")
    return f'"{text}"'


def _body_file(layout: NginxLayout, site: NginxSite) -> Path:
    return layout.www / f"{site.host_name}.txt"


def _policy_location(layout: NginxLayout, site: NginxSite) -> list[str]:
    head = f"\t\tlocation = {POLICY_PATH} {{"
    behaviour = site.behaviour
    if behaviour in ("ok", "wrong-cert"):
        body = [f"alias {_quote(_body_file(layout, site))};"]
    elif behaviour == "404":
        body = ['return 404 "not found\\n";']
    elif behaviour == "wrong-content-type":
        body = ["default_type text/html;", "charset utf-8;", f"alias {_quote(_body_file(layout, site))};"]
    elif behaviour == "redirect":
        body = ["error_page 301 /.mxscan-redirect-body;", f"return 301 {_quote(site.location)};"]
    elif behaviour == "oversized":
        body = [f"alias {_quote(layout.www / 'oversized.txt')};"]
    elif behaviour == "hang":
        body = [f"echo_sleep {HANG_SECONDS};"]
    else:
        raise NginxError(
            f"{site.host_name}: nginx cannot do {behaviour!r}: {UNSUPPORTED.get(behaviour, '?')}"
        )
    lines = [head, *(f"\t\t\t{line}" for line in body), "\t\t}"]
    if behaviour == "redirect":
        lines += [
            "\t\tlocation = /.mxscan-redirect-body {",
            "\t\t\tinternal;",
            f"\t\t\talias {_quote(layout.www / 'empty.txt')};",
            "\t\t}",
        ]
    return lines


def render_nginx_conf(
    sites: Iterable[NginxSite],
    layout: NginxLayout,
    cert_files: Mapping[str, tuple[Path, Path]],
    *,
    worker_user: str | None = "root",
    echo_module: Path | None = None,
) -> str:
    """nginx.conf text: one server block per listening site; ``cert_files``: host -> (chain, key).

    ``worker_user``: "root" keeps the worker able to read a state dir of mode 0700 (nsd and
    unbound run without privilege drop too); None leaves nginx's default.  ``echo_module`` is
    loaded when given (needed by "hang").
    """
    served = [s for s in sites if s.behaviour != "no-server"]
    if any(s.behaviour == "hang" for s in served) and echo_module is None:
        raise NginxError("a 'hang' site needs the echo module (apt-get install libnginx-mod-http-echo)")
    listeners = len({s.address for s in served})
    head = [f"load_module {_quote(echo_module)};"] if echo_module is not None else []
    if worker_user is not None:
        head.append(f"user {worker_user};")
    lines = [
        *head,
        "daemon off;",
        "master_process on;",
        "worker_processes 1;",
        f"worker_rlimit_nofile {min(MAX_OPEN_FILES, 2 * (listeners + SPARE_CONNECTIONS))};",
        f"pid {_quote(layout.pid_file)};",
        f"error_log {_quote(layout.error_log)} warn;",
        "events {",
        f"\tworker_connections {listeners + SPARE_CONNECTIONS};",
        "}",
        "http {",
        f"\taccess_log {_quote(layout.access_log)};",
        *(f"\t{kind}_temp_path {_quote(layout.tmp / kind)};" for kind in _TEMP_KINDS),
        "\ttypes {}",  # no MIME map: every file is default_type
        "\tdefault_type text/plain;",
        "\tkeepalive_timeout 0;",  # one request per connection, like tier (a)
        "\tserver_tokens off;",
        "\tssl_protocols TLSv1.2 TLSv1.3;",  # tier (a)'s minimum_version
        "\tssl_session_cache off;",
    ]
    for site in served:
        chain, key = cert_files[site.host_name]
        lines += [
            "\tserver {",
            f"\t\tlisten {site.address}:{layout.port} ssl;",
            f"\t\tserver_name {site.host_name};",
            f"\t\tssl_certificate {_quote(chain)};",
            f"\t\tssl_certificate_key {_quote(key)};",
            *_policy_location(layout, site),
            "\t\tlocation / {",
            '\t\t\treturn 404 "not found\\n";',
            "\t\t}",
            "\t}",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


_TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def _oversized_body() -> bytes:
    return (_OVERSIZED_LINE * (OVERSIZED_BYTES // len(_OVERSIZED_LINE) + 1))[:OVERSIZED_BYTES]


def write_nginx(
    world: World | Iterable[NginxSite],
    directory: Path,
    world_pki: WorldPki,
    port: int = 443,
    *,
    worker_user: str | None = "root",
    echo_module: Path | None = None,
) -> NginxLayout:
    """Write nginx.conf, the body files and the sites' leaves; ``directory`` is emptied first."""
    sites = nginx_sites(world) if isinstance(world, World) else list(world)
    if directory.exists():
        shutil.rmtree(directory)
    layout = nginx_layout(directory, port)
    for sub in (layout.www, *(layout.tmp / kind for kind in _TEMP_KINDS)):
        sub.mkdir(parents=True)
    (layout.www / "empty.txt").write_bytes(b"")
    if any(s.behaviour == "oversized" for s in sites):
        (layout.www / "oversized.txt").write_bytes(_oversized_body())
    cert_files: dict[str, tuple[Path, Path]] = {}
    for site in sites:
        if site.behaviour == "no-server":
            continue
        _body_file(layout, site).write_bytes(site.body)
        world_pki.persist(site.host_name, site.cert_kind)  # the same DER in every process
        stem = world_pki.directory / "leaves" / f"{site.host_name}.{site.cert_kind}"
        cert_files[site.host_name] = (Path(f"{stem}.chain.pem"), Path(f"{stem}.key.pem"))
    text = render_nginx_conf(sites, layout, cert_files, worker_user=worker_user, echo_module=echo_module)
    layout.conf.write_text(text)
    probe = next(((s.address, port) for s in sites if s.behaviour != "no-server"), None)
    return layout._replace(probe=probe)


# -- running it ---------------------------------------------------------------------------


def nginx_binary() -> str | None:
    """The nginx program, or None when it is not installed (apt-get install nginx)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def nginx_argv(layout: NginxLayout, binary: str = "nginx") -> list[str]:
    """nginx in the foreground with our config; ``-e`` so no default error log is ever opened."""
    return [binary, "-c", str(layout.conf), "-e", str(layout.error_log), "-p", str(layout.directory)]


def _listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _poll(layout: NginxLayout) -> Iterator[bool]:
    while True:
        yield layout.pid_file.exists() and (layout.probe is None or _listening(*layout.probe))


def start_nginx(layout: NginxLayout, timeout: float = READY_TIMEOUT) -> int:
    """Start nginx (its own session) and return the master's PID once it listens."""
    binary = nginx_binary()
    if binary is None:
        raise NginxError("nginx is not installed (apt-get install nginx)")
    layout.pid_file.unlink(missing_ok=True)
    out = layout.directory / "nginx.out"
    with out.open("ab") as sink:
        proc = subprocess.Popen(
            nginx_argv(layout, binary),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ready = _poll(layout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = layout.error_log.read_text(errors="replace")[-2000:] if layout.error_log.exists() else ""
            raise NginxError(f"nginx exited with {proc.returncode}\n{tail}")
        if next(ready):
            return proc.pid
        time.sleep(0.05)
    stop_nginx(proc.pid)
    raise NginxError(f"nginx not listening after {timeout:.0f}s (log: {layout.error_log})")


def _gone(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap our own child
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def stop_nginx(pid: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM to the master (nginx's fast shutdown), SIGKILL to it and its workers if it lingers."""
    workers = descendants(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    for target in (pid, *workers):
        if _gone(target):
            continue
        with contextlib.suppress(OSError):
            if not Path(f"/proc/{target}/comm").read_text().startswith("nginx"):
                continue  # its PID was reused: not ours to signal
            os.kill(target, signal.SIGKILL)
        while not _gone(target):
            time.sleep(0.02)
