"""Two references for the SMTP scan benchmark, measured beside the scanner in the same run.

    python benchmarks/tls_pair.py --pki-dir run/testbed/pki --name aspmx.l.google.prov.test

* ``measure_pair``: the ceiling for any asyncio TLS client on this machine: a bare
  server process (uvloop, the test world's certificate for ``name``, TLS from the
  first byte) and a bare client process (uvloop, verification off as the scanner
  does, SNI = ``name``) doing ``handshakes`` full handshakes, ``concurrency`` at a
  time.  After its handshake the server writes one byte and the client reads it,
  so each counted handshake is complete on both sides.  Client and server are
  separate processes, as the scanner and the world are.
* ``sequential_smtplib``: the study's approach, one host at a time with the
  standard library's ``smtplib``: connect, EHLO, STARTTLS, EHLO, QUIT.

Run standalone it prints the pair's handshakes/s and CPU per handshake as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import smtplib
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

__all__ = ["PairResult", "SequentialResult", "measure_pair", "sequential_smtplib"]

#: Seconds any one handshake (or SMTP step) may take before the reference gives up on it.
STEP_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class PairResult:
    handshakes: int
    failed: int
    seconds: float
    client_cpu_ms: float
    server_cpu_ms: float

    @property
    def rate(self) -> float:
        return self.handshakes / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class SequentialResult:
    sessions: int
    tls: int
    failed: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sessions / self.seconds if self.seconds else 0.0


# ------------------------------------------------------------------ bare pair


def _run_loop(main: object) -> None:
    try:
        import uvloop

        uvloop.run(main)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]


async def _serve(pki_dir: Path, name: str, ready: Path) -> None:
    from testbed.worldpki import ContextCache, WorldPki

    contexts = ContextCache(WorldPki.load(pki_dir))
    context = contexts.get(name, "valid")

    class Greeter(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            # Called once the TLS handshake is done (ssl= on the server).
            transport.write(b"!")  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            pass

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Greeter, "127.0.0.1", 0, ssl=context, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(ready)
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        contexts.close()


def _serve_main(pki_dir: Path, name: str, ready: Path) -> None:
    import signal

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await _serve(pki_dir, name, ready)
        except asyncio.CancelledError:
            pass

    _run_loop(main())


async def _client(port: int, name: str, handshakes: int, concurrency: int) -> tuple[int, int, float]:
    from probes.smtp.session import client_tls_context

    context = client_tls_context()  # the scanner's own client context: verification off
    remaining = iter(range(handshakes))
    done = failed = 0

    async def worker() -> None:
        nonlocal done, failed
        for _ in remaining:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=name),
                    STEP_TIMEOUT,
                )
                await asyncio.wait_for(reader.readexactly(1), STEP_TIMEOUT)
                writer.close()
                done += 1
            except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
                failed += 1

    began = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return done, failed, time.perf_counter() - began


def _client_main(port: int, name: str, handshakes: int, concurrency: int, out: Path) -> None:
    result: list[object] = []

    async def main() -> None:
        result.extend(await _client(port, name, handshakes, concurrency))

    _run_loop(main())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(json.dumps([*result, usage.ru_utime + usage.ru_stime]))


def measure_pair(
    pki_dir: Path, name: str, handshakes: int = 3000, concurrency: int = 64, warmup: int = 200
) -> PairResult:
    """Handshakes/s of a bare client process against a bare server process on loopback."""
    import tempfile

    me = str(Path(__file__).resolve())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory(prefix="mxscan-tlspair-") as tmp:
        ready = Path(tmp) / "server.ready"
        server = subprocess.Popen(
            [sys.executable, me, "--serve", "--pki-dir", str(pki_dir), "--name", name, "--ready", str(ready)],
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while not (ready.exists() and ready.read_text().strip()):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("TLS pair server did not start")
                time.sleep(0.05)
            port = int(ready.read_text())

            def client(count: int) -> tuple[int, int, float, float]:
                out = Path(tmp) / "client.json"
                argv = [sys.executable, me, "--client", "--port", str(port), "--name", name]
                argv += ["--handshakes", str(count), "--concurrency", str(concurrency), "--out", str(out)]
                subprocess.run(argv, env=env, check=True, timeout=600)
                done, failed, seconds, cpu = json.loads(out.read_text())
                return int(done), int(failed), float(seconds), float(cpu)

            client(warmup)  # the server's first handshakes pay for lazy setup
            server_cpu_before = _cpu_of(server.pid)
            done, failed, seconds, client_cpu = client(handshakes)
            server_cpu = _cpu_of(server.pid) - server_cpu_before
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    per = max(done, 1)
    return PairResult(done, failed, seconds, client_cpu / per * 1000, server_cpu / per * 1000)


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ the study's way


def sequential_smtplib(
    targets: list[tuple[str, str]], port: int, ehlo_name: str, timeout: float = STEP_TIMEOUT
) -> SequentialResult:
    """One (host, address) at a time: connect, EHLO, STARTTLS, EHLO, QUIT (never MAIL)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    tls = failed = 0
    began = time.perf_counter()
    for host, address in targets:
        try:
            with smtplib.SMTP(local_hostname=ehlo_name, timeout=timeout) as smtp:
                smtp.connect(address, port)
                smtp._host = host  # type: ignore[attr-defined]  # SNI = the MX name, as the scanner sends
                smtp.ehlo(ehlo_name)
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=context)
                    smtp.ehlo(ehlo_name)
                    tls += 1
                smtp.quit()
        except (OSError, smtplib.SMTPException, ssl.SSLError):
            failed += 1
    return SequentialResult(len(targets), tls, failed, time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pki-dir", type=Path)
    parser.add_argument("--name", default="aspmx.l.google.prov.test")
    parser.add_argument("--handshakes", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ready", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve_main(args.pki_dir, args.name, args.ready)
    elif args.client:
        _client_main(args.port, args.name, args.handshakes, args.concurrency, args.out)
    else:
        if args.pki_dir is None:
            parser.error("--pki-dir is required (a running world's <state>/pki)")
        print(
            json.dumps({**asdict(measure_pair(args.pki_dir, args.name, args.handshakes, args.concurrency))})
        )


if __name__ == "__main__":
    main()
