"""The scanner's documented timeout, retry and address policy, as the truth reads it.

The truth (``truth.py``) says what a *correct* scan reports, and for the
Internet-like hosts (``internet.py``) that depends on the scanner's policy: a
greeting after 15 s is a success under a 20 s phase deadline and a banner
timeout under a 10 s one.  Every parameter the truth needs lives here, once;
the defaults are the scanner's defaults (issue #12's policy: connect 10 s, each
phase 20 s, a timed-out host retried at most once, a greylisting 4xx greeting
retried once after a delay, at most 4 addresses per family of an MX host).  A
scan run with other options gets its truth from a policy with the same values
(``mxscan testbed truth --policy FILE``, a TOML file of these field names).

The truth says "timeout in phase X", never "after N seconds": the values here
only decide *whether* a slow host times out, and in which phase.

This package imports nothing of the scanner's, so the values are written here
rather than read from it; keep them equal to the scanner's defaults.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

__all__ = ["DEFAULT_POLICY", "ScanPolicy", "load_policy"]


@dataclass(frozen=True, slots=True)
class ScanPolicy:
    """Fields (seconds unless said otherwise):

    connect_timeout: TCP connect deadline per attempt.
    phase_timeout: deadline of each SMTP phase (banner, each command, the TLS handshake).
    host_timeout: deadline of one whole exchange with one address.
    timeout_retries: connections again after a timeout (connect or any phase).
    transient_retries: connections again after a transient 4xx greeting (421/450/451/452:
      greylisting and "try later"); the retry comes after a delay.
    per_address_connections: connections at once to one address (so a host answering 421
      above N >= this many connections per client never shows its 421).
    max_addresses_per_family: addresses of one MX host probed per address family, in answer
      order; the rest are recorded as not probed ("host-cap").
    max_addresses_per_domain: addresses probed for one domain over its followed MX hosts
      (preference order, IPv4 first per host); the rest are recorded as not probed ("domain-cap").
    fetch_connect, fetch_tls, fetch_headers, fetch_body, fetch_total: the MTA-STS policy
      fetch's deadlines per phase and in all.
    fetch_retries: fetches again after a timeout.
    margin: the world draws no delay within this many seconds of a deadline above, so
      latency, jitter and a loaded machine cannot turn a verdict over.
    """

    connect_timeout: float = 10.0
    phase_timeout: float = 20.0
    host_timeout: float = 90.0
    timeout_retries: int = 1
    transient_retries: int = 1
    per_address_connections: int = 1
    max_addresses_per_family: int = 4
    max_addresses_per_domain: int = 32
    fetch_connect: float = 10.0
    fetch_tls: float = 10.0
    fetch_headers: float = 10.0
    fetch_body: float = 10.0
    fetch_total: float = 30.0
    fetch_retries: int = 1
    margin: float = 2.0

    def attempts_after_timeout(self) -> int:
        return 1 + self.timeout_retries

    def clear_of(self, delay: float, deadline: float) -> float:
        """``delay`` moved out of the band ``deadline`` +/- ``margin`` (to its nearer edge)."""
        if abs(delay - deadline) >= self.margin:
            return delay
        return deadline - self.margin if delay < deadline else deadline + self.margin


DEFAULT_POLICY = ScanPolicy()


def load_policy(path: str | Path) -> ScanPolicy:
    """A policy from TOML (any subset of the field names); unknown keys are an error."""
    data = tomllib.loads(Path(path).read_text())
    types = {f.name: f.type for f in fields(ScanPolicy)}
    unknown = set(data) - set(types)
    if unknown:
        raise ValueError(f"unknown policy keys: {', '.join(sorted(unknown))}")
    values: dict[str, float | int] = {}
    for key, value in data.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"policy {key} must be a number >= 0, got {value!r}")
        values[key] = int(value) if types[key] == "int" else float(value)
    return replace(DEFAULT_POLICY, **values)  # type: ignore[arg-type]
