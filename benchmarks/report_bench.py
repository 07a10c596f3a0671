"""Benchmark: ``mxscan report`` (and diff) over 100,000 synthetic domains.

Writes a realistic mix of records (the study's provider shares, DNS-only lines,
invalid input, crashes, timeouts, MTA-STS and DANE adopters) built with the real
dataclasses and ``engine.records.encode`` to a temporary NDJSON file, then runs
each command in a fresh subprocess and prints wall time and peak RSS
(``resource.getrusage(RUSAGE_CHILDREN)``), with a baseline in the same run:
the time just to stream and parse the file with ``read_records``.

    .venv/bin/python benchmarks/report_bench.py [--domains 100000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.records import encode  # noqa: E402
from probes.dane.tlsa import DaneStatus  # noqa: E402
from probes.domain import DomainRecord, RunEnd, run_line  # noqa: E402
from probes.mtasts.records import Finding  # noqa: E402
from probes.smtp.records import SmtpResult  # noqa: E402
from tests.unit.test_report_figures import host_lines, record, smtp, sts_result  # noqa: E402

#: (provider, MX hosts, weight) roughly as the study's top-10 table, plus a long tail.
PROVIDERS = [
    ("google.com", ("aspmx.l.google.com", "alt1.aspmx.l.google.com"), 208),
    ("outlook.com", ("{d}.mail.protection.outlook.com",), 105),
    ("googlemail.com", ("aspmx2.googlemail.com",), 85),
    ("pphosted.com", ("mx0a-{d}.pphosted.com",), 32),
    ("mimecast.com", ("eu-smtp-inbound-1.mimecast.com",), 15),
    ("registrar-servers.com", ("mx1.privateemail.registrar-servers.com",), 13),
    ("amazonaws.com", ("inbound-smtp.us-east-1.amazonaws.com",), 13),
    ("qq.com", ("mxbiz1.qq.com", "mxdomain.qq.com"), 10),
    ("cloudflare.net", ("route1.mx.cloudflare.net",), 9),
    ("yandex.net", ("mx.yandex.net",), 6),
    ("(self)", ("mx.{d}",), 150),
]


def _templates(rng: random.Random) -> list[tuple[str, object]]:
    """(kind, factory of a record for a domain name) pairs to draw from."""
    out: list[tuple[str, object]] = []
    for provider, hosts, weight in PROVIDERS:
        out += [("provider", (provider, hosts))] * weight
    out += [("nomx", None)] * 300 + [("dnsonly", None)] * 40 + [("invalid", None)] * 5
    out += [("crash", None)] * 2 + [("timeout", None)] * 10
    rng.shuffle(out)
    return out


def _make(domain: str, kind: str, arg: object, rng: random.Random) -> DomainRecord:
    if kind == "invalid":
        return record(f"bad..{domain}", status="invalid-input", reason="empty-label")
    if kind == "crash":
        return record(domain, status="unknown-error", reason="RuntimeError: boom")
    if kind == "timeout":
        return record(domain, mx_outcome="timeout")
    if kind == "nomx":
        return record(domain, implicit=rng.random() < 0.5, null_mx=rng.random() < 0.05)
    if kind == "dnsonly":
        return record(
            domain, mx=((10, f"mx.{domain}", None, ()),), dns_only=True, sts_txt=("v=STSv1; id=1;",)
        )
    provider, hosts = typing.cast(tuple[str, tuple[str, ...]], arg)
    label = domain.split(".")[0]
    names = [h.format(d=label) for h in hosts]
    prov = None if provider == "(self)" else provider
    roll = rng.random()
    probes_for = []
    for name in names:
        if prov is None and roll < 0.03:
            probe = smtp(name, starttls="no", pkix=None)
        elif prov is None and roll < 0.08:
            probe = smtp(name, pkix=rng.choice(["self-signed", "expired", "hostname-mismatch"]))
        elif name == "mxdomain.qq.com":
            probe = smtp(name, pkix="hostname-mismatch")
        elif rng.random() < 0.01:
            probe = smtp(name, starttls="unknown", pkix=None, status="io-timeout", detail="read timed out")
        else:
            probe = smtp(name)
        probes_for.append(probe)
    mx = tuple((10 * (i + 1), n, prov, (p,)) for i, (n, p) in enumerate(zip(names, probes_for, strict=True)))
    secure = provider == "cloudflare.net" or rng.random() < 0.08
    tlsa: dict[str, tuple[str, ...]] = (
        {names[0]: ("3 1 1 " + "ab" * 32,)}
        if secure and (provider == "cloudflare.net" or rng.random() < 0.1)
        else {}
    )
    dane = {names[0]: DaneStatus.MISMATCH if rng.random() < 0.05 else DaneStatus.VALID} if tlsa else {}
    mta_sts = None
    if rng.random() < 0.02:
        mode = "enforce" if rng.random() < 0.5 else "testing"
        findings = (Finding.ENFORCE_WOULD_FAIL,) if mode == "enforce" and rng.random() < 0.05 else ()
        cname = (f"{label}.sts.example.net",) if rng.random() < 0.06 else ()
        mta_sts = sts_result(
            domain, mode=mode, findings=findings, cname=cname, provider="example.net" if cname else None
        )
    return record(
        domain,
        mx=mx,
        dnssec="secure" if secure else "insecure",
        tlsa=tlsa,
        dane=dane,
        mta_sts=mta_sts,
        tlsrpt=rng.random() < 0.03,
    )


def write_results(path: Path, domains: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    templates = _templates(rng)
    cache: dict[int, DomainRecord] = {}
    written: dict[str, SmtpResult] = {}
    with path.open("wb") as out:
        for i in range(domains):
            t = rng.randrange(len(templates))
            kind, arg = templates[t]
            domain = f"d{i}.example"
            key = t * 4 + rng.randrange(4)  # a few variants per template, renamed per domain
            base = cache.get(key)
            if base is None or (kind in ("provider",) and "{d}" in str(arg)):
                base = _make(domain, kind, arg, rng)
                cache[key] = base
            out.writelines(host_lines(base, written))
            out.write(encode(dataclasses.replace(base, domain=domain)))
        # a finished scan (diff and trend refuse an unfinished file)
        out.write(
            run_line(
                RunEnd(True, domains, "2024-11-04T00:00:00.000Z", "2024-11-04T01:00:00.000Z", "mxscan", "")
            )
        )


_CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
import argparse
from report.commands import add_parsers
from engine.checkpoint import read_records
argv = {argv!r}
t0 = time.perf_counter()
if argv[0] == "parse-only":
    n = sum(1 for _ in read_records(argv[1]))
else:
    parser = argparse.ArgumentParser(); sub = parser.add_subparsers()
    add_parsers(sub)
    args = parser.parse_args(argv)
    assert args.handler(args) == 0
elapsed = time.perf_counter() - t0
print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_child(argv: list[str]) -> tuple[float, float]:
    code = _CHILD.format(root=str(ROOT), argv=argv)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    elapsed, rss_kib = out.split()[-2:]
    return float(elapsed), int(rss_kib) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results-2024-11-04.ndjson"
        t0 = time.perf_counter()
        write_results(results, args.domains)
        print(
            f"generated {args.domains:,} records ({results.stat().st_size / 1e6:.1f} MB) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        other = Path(tmp) / "results-2024-12-04.ndjson"
        write_results(other, args.domains, seed=2)
        runs = [
            ("baseline: read_records only", ["parse-only", str(results)]),
            ("report --format text", ["report", str(results), "--out", os.path.join(tmp, "r.txt")]),
            (
                "report --format json",
                ["report", str(results), "--format", "json", "--out", os.path.join(tmp, "r.json")],
            ),
            (
                "report --format html",
                ["report", str(results), "--format", "html", "--out", os.path.join(tmp, "r.html")],
            ),
            (
                "diff (two files)",
                [
                    "diff",
                    str(results),
                    str(other),
                    "--format",
                    "ndjson",
                    "--out",
                    os.path.join(tmp, "d.ndjson"),
                ],
            ),
        ]
        baseline = None
        print(f"{'command':<32} {'seconds':>8} {'peak RSS MB':>12} {'x baseline':>11}")
        for label, argv in runs:
            elapsed, rss = run_child(argv)
            baseline = baseline or elapsed
            print(f"{label:<32} {elapsed:>8.2f} {rss:>12.1f} {elapsed / baseline:>11.2f}")
        print()
        print(Path(tmp, "r.txt").read_text().split("\n\n")[0:2][1])


if __name__ == "__main__":
    main()
