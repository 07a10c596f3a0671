"""``mxscan scan``'s argument handling, driven through ``main(argv)`` and the parser in-process.

Every flag lands in its config field, every field has its documented default, bad values
and contradicting flags exit 2 with the message the README promises, and ``--out`` (plain
or ``.gz``), ``--fresh`` and resuming behave as documented against a real loopback resolver.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
from pathlib import Path
from typing import Any

import pytest

from engine.exclude import ExcludeList
from engine.limits import Limit
from engine.limitspec import PER_IP_KEY, parse_limit_spec
from engine.options import OptionError, config_from, declared
from mxscan import defaults
from mxscan.cli import _build_parser, main
from mxscan.config import ScanConfig
from probes.dns.client import DNS_ATTEMPTS, DNS_IN_FLIGHT, DNS_TIMEOUT
from probes.plan import MAX_ADDRESSES_PER_DOMAIN, MAX_ADDRESSES_PER_HOST
from probes.providers import default_limits
from probes.retry import SMTP_RETRIES, SMTP_RETRY_DELAY
from probes.smtp.polite import MAX_OPEN_CONNECTIONS, SMTP_IN_FLIGHT
from probes.smtp.session import SMTP_CONNECT_TIMEOUT, SMTP_TIMEOUT
from report.openmetrics import METRICS_INTERVAL, METRICS_TOP
from testbed.harness import Endpoint
from testbed.pki import TestPki
from tests.e2e.worldscan import dns_scan_args

#: field -> its default as the README and ``defaults`` document it.
DEFAULTS: dict[str, Any] = {
    "resolver": ("127.0.0.1", 53),
    "fresh": False,
    "retry_unknown": False,
    "shard": None,
    "cluster": None,
    "concurrency": defaults.CONCURRENCY,
    "max_parked": defaults.MAX_PARKED,
    "dns_in_flight": DNS_IN_FLIGHT,
    "dns_timeout": DNS_TIMEOUT,
    "dns_attempts": DNS_ATTEMPTS,
    "preflight_signed": ".",
    "preflight_bogus": "dnssec-failed.org",
    "require_validation": False,
    "grace": defaults.SHUTDOWN_GRACE,
    "progress": "auto",
    "summary_json": None,
    "metrics": None,
    "metrics_interval": METRICS_INTERVAL,
    "metrics_top": METRICS_TOP,
    "provider_overrides": None,
    "exclude": None,
    "provider_limits": (),
    "limits": default_limits(),
    "dns_only": False,
    "ehlo_name": None,
    "contact": "",
    "smtp_port": 25,
    "inline_probes": False,
    "smtp_in_flight": SMTP_IN_FLIGHT,
    "max_open_connections": MAX_OPEN_CONNECTIONS,
    "max_addresses_per_host": MAX_ADDRESSES_PER_HOST,
    "max_addresses_per_domain": MAX_ADDRESSES_PER_DOMAIN,
    "per_ip_connections": 1,
    "smtp_connect_timeout": SMTP_CONNECT_TIMEOUT,
    "smtp_timeout": SMTP_TIMEOUT,
    "smtp_host_timeout": 90.0,
    "smtp_retries": SMTP_RETRIES,
    "smtp_retry_delay": SMTP_RETRY_DELAY,
    "https_port": 443,
    "ipv6": True,
    "egress_check": (),
    "skip_egress_check": False,
    "trust_store": "mozilla",
    "ca_files": (),
    "intermediates": (),
    "keep_certs": False,
}

#: (arguments, field, value): every scan flag, each given a value other than its default.
GIVEN: list[tuple[tuple[str, ...], str, Any]] = [
    (("--resolver", "[::1]:5353"), "resolver", ("::1", 5353)),
    (("--resolver", "127.0.0.2"), "resolver", ("127.0.0.2", 53)),
    (("--fresh",), "fresh", True),
    (("--retry-unknown",), "retry_unknown", True),
    (("--shard", "2/3"), "shard", (2, 3)),
    (("--cluster", "local:2"), "cluster", "local:2"),
    (("--concurrency", "7"), "concurrency", 7),
    (("--max-parked", "0"), "max_parked", 0),
    (("--dns-in-flight", "3"), "dns_in_flight", 3),
    (("--dns-timeout", "0.5"), "dns_timeout", 0.5),
    (("--dns-attempts", "10"), "dns_attempts", 10),
    (("--preflight-signed", "signed.test"), "preflight_signed", "signed.test"),
    (("--preflight-bogus", "bogus.test"), "preflight_bogus", "bogus.test"),
    (("--require-validation",), "require_validation", True),
    (("--grace", "2"), "grace", 2.0),
    (("--progress", "plain"), "progress", "plain"),
    (("--summary-json", "{tmp}/s.json"), "summary_json", "{tmp}/s.json"),
    (("--metrics", "{tmp}/m.prom"), "metrics", "{tmp}/m.prom"),
    (("--metrics-interval", "1.5"), "metrics_interval", 1.5),
    (("--metrics-top", "3"), "metrics_top", 3),
    (("--provider-limit", "a.test=2", "--provider-limit", "b.test=3/2s"), "provider_limits",
     (parse_limit_spec("a.test=2"), parse_limit_spec("b.test=3/2s"))),
    (("--dns-only",), "dns_only", True),
    (("--ehlo-name", "scanner.example"), "ehlo_name", "scanner.example"),
    (("--contact", "https://scan.example/"), "contact", "https://scan.example/"),
    (("--smtp-port", "2525"), "smtp_port", 2525),
    (("--inline-probes",), "inline_probes", True),
    (("--smtp-in-flight", "9"), "smtp_in_flight", 9),
    (("--max-open-connections", "16384"), "max_open_connections", 16384),
    (("--max-addresses-per-host", "2"), "max_addresses_per_host", 2),
    (("--max-addresses-per-domain", "5"), "max_addresses_per_domain", 5),
    (("--per-ip-connections", "4"), "per_ip_connections", 4),
    (("--smtp-connect-timeout", "1"), "smtp_connect_timeout", 1.0),
    (("--smtp-timeout", "2"), "smtp_timeout", 2.0),
    (("--smtp-host-timeout", "30"), "smtp_host_timeout", 30.0),
    (("--smtp-retries", "0"), "smtp_retries", 0),
    (("--smtp-retry-delay", "0.25"), "smtp_retry_delay", 0.25),
    (("--https-port", "8443"), "https_port", 8443),
    (("--no-ipv6",), "ipv6", False),
    (("--egress-check", "mx.test", "--egress-check", "127.0.0.9:26"), "egress_check",
     (("mx.test", 25), ("127.0.0.9", 26))),
    (("--skip-egress-check",), "skip_egress_check", True),
    (("--trust-store", "none"), "trust_store", "none"),
    (("--keep-certs",), "keep_certs", True),
]  # fmt: skip


def _scan_parser() -> argparse.ArgumentParser:
    sub = next(a for a in _build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices["scan"]
    return parser


def _config(*args: str) -> ScanConfig:
    return config_from(
        _build_parser().parse_args(["scan", "list.txt", "--out", "r.ndjson", *args]), ScanConfig
    )


def _with_tmp(value: Any, tmp: Path) -> Any:
    return Path(value.format(tmp=tmp)) if isinstance(value, str) and "{tmp}" in value else value


def test_without_flags_every_field_has_its_documented_default() -> None:
    cfg = _config()
    assert (cfg.domains, cfg.out) == ("list.txt", Path("r.ndjson"))
    assert {f.name for f in dataclasses.fields(cfg)} - {"domains", "out"} == set(DEFAULTS)
    assert {name: getattr(cfg, name) for name in DEFAULTS} == DEFAULTS


def test_the_config_class_defaults_are_the_flags_defaults() -> None:
    """A config made in code (tests, benchmarks) is the config the command line makes."""
    assert ScanConfig(domains="list.txt", out=Path("r.ndjson")) == _config()


@pytest.mark.parametrize(("args", "name", "value"), GIVEN, ids=[" ".join(a) for a, _, _ in GIVEN])
def test_each_flag_fills_its_config_field(
    tmp_path: Path, args: tuple[str, ...], name: str, value: Any
) -> None:
    cfg = _config(*(arg.format(tmp=tmp_path) for arg in args))
    assert getattr(cfg, name) == _with_tmp(value, tmp_path)
    # These make (or divide) the limit table.
    also = {"limits"} if name in ("provider_limits", "per_ip_connections", "shard") else set()
    others = {f: v for f, v in DEFAULTS.items() if f != name and f not in also}
    assert {f: getattr(cfg, f) for f in others} == others, "one flag changed another field"


def test_every_scan_flag_is_covered_here() -> None:
    """A new option must get a row in GIVEN (and DEFAULTS), or this fails."""
    flags = {a.option_strings[0] for a in _scan_parser()._actions if a.option_strings} - {"-h"}
    covered = {arg for args, _, _ in GIVEN for arg in args if arg.startswith("--")}
    read = {"--exclude", "--limits", "--providers", "--ca-file", "--intermediates"}  # files: tests below
    assert flags - {"--out"} - read == covered - {"--help"}


def test_out_has_a_short_form_and_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    args = _build_parser().parse_args(["scan", "list.txt", "-o", "r.ndjson.gz"])
    assert config_from(args, ScanConfig).out == Path("r.ndjson.gz")
    with pytest.raises(SystemExit) as exited:
        main(["scan", "list.txt"])
    assert exited.value.code == 2
    assert "the following arguments are required: --out/-o" in capsys.readouterr().err


def test_limit_table_layers_file_then_flags_then_per_ip(tmp_path: Path) -> None:
    table = tmp_path / "limits.toml"
    table.write_text('[limits]\n"a.test" = "2/1s"\n"b.test" = "3"\n')
    cfg = _config("--limits", str(table), "--provider-limit", "b.test=5", "--per-ip-connections", "2")
    assert cfg.limits["a.test"] == parse_limit_spec("a.test=2/1s")[1]
    assert cfg.limits["b.test"] == Limit(concurrency=5)  # the flag over the file
    assert cfg.limits[PER_IP_KEY] == Limit(concurrency=2)
    assert _config("--per-ip-connections", "1").limits == default_limits()


def test_exclude_file_is_loaded_into_the_config(tmp_path: Path) -> None:
    listing = tmp_path / "optout.txt"
    listing.write_text("private.test\n192.0.2.0/24\n")
    cfg = _config("--exclude", str(listing))
    assert isinstance(cfg.exclude, ExcludeList) and cfg.exclude.excludes_name("mail.private.test")


def test_the_files_options_name_are_read_into_the_config(tmp_path: Path) -> None:
    """--providers keeps its text, --ca-file its (checked) paths, --intermediates its certificates."""
    pki = TestPki(label="cli")
    root, bundle, overrides = tmp_path / "root.pem", tmp_path / "inter.pem", tmp_path / "p.toml"
    root.write_bytes(pki.root_pem())
    bundle.write_bytes(pki.intermediate_pems())
    overrides.write_text('[[override]]\nsuffix = "mail.test"\nprovider = "test"\n')
    cfg = _config("--providers", str(overrides), "--ca-file", str(root), "--intermediates", str(bundle))
    assert cfg.provider_overrides == overrides.read_text()
    assert cfg.ca_files == (str(root),)
    assert len(cfg.intermediates) == 2 and all(der.startswith(b"0\x82") for der in cfg.intermediates)


#: (flag, the file's content or None for a missing file, the problem after "FLAG FILE: ").
UNUSABLE_FILES = [
    ("--exclude", None, "cannot read (No such file or directory)"),
    ("--exclude", "not a domain!!\n", "line 1: one entry per line, got 'not a domain!!'"),
    ("--limits", None, "cannot read (No such file or directory)"),
    ("--limits", "[limits\n", "Expected ']' at the end of a table declaration (at line 1, column 8)"),
    ("--providers", None, "cannot read (No such file or directory)"),
    ("--providers", "[[nope]]\n", "unknown table(s) ['nope']"),
    ("--ca-file", None, "cannot read (No such file or directory)"),
    ("--ca-file", "hello\n", "no PEM certificate found"),
    ("--intermediates", None, "cannot read (No such file or directory)"),
    ("--intermediates", "hello\n", "no PEM certificate found"),
]


@pytest.mark.parametrize(
    ("flag", "content", "problem"),
    UNUSABLE_FILES,
    ids=[f"{f}-{'bad' if c else 'missing'}" for f, c, _ in UNUSABLE_FILES],
)
def test_a_file_an_option_names_that_cannot_be_used_exits_2_naming_the_option_and_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, content: str | None, problem: str
) -> None:
    """Never a bare "[Errno 2] ...": the user learns which option and which file, before any work."""
    named = tmp_path / "named"
    if content is not None:
        named.write_text(content)
    out = tmp_path / "r.ndjson"
    argv = ["scan", "list.txt", "--out", str(out), "--ehlo-name", "scanner.test", flag, str(named)]
    assert _usage_error(argv, capsys) == f"{flag} {named}: {problem}"
    assert not out.exists()


def test_a_domain_list_that_cannot_be_read_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing, out = tmp_path / "missing.txt", tmp_path / "r.ndjson"
    argv = ["scan", str(missing), "--out", str(out), "--dns-only"]
    assert _usage_error(argv, capsys) == f"domain list {missing}: cannot read (No such file or directory)"
    assert not out.exists()


def test_egress_targets_take_the_smtp_port_given_in_any_order() -> None:
    assert _config("--egress-check", "mx.test", "--smtp-port", "2525").egress_check == (("mx.test", 2525),)


BAD_VALUES = [
    ("--resolver", ":53", "--resolver must be HOST[:PORT] (e.g. 127.0.0.1:53), got ':53'"),
    ("--resolver", "[::1]:x", "--resolver must be HOST[:PORT] with a port 1-65535, got '[::1]:x'"),
    ("--dns-attempts", "11", "--dns-attempts must be a whole number 1-10, got 11"),
    ("--max-open-connections", "16385", "--max-open-connections must be a whole number 1-16384, got 16385"),
    ("--max-addresses-per-host", "0", "--max-addresses-per-host must be a whole number >= 1, got 0"),
    ("--max-addresses-per-domain", "x", "--max-addresses-per-domain must be a whole number >= 1, got x"),
    ("--metrics-top", "0", "--metrics-top must be a whole number >= 1, got 0"),
    ("--metrics-interval", "0", "--metrics-interval must be a number of seconds > 0, got 0"),
    ("--smtp-retries", "11", "--smtp-retries must be a whole number 0-10, got 11"),
    ("--https-port", "65536", "--https-port must be a port number 1-65535, got 65536"),
    ("--progress", "loud", "--progress: invalid choice: 'loud' (choose from 'auto', 'tty', 'plain', 'off')"),
    ("--trust-store", "os", "--trust-store: invalid choice: 'os'"),
]


@pytest.mark.parametrize(("flag", "value", "message"), BAD_VALUES, ids=[f"{f}={v}" for f, v, _ in BAD_VALUES])
def test_a_bad_value_exits_2_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    out = tmp_path / "r.ndjson"
    with pytest.raises(SystemExit) as exited:
        main(["scan", "list.txt", "--out", str(out), f"{flag}={value}"])
    assert exited.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"mxscan scan: error: {message}"), last
    assert not out.exists()


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mxscan: "), err
    return err.removeprefix("mxscan: ").strip()


def test_retry_unknown_and_fresh_contradict_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.ndjson"
    out.write_text("kept\n")
    argv = ["scan", "list.txt", "--out", str(out), "--dns-only"]
    for order in (["--retry-unknown", "--fresh"], ["--fresh", "--retry-unknown"]):
        assert _usage_error([*argv, *order], capsys) == "--retry-unknown and --fresh contradict each other"
    assert out.read_text() == "kept\n"


@pytest.mark.parametrize(
    ("flag", "content", "expected"),
    [
        ("--limits", '[limits]\n"a.test" = "x"\n', "limit 'x': expected CONCURRENCY or CONCURRENCY/WINDOW"),
        ("--provider-limit", None, "limit 'fast': expected CONCURRENCY or CONCURRENCY/WINDOW"),
        ("--exclude", None, "No such file or directory"),
    ],
)
def test_a_file_or_spec_that_cannot_be_used_exits_2_before_anything_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, content: str | None, expected: str
) -> None:
    value = "google.com=fast" if flag == "--provider-limit" else str(tmp_path / "missing")
    if content is not None:
        (tmp_path / "missing").write_text(content)
    problem = _usage_error(["scan", "list.txt", "--out", str(tmp_path / "r.ndjson"), flag, value], capsys)
    assert expected in problem, problem
    assert not (tmp_path / "r.ndjson").exists()


@pytest.mark.parametrize("flag", ["--summary-json", "--metrics"])
def test_an_output_that_cannot_be_written_exits_2_naming_its_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = ["scan", "list.txt", "--out", str(tmp_path / "r.ndjson"), flag, f"{blocker}/x"]
    assert _usage_error(argv, capsys).startswith(f"{flag}: cannot create the directory for {blocker}/x")


def test_contradiction_is_reported_before_files_are_read(tmp_path: Path) -> None:
    args = _build_parser().parse_args(
        ["scan", "l", "--out", "r", "--fresh", "--retry-unknown", "--exclude", str(tmp_path / "none")]
    )
    with pytest.raises(OptionError, match="contradict"):
        config_from(args, ScanConfig)


def test_smtp_without_an_ehlo_name_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MXSCAN_EHLO_NAME", raising=False)
    problem = _usage_error(["scan", "list.txt", "--out", str(tmp_path / "r.ndjson")], capsys)
    assert problem.startswith("set --ehlo-name (or MXSCAN_EHLO_NAME)")


def test_retry_unknown_needs_an_existing_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("a.test\n")
    out = tmp_path / "r.ndjson.gz"
    problem = _usage_error(["scan", str(listing), "--out", str(out), "--dns-only", "--retry-unknown"], capsys)
    assert problem == f"{out}: no results file to retry (run the scan first)"


# --- against a real loopback resolver (the scenario world's DNS): --out forms, --fresh, resume ----


def _dns_scan(shared_resolver: Endpoint, listing: Path, out: Path, *extra: str) -> int:
    return main(dns_scan_args(f"{shared_resolver.host}:{shared_resolver.port}", listing, out, *extra))


def _domains(data: bytes) -> list[str]:
    return [line for line in data.decode().splitlines() if '"domain"' in line]


@pytest.mark.parametrize("name", ["r.ndjson", "r.ndjson.gz"])
def test_out_plain_or_gz_resumes_without_measuring_again_and_fresh_starts_over(
    shared_resolver: Endpoint, tmp_path: Path, name: str
) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("nxdomain.scenario.test\nsigned.scenario.test\n")
    out = tmp_path / name

    def read() -> bytes:
        return gzip.decompress(out.read_bytes()) if name.endswith(".gz") else out.read_bytes()

    assert _dns_scan(shared_resolver, listing, out) == 0
    first = _domains(read())
    assert len(first) == 2
    listing.write_text("nxdomain.scenario.test\nsigned.scenario.test\nmulti-mx.scenario.test\n")
    assert _dns_scan(shared_resolver, listing, out) == 0  # no --fresh: resume, only the new name is measured
    resumed = _domains(read())
    assert resumed[:2] == first and len(resumed) == 3
    assert _dns_scan(shared_resolver, listing, out, "--fresh") == 0
    fresh = _domains(read())
    assert len(fresh) == 3 and fresh[0] != first[0]  # measured again: a new measured_at


def _readme_options() -> dict[str, str]:
    """README's Options table: flag -> its default column."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("### Options", 1)[1].split("\n\n", 2)[1]
    rows = [row.split(" | ") for row in table.splitlines()[2:]]
    return {row[0].strip("| `").split(" ")[0].rstrip("`,"): row[1].strip() for row in rows}


def test_the_readme_lists_every_scan_option_with_its_declared_default() -> None:
    documented = _readme_options()
    for field, opt in declared(ScanConfig):
        if not opt.flags[0].startswith("-"):
            continue  # the list itself
        shown = documented.get(opt.flags[0])
        assert shown is not None, f"README's Options table has no row for {opt.flags[0]}"
        default = field.default
        if opt.action in ("store_true", "store_false"):
            assert shown == "off", (opt.flags[0], shown)
        elif isinstance(default, int | float) and not isinstance(default, bool):
            assert float(shown) == default, (opt.flags[0], shown, default)
        elif isinstance(default, str) and default:
            assert shown.strip("`") == default, (opt.flags[0], shown, default)
    assert documented["--resolver"] == "`127.0.0.1:53`" and DEFAULTS["resolver"] == ("127.0.0.1", 53)
