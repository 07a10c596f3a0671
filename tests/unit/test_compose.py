"""docker-compose.yml stays consistent with the native tier (b) (issue 3's acceptance).

Docker cannot run here, so the file is checked, not started: every config
path a service command names is one ``testbed.tier_b.prepare`` writes (the
compose file mounts the state dir at /state), the addresses and ports are the
native defaults, and the scan command carries the flags ``testbed up`` prints.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from testbed import cli, control
from testbed.scenarios import PREFLIGHT_BOGUS
from testbed.tier_b import prepare
from testbed.tier_b.nginx import nginx_argv, nginx_layout
from testbed.tier_b.world_b import DEFAULT_RESOLVER_ADDR
from testbed.tier_b.zonefiles import DEFAULT_LAYOUT

yaml = pytest.importorskip("yaml", reason="PyYAML (test extra) reads docker-compose.yml")

ROOT = Path(__file__).resolve().parents[2]
#: Where docker-compose.yml mounts the prepared state dir in every container.
STATE = "/state"
#: The services issue 3 names, plus the one-shot world and the built-in SMTP fleet.
REQUIRED = {"unbound", "nsd", "postfix", "nginx", "mxscan"}
#: Service -> the Debian package its image installs.
DEBIAN_PACKAGES = {"nsd": "nsd", "unbound": "unbound", "nginx": "nginx", "postfix": "postfix"}
#: Options whose value is something the service writes, not reads.
OUTPUT_OPTIONS = {"--out", "--ready-file", "--state-dir", "-e"}


def _interpolate(text: str) -> str:
    """Compose's ``${VAR:-default}`` with every variable unset (the defaults the file documents)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", lambda m: m.group(1), text)


def _argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    args = shlex.split(_interpolate(command)) if isinstance(command, str) else list(command)
    entry = service.get("entrypoint", [])
    return [*(shlex.split(entry) if isinstance(entry, str) else entry), *args]


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


