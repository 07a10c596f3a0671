"""How the world's mail processes get what they serve, and what they build at start.

``up`` builds the world once, splits its listeners into shards in one pass
(``services.shards``) and writes each mail process its own shard file: the
process loads that shard, never the world (a 1M-domain world was rebuilt by each
of its 34 mail processes, ~9 s of CPU and ~400 MB apiece, and took hours to come
up on a loaded machine).  Policy sites build their TLS context on their first
handshake, not at start.  Servers run on loopback only (this file's 127.213.x.y).
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from testbed import services
from testbed.cli import main
from testbed.control import WorldSpec, child_env
from testbed.harness import running_world
from testbed.httpsserver import PolicyServerFleet
from testbed.scale import Profile, scale_world
from testbed.scenarios import scenario_world
from testbed.world import Conditions, Host, HostRole, Latency, MtaStsPolicy, PolicyHttp, SmtpBehaviour
from testbed.worldpki import ContextCache, WorldPki
from testbed.zones import WorldIndex

NET = "127.213"
LOUD = Profile(silent=0.05, syn_drop=0.05, greylist=0.05, many_addresses=0.02, many_min=3, many_max=6,
               ipv6_silent=0.05)  # fmt: skip


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


# -- shards, all at once -----------------------------------------------------------------------------


def test_all_shards_at_once_bind_every_listening_address_exactly_once_within_the_socket_budget() -> None:
    world = scale_world(3000, seed=5, profile=LOUD)
    parts = services.shards(world, 5)
    listening = {a.address for h in services.smtp_hosts(world) for a in h.smtp_addresses()
                 if a.smtp not in (None, SmtpBehaviour.REFUSED)}  # fmt: skip
    bound = [a for part in parts for a in part.addresses]
    assert len(parts) == 5 and sorted(bound) == sorted(listening)
    assert [d.name for part in parts for d, _ in part.policy] == [
        d.name for d, _ in services.policy_hosts(world)
    ]
    for part in parts:  # every host on each bound address comes with it
        on = {h.name for h in part.smtp}
        assert all(h.name in on for h in services.smtp_hosts(world)
                   for a in h.smtp_addresses() if a.address in part.addresses)  # fmt: skip
    assert len(services.shards(world)) == services.shard_count(world)  # the default count


# -- shard files -------------------------------------------------------------------------------------


def test_a_shard_file_gives_back_the_shard_and_the_world_conditions(tmp_path: Path) -> None:
    world = scale_world(2000, seed=2, profile=LOUD)
    (part,) = services.shards(world, 1)
    conditions = Conditions(smtp=Latency(0.04, 0.01), shares=(("silent", 0.05),), profile="loud")
    services.write_shard(tmp_path / "mail-0.shard", part, conditions)
    assert services.read_shard(tmp_path / "mail-0.shard") == (part, conditions)
    assert [p.name for p in tmp_path.iterdir()] == ["mail-0.shard"]  # written beside, renamed


@pytest.mark.parametrize(
    "content", [b"", b"not a pickle at all", b"\x80\x05K\x07."], ids=["empty", "text", "an-int"]
)
def test_a_file_that_is_not_a_shard_file_is_refused_by_name(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "mail-0.shard"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=r"mail-0\.shard: not a shard file"):
        services.read_shard(bad)


def test_serve_mail_refuses_a_bad_shard_file_with_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "mail-0.shard"
    bad.write_bytes(b"garbage")
    args = ["serve-mail", "--pki-dir", str(tmp_path), "--smtp-port", "1", "--https-port", "2"]
    assert main([*args, "--shard-file", str(bad)]) == 2
    assert main([*args, "--shard-file", str(tmp_path / "missing.shard")]) == 2
    assert main([*args, "--shard-file", str(bad), "--scenarios"]) == 2  # a file or a spec, not both
    assert main(args) == 2  # neither
    said = capsys.readouterr().err
    assert "not a shard file" in said and "missing.shard" in said and "Traceback" not in said


def test_a_mail_process_serves_exactly_the_hosts_of_its_shard_file(tmp_path: Path) -> None:
    """A host that exists in no world a spec builds: the process can only have it from the file."""
    address = f"{NET}.1.1"
    host = Host("mx.only-in-the-file.test", address, banner="from-the-shard-file ESMTP")
    part = services.Shard([host], [], frozenset({address}))
    services.write_shard(tmp_path / "mail-0.shard", part, Conditions())
    WorldPki.create(tmp_path / "pki")
    port, ready = _free_port(address), tmp_path / "ready"
    argv = [sys.executable, "-m", "testbed", "serve-mail", "--shard-file", str(tmp_path / "mail-0.shard"),
            "--pki-dir", str(tmp_path / "pki"), "--smtp-port", str(port), "--https-port",
            str(_free_port(address)), "--ready-file", str(ready)]  # fmt: skip
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with socket.create_connection((address, port), timeout=10) as conn:
            assert conn.recv(200).startswith(b"220 from-the-shard-file ESMTP")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_up_hands_each_mail_process_its_shard_file_and_no_world_spec() -> None:
    spec = WorldSpec("scale", 1500, seed=4)
    with running_world(spec) as world:
        mail = [s for s in world.state["servers"] if s["kind"] == "mail"]
        assert mail
        for i, server in enumerate(mail):
            argv = server["argv"]
            assert "--domains" not in argv and "--scenarios" not in argv
            shard_file = Path(argv[argv.index("--shard-file") + 1])
            assert shard_file == world.state_dir / f"mail-{i}.shard"
            part, conditions = services.read_shard(shard_file)
            built = spec.build()
            assert part == services.shards(built)[i] and conditions == built.conditions
            # Its certificates were loaded before it said ready, as a real server's are.
            said = re.search(r"(\d+) TLS contexts built before ready", Path(server["log"]).read_text())
            assert said and int(said[1]) == len(services.cert_specs(part)) > 0
        # The DNS server built its replies to a mail scan's questions before ready, too.
        dns_log = next(Path(s["log"]) for s in world.state["servers"] if s["kind"] == "dns").read_text()
        warmed = re.search(r"dns: (\d+) replies built before ready", dns_log)
        assert warmed and int(warmed[1]) == sum(1 for _ in WorldIndex(spec.build()).mail_questions()) > 0
        # And the process serves it: a host of the shard greets on its own address.
        host = next(h for h in part.smtp if h.smtp is SmtpBehaviour.GOOD and h.ipv4)
        assert host.ipv4 is not None
        with socket.create_connection((host.ipv4, int(world.endpoints["smtp_port"])), timeout=10) as conn:
            assert conn.recv(300).startswith(f"220 {host.banner}".encode())


# -- policy sites: TLS contexts on first use ----------------------------------------------------------


def test_policy_sites_build_their_tls_context_on_the_first_handshake_not_at_start(tmp_path: Path) -> None:
    world = scenario_world()
    hosts = {h.name: h for h in world.hosts if h.role is HostRole.POLICY}
    served = [d for d in world.domains if d.policy is not None and d.policy.http is PolicyHttp.OK]
    pairs = [(d, hosts[f"mta-sts.{d.name}"]) for d in served if f"mta-sts.{d.name}" in hosts][:3]
    assert len(pairs) == 3
    contexts = ContextCache(WorldPki.create(tmp_path / "pki"))
    # Each on an address of this file's own, served as the mail process serves it.
    moved = [
        (d, Host(h.name, f"{NET}.2.{i + 1}", role=HostRole.POLICY, smtp=None))
        for i, (d, h) in enumerate(pairs)
    ]
    sites = [services.policy_site(d, h, contexts) for d, h in moved]
    port = _free_port(f"{NET}.2.1")

    async def fetch(address: str, name: str) -> tuple[bytes, bytes]:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=_client_tls(), server_hostname=name), 10
        )
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.write(f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
        reply = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return der, reply

    async def scenario() -> None:
        async with PolicyServerFleet(sites, port):
            assert contexts.built == 0  # nothing built at start
            domain, host = moved[1]
            der, reply = await fetch(host.ipv4 or "", host.name)
            assert contexts.built == 1
            assert isinstance(domain.policy, MtaStsPolicy)
            assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(domain.policy.body)
            san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            )
            assert san.value.get_values_for_type(x509.DNSName) == [host.name]
            await fetch(host.ipv4 or "", host.name)
            assert contexts.built == 1  # the second handshake reuses it

    try:
        asyncio.run(scenario())
    finally:
        contexts.close()
