"""The command line's small subcommands, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mxscan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mxscan", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_providers_lookup_names_the_study_providers() -> None:
    result = mxscan(
        "providers",
        "lookup",
        "alt1.aspmx.l.google.com",
        "contoso-com.mail.protection.outlook.com",
        "192.0.2.1",
    )
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "alt1.aspmx.l.google.com\tgoogle.com",
        "contoso-com.mail.protection.outlook.com\toutlook.com",
        "192.0.2.1\t-",
    ]


def test_providers_update_refuses_a_file_that_is_not_a_suffix_list(tmp_path: Path) -> None:
    bogus = tmp_path / "list.dat"
    bogus.write_text("hello\n")
    result = mxscan(
        "providers", "update", "--from", str(bogus), env={"XDG_CACHE_HOME": str(tmp_path / "cache")}
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (tmp_path / "cache" / "mxscan").exists() or not any((tmp_path / "cache" / "mxscan").iterdir())


def test_providers_update_stores_a_real_list(tmp_path: Path) -> None:
    import publicsuffixlist

    source = Path(publicsuffixlist.__file__).parent / "public_suffix_list.dat"
    cache = tmp_path / "cache"
    result = mxscan("providers", "update", "--from", str(source), env={"XDG_CACHE_HOME": str(cache)})
    assert result.returncode == 0, result.stderr
    assert (cache / "mxscan" / "public_suffix_list.dat").read_bytes() == source.read_bytes()


def test_schema_command_prints_the_committed_schema() -> None:
    result = mxscan("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads(
        (ROOT / "schema" / "domain-record.schema.json").read_text()
    )


def test_bad_limit_spec_is_a_clear_error(tmp_path: Path) -> None:
    listing = tmp_path / "d.txt"
    listing.write_text("example.test\n")
    result = mxscan("scan", str(listing), "--out", str(tmp_path / "o"), "--provider-limit", "google.com=lots")
    assert result.returncode == 2 and "'lots'" in result.stderr and "Traceback" not in result.stderr