@pytest.fixture(scope="module")
def prepared(compose: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> prepare.TierBFiles:
    """The world service's own command (scenario world), run natively into a temporary state dir."""
    state = tmp_path_factory.mktemp("compose-state")
    argv = _argv(compose["world"])[3:]  # after python -m testbed.tier_b.prepare
    argv[argv.index("--state-dir") + 1] = str(state)
    assert prepare.main(argv) == 0
    endpoints = json.loads((state / "endpoints.json").read_text())
    nginx = nginx_layout(state / "tier-b" / "nginx", endpoints["https_port"])
    return prepare.TierBFiles(
        state, endpoints, state / "tier-b" / "nsd.conf", state / "tier-b" / "unbound.conf", nginx,
        Path(endpoints["postfix_config"]), {},
    )  # fmt: skip


def _local(path: str, state: Path) -> Path:
    """A /state/... path of a container as the prepared dir holds it."""
    assert path.startswith(STATE + "/"), path
    return state / path.removeprefix(STATE + "/")


def _state_paths(argv: list[str]) -> list[str]:
    """/state/... paths a command reads (values of output options left out), also inside sh -c."""
    words = [w for arg in argv for w in (shlex.split(arg) if " " in arg else [arg])]
    return [
        word
        for i, word in enumerate(words)
        if word.startswith(STATE + "/") and (i == 0 or words[i - 1] not in OUTPUT_OPTIONS)
    ]


def test_every_named_service_is_present(compose: dict[str, Any]) -> None:
    assert set(compose) >= REQUIRED | {"world", "mail"}


def test_all_services_share_the_host_network_and_the_state_dir(compose: dict[str, Any]) -> None:
    for name, service in compose.items():
        assert service["network_mode"] == "host", name  # each server binds its own 127.x address
        assert f"./run/compose:{STATE}" in service["volumes"], name


@pytest.mark.parametrize("name", sorted(DEBIAN_PACKAGES))
def test_servers_come_from_debian_12_packages(compose: dict[str, Any], name: str) -> None:
    dockerfile = compose[name]["build"]["dockerfile_inline"]
    assert dockerfile.splitlines()[0] == "FROM debian:12-slim"
    assert re.search(rf"apt-get install -y --no-install-recommends {DEBIAN_PACKAGES[name]}\b", dockerfile)


def test_mxscan_image_is_the_repository_package(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim-bookworm" in dockerfile.splitlines()
    assert 'ENTRYPOINT ["mxscan"]' in dockerfile and "RUN pip install ." in dockerfile
    for name in ("world", "mail", "mxscan"):
        assert compose[name]["image"] == "mxscan:local" and compose[name]["build"] == "."


@pytest.mark.parametrize("name", ["world", "nsd", "unbound", "nginx", "mail", "postfix", "mxscan"])
def test_every_path_a_command_reads_is_prepared(
    compose: dict[str, Any], prepared: prepare.TierBFiles, name: str
) -> None:
    paths = _state_paths(_argv(compose[name]))
    if name != "world":
        assert paths, f"{name} names no prepared file"
    for path in paths:
        assert _local(path, prepared.state_dir).exists(), f"{name}: {path} is not written by prepare"


#: Absolute paths a server config may name outside the state dir: the Debian packages' own files.
SYSTEM_PREFIXES = ("/usr/", "/etc/postfix")


def test_configs_name_only_files_inside_the_state_dir(prepared: prepare.TierBFiles) -> None:
    """So that mounting the state dir at the path prepare was given is all a container needs."""
    assert prepared.postfix_config is not None
    configs = [
        prepared.nsd_conf,
        prepared.unbound_conf,
        prepared.nginx.conf,
        prepared.postfix_config / "main.cf",
    ]
    for config in configs:
        # Files are quoted in nginx/NSD/unbound configs and are values in main.cf; URIs are bare.
        for quoted, assigned in re.findall(r'"(/[^"]+)"|^\w+ = (/\S+)$', config.read_text(), re.M):
            path = quoted or assigned
            inside = Path(path).is_relative_to(prepared.state_dir)
            assert inside or path.startswith(SYSTEM_PREFIXES), f"{config.name} names {path}"


def test_world_service_runs_prepare_into_the_mount(compose: dict[str, Any]) -> None:
    argv = _argv(compose["world"])
    assert argv[:3] == ["python", "-m", "testbed.tier_b.prepare"]
    assert "--scenarios" in argv and _option(argv, "--state-dir") == STATE
    assert _option(argv, "--https-port") == str(prepare.HTTPS_PORT)
    assert _option(argv, "--smtp-port") == str(prepare.SMTP_PORT)


def test_dns_services_use_the_native_configs_and_addresses(
    compose: dict[str, Any], prepared: prepare.TierBFiles
) -> None:
    nsd, unbound = _argv(compose["nsd"]), _argv(compose["unbound"])
    assert nsd == ["nsd", "-d", "-c", f"{STATE}/tier-b/nsd.conf"]
    assert unbound == ["unbound", "-d", "-c", f"{STATE}/tier-b/unbound.conf"]
    assert _local(_option(nsd, "-c"), prepared.state_dir) == prepared.nsd_conf
    assert _local(_option(unbound, "-c"), prepared.state_dir) == prepared.unbound_conf
    assert f"ip-address: {DEFAULT_LAYOUT.nsd}@53" in prepared.nsd_conf.read_text()
    assert f"interface: {DEFAULT_RESOLVER_ADDR}@53" in prepared.unbound_conf.read_text()
    assert prepared.endpoints["dns"] == f"{DEFAULT_RESOLVER_ADDR}:53"
    # The health checks knock on the same addresses.
    assert compose["nsd"]["healthcheck"]["test"][-1].endswith(f"/dev/tcp/{DEFAULT_LAYOUT.nsd}/53")
    assert compose["unbound"]["healthcheck"]["test"][-1].endswith(f"/dev/tcp/{DEFAULT_RESOLVER_ADDR}/53")


def test_nginx_service_runs_the_native_command(compose: dict[str, Any], prepared: prepare.TierBFiles) -> None:
    native = nginx_argv(prepared.nginx)
    in_compose = _argv(compose["nginx"])
    mapped = [str(prepared.state_dir / a.removeprefix(STATE + "/")) if a.startswith(STATE) else a
              for a in in_compose]  # fmt: skip
    assert mapped == native
    listens = re.findall(r"listen ([0-9.]+):(\d+) ssl;", prepared.nginx.conf.read_text())
    assert listens and {int(port) for _, port in listens} == {prepare.HTTPS_PORT}


def test_postfix_service_runs_the_prepared_instance(
    compose: dict[str, Any], prepared: prepare.TierBFiles
) -> None:
    script = _argv(compose["postfix"])[-1]
    config = prepared.postfix_config
    assert config is not None and (config / "main.cf").exists() and (config / "master.cf").exists()
    assert f"postfix -c {STATE}/{config.relative_to(prepared.state_dir)} start-fg" in script
    master = (config / "master.cf").read_text().splitlines()[0]
    assert master.split()[0].endswith(f":{prepare.POSTFIX_PORT}")


def _native_scan_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> list[str]:
    """The scan command ``testbed up`` prints (its servers replaced by a written endpoints.json)."""

    def fake_up(spec: control.WorldSpec, state_dir: Path, *args: object, **kwargs: object) -> dict[str, Any]:
        endpoints = {
            "dns": "127.0.0.53:10053", "smtp_port": 25, "https_port": 443,
            "ca_file": str(state_dir / "pki/ca.pem"),
            "intermediates": str(state_dir / "pki/intermediate.pem"),
            "preflight_bogus": PREFLIGHT_BOGUS[0],
        }  # fmt: skip
        (state_dir / "endpoints.json").write_text(json.dumps(endpoints))
        return {"servers": []}

    monkeypatch.setattr(control, "up", fake_up)
    assert cli.main(["up", "--scenarios", "--state-dir", str(tmp_path)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "mxscan scan" in ln)
    return shlex.split(line.strip())


def _flags(argv: list[str]) -> set[str]:
    return {a for a in argv if a.startswith("--")}


def test_scan_flags_are_those_testbed_up_prints(
    compose: dict[str, Any],
    prepared: prepare.TierBFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    native = _native_scan_line(tmp_path, monkeypatch, capsys)
    scan = ["mxscan", *_argv(compose["mxscan"])]
    assert scan[:2] == ["mxscan", "scan"]
    assert _flags(scan) == _flags(native)
    # Values: tier (b)'s resolver and the ports and CA files prepare recorded.
    ep = prepared.endpoints
    state = prepared.state_dir
    assert _option(scan, "--resolver") == ep["dns"]
    assert (
        _option(scan, "--smtp-port") == str(ep["smtp_port"]) == _option(_argv(compose["mail"]), "--smtp-port")
    )
    assert _option(scan, "--https-port") == str(ep["https_port"])
    assert str(_local(_option(scan, "--ca-file"), state)) == ep["ca_file"]
    assert str(_local(_option(scan, "--intermediates"), state)) == ep["intermediates"]
    assert _local(scan[2], state) == state / "domains.txt"
    assert _option(scan, "--out") == f"{STATE}/results.ndjson"
    assert _option(scan, "--preflight-bogus") in PREFLIGHT_BOGUS
    # The egress pre-flight goes to the world's own target (never the default providers' hosts).
    assert [_option(scan, "--egress-check")] == ep["egress_check"]
    for flag in ("--trust-store", "--ehlo-name"):
        assert _option(scan, flag) == _option(native, flag)
    # prepare's own printed command is the same scan.
    ours = prepare.scan_argv(ep, str(state / "domains.txt"), "results.ndjson")
    assert _flags(ours) == _flags(native)


def test_mail_fleet_keeps_off_nginx_port(compose: dict[str, Any]) -> None:
    mail = _argv(compose["mail"])
    assert mail[:4] == ["python", "-m", "testbed", "serve-mail"]
    assert _option(mail, "--https-port") != str(prepare.HTTPS_PORT)  # 443 is nginx's
    assert _option(mail, "--pki-dir") == f"{STATE}/pki"
