"""The running scenario world, checked by independent standard tools against its truth.

openssl s_client speaks STARTTLS to the SMTP hosts and verifies what they
present (valid and each invalid certificate kind, no STARTTLS, 454); curl
fetches MTA-STS policies (ok, 404, a redirect it must not follow, the wrong
content type, a certificate for another name); dig reads TLSA records, whose
data must equal the hash of the certificate the SMTP host really presents.
Each check is skipped only when its tool is not installed (apt-get install
openssl curl dnsutils).  Also: up is idempotent, status sees every server,
down stops exactly the recorded PIDs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from testbed import control
from testbed.control import WorldSpec
from testbed.harness import RunningWorld
from testbed.scenarios import scenario_world
from testbed.world import Host

WORLD = scenario_world()
HOSTS = {h.name: h for h in WORLD.hosts}
OPENSSL, CURL, DIG = shutil.which("openssl"), shutil.which("curl"), shutil.which("dig")


def _mx(scenario: str) -> Host:
    return HOSTS[f"mx.{scenario}.scenario.test"]


def _s_client(
    shared_world: RunningWorld, host: Host, *extra: str, ca_file: str | None = None
) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None and host.ipv4 is not None
    argv = [
        *(
            OPENSSL,
            "s_client",
            "-starttls",
            "smtp",
            "-connect",
            f"{host.ipv4}:{shared_world.endpoints['smtp_port']}",
        ),
        *("-servername", host.name, "-verify_return_error", "-verify_hostname", host.name),
        *("-CAfile", ca_file or shared_world.endpoints["ca_file"], *extra),
    ]
    return subprocess.run(argv, input="QUIT\n", capture_output=True, text=True, timeout=20, check=False)


#: scenario -> (handshake verified, a fragment of what openssl says)
S_CLIENT_CASES = {
    "valid-cert": (True, "Verify return code: 0 (ok)"),
    "expired-cert": (False, "certificate has expired"),
    "not-yet-valid": (False, "certificate is not yet valid"),
    "wrong-name": (False, "hostname mismatch"),
    "self-signed": (False, "self-signed certificate"),
    "untrusted-ca": (False, "unable to get local issuer certificate"),
    "missing-intermediate": (False, "unable to get local issuer certificate"),
    # s_client goes on without STARTTLS and meets plain SMTP where TLS should be.
    "no-starttls": (False, "no peer certificate available"),
    "starttls-454": (False, "no peer certificate available"),
}


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
@pytest.mark.parametrize(("scenario", "verified", "says"), [(k, *v) for k, v in S_CLIENT_CASES.items()],
                         ids=list(S_CLIENT_CASES))  # fmt: skip
def test_openssl_s_client_sees_the_truth(
    shared_world: RunningWorld, scenario: str, verified: bool, says: str
) -> None:
    run = _s_client(shared_world, _mx(scenario))
    output = run.stdout + run.stderr
    assert (run.returncode == 0) == verified, output[-1500:]
    assert says.lower() in output.lower(), output[-1500:]


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
def test_missing_intermediate_verifies_once_the_intermediate_is_supplied(
    shared_world: RunningWorld, tmp_path: Path
) -> None:
    bundle = tmp_path / "root-and-intermediate.pem"
    ca, intermediates = shared_world.endpoints["ca_file"], shared_world.endpoints["intermediates"]
    bundle.write_bytes(Path(ca).read_bytes() + Path(intermediates).read_bytes())
    run = _s_client(shared_world, _mx("missing-intermediate"), ca_file=str(bundle))
    assert run.returncode == 0, (run.stdout + run.stderr)[-1500:]


def _curl(shared_world: RunningWorld, scenario: str, out: Path) -> tuple[int, str]:
    assert CURL is not None
    host = HOSTS[f"mta-sts.{scenario}.scenario.test"]
    port = shared_world.endpoints["https_port"]
    run = subprocess.run(
        [
            *(CURL, "-sS", "--max-time", "10", "--cacert", shared_world.endpoints["ca_file"]),
            *("--resolve", f"{host.name}:{port}:{host.ipv4}", "-o", str(out)),
            *("-w", "%{http_code} %{content_type} %{redirect_url}"),
            f"https://{host.name}:{port}/.well-known/mta-sts.txt",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return run.returncode, run.stdout + run.stderr


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_curl_fetches_a_valid_policy(shared_world: RunningWorld, tmp_path: Path) -> None:
    code, said = _curl(shared_world, "sts-enforce", tmp_path / "body")
    assert code == 0 and said.startswith("200 text/plain"), said
    policy = next(d.policy for d in WORLD.domains if d.scenario == "sts-enforce")
    assert policy is not None and (tmp_path / "body").read_bytes() == policy.body


@pytest.mark.skipif(CURL is None, reason="curl not installed")
@pytest.mark.parametrize(
    ("scenario", "pattern"),
    [
        ("sts-404", r"^404 "),
        ("sts-redirect", r"^301 \S+ https://"),  # redirect_url is reported, not followed
        ("sts-content-type", r"^200 text/html"),
    ],
    ids=["404", "redirect-not-followed", "wrong-content-type"],
)
def test_curl_sees_each_broken_policy_host(
    shared_world: RunningWorld, tmp_path: Path, scenario: str, pattern: str
) -> None:
    code, said = _curl(shared_world, scenario, tmp_path / "body")
    assert code == 0 and re.match(pattern, said), said


@pytest.mark.skipif(CURL is None, reason="curl not installed")
def test_curl_refuses_the_policy_host_certificate_for_another_name(
    shared_world: RunningWorld, tmp_path: Path
) -> None:
    code, said = _curl(shared_world, "sts-wrong-cert", tmp_path / "body")
    assert code == 60, said  # CURLE_PEER_FAILED_VERIFICATION


def _presented(shared_world: RunningWorld, host: Host) -> list[bytes]:
    """The chain the SMTP host presents, as DER, read with openssl s_client -showcerts."""
    run = _s_client(shared_world, host, "-showcerts")
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", run.stdout, re.S)
    ders = []
    for pem in pems:
        conv = subprocess.run([OPENSSL or "openssl", "x509", "-outform", "DER"], input=pem.encode(),
                              capture_output=True, timeout=10, check=True)  # fmt: skip
        ders.append(conv.stdout)
    return ders


def _spki(der: bytes) -> bytes:
    pub = subprocess.run([OPENSSL or "openssl", "x509", "-inform", "DER", "-pubkey", "-noout"], input=der,
                         capture_output=True, timeout=10, check=True).stdout  # fmt: skip
    return subprocess.run([OPENSSL or "openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                          capture_output=True, timeout=10, check=True).stdout  # fmt: skip


def _dig_tlsa(shared_world: RunningWorld, host: Host) -> list[str]:
    addr, port = shared_world.endpoints["dns"].rsplit(":", 1)
    run = subprocess.run(
        [DIG or "dig", f"@{addr}", "-p", port, "+short", "+dnssec", "TLSA", f"_25._tcp.{host.name}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    records = [line.split() for line in run.stdout.splitlines() if line and not line.startswith("TLSA")]
    return [" ".join([*fields[:3], "".join(fields[3:]).lower()]) for fields in records]


@pytest.mark.skipif(OPENSSL is None or DIG is None, reason="openssl or dig not installed")
def test_tlsa_data_is_the_hash_of_what_the_host_presents(shared_world: RunningWorld) -> None:
    ee = _mx("dane-ee-match")
    chain = _presented(shared_world, ee)
    assert _dig_tlsa(shared_world, ee) == [f"3 1 1 {hashlib.sha256(_spki(chain[0])).hexdigest()}"]
    ta = _mx("dane-ta-match")
    chain = _presented(shared_world, ta)
    assert len(chain) == 2  # leaf + the issuing intermediate, which 2 0 1 binds
    assert _dig_tlsa(shared_world, ta) == [f"2 0 1 {hashlib.sha256(chain[1]).hexdigest()}"]
    mismatch = _mx("dane-ee-mismatch")
    spki = hashlib.sha256(_spki(_presented(shared_world, mismatch)[0])).hexdigest()
    assert _dig_tlsa(shared_world, mismatch) != [f"3 1 1 {spki}"]


def test_up_is_idempotent_status_sees_every_server_and_down_stops_them(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    spec = WorldSpec("scenarios")
    first = control.up(spec, state_dir, dns_port=0, smtp_port=0, https_port=0)
    try:
        names = [s["name"] for s in first["servers"]]
        assert names[0] == "dns" and names[1:] == ["mail-0"]
        again = control.up(spec, state_dir, dns_port=0, smtp_port=0, https_port=0)
        assert [s["pid"] for s in again["servers"]] == [s["pid"] for s in first["servers"]]
        report = control.status(state_dir)
        assert report["state"] == "running" and all(s["state"] == "running" for s in report["servers"])
        mail = first["servers"][1]
        os.kill(mail["pid"], signal.SIGKILL)  # a mail process we started crashes
        os.waitpid(mail["pid"], 0)
        report = control.status(state_dir)
        assert {s["name"]: s["state"] for s in report["servers"]} == {"dns": "running", "mail-0": "crashed"}
    finally:
        stopped = control.down(state_dir)
    assert stopped == ["dns"]  # the crashed one was already gone; nothing else is signalled
    assert control.status(state_dir)["state"] == "stopped"
    assert not (state_dir / "endpoints.json").exists()
