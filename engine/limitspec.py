"""Per-provider limit specs: ``--provider-limit google.com=8/2s`` and a TOML file.

A spec value is ``C`` (at most C connections at once, no rate limit) or
``C/W`` with a window W of ``Ns`` or ``Nms`` (also at most C *new*
connections per window: a token bucket with rate C/W per second and burst C).
So ``8/2s`` is 8 concurrent and 4 new per second, 8 of them back to back.

TOML (``load_limits_toml``)::

    [limits]
    "google.com" = "8/2s"
    "example.net" = "2"

    [default]
    provider = "4/1s"   # any provider not listed under [limits]
    ip = "1"            # every MX address, on top of its provider's limit

Everything is returned as one ``dict[str, Limit]``: providers under their
names, the defaults under the reserved keys ``DEFAULT_PROVIDER_KEY`` and
``PER_IP_KEY`` (a colon never occurs in a host name).  Merge layers with
``{**limit_table(big), **load_limits_toml(path), **dict(cli_specs)}`` and look
up with ``provider_limit``.  Which providers are big is mail data, not the
engine's: the caller names them (the scan: its top mail providers).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from engine.limits import Limit
from engine.tomldoc import parse_toml, read_toml_text

__all__ = [
    "BIG_PROVIDER_LIMIT",
    "DEFAULT_PROVIDER_KEY",
    "DEFAULT_PROVIDER_LIMIT",
    "PER_IP_KEY",
    "PER_IP_LIMIT",
    "limit_table",
    "load_limits_toml",
    "parse_limit_spec",
    "parse_limit_value",
    "provider_limit",
]

DEFAULT_PROVIDER_KEY = "default:provider"
PER_IP_KEY = "default:ip"

#: 32/125ms for each big provider (the scan's: the study's top-10 mail providers): at most
#: 32 connections at once and 256 new per second, a cap that only smooths bursts (32
#: sessions of >= 125 ms cannot open more).
#: Ordinary mail is far heavier: Postfix opens up to 20 sessions per destination
#: *domain* (default_destination_concurrency_limit), so a mail server delivering to a
#: few outlook.com customers already exceeds 32 toward the provider.  Most of these
#: providers serve tens of thousands of domains from a handful of shared MX hosts probed
#: once each, so their limit hardly matters; outlook.com gives every customer its own MX
#: name (one probe each: ~10k at 100k domains), so its limit sets the floor of a scan's
#: wall time: 4/s made a 100k scan wait ~45 minutes, 16 at once / 64 per s ~165 s, 20 at
#: once ~105 s (all measured, benchmarks/README.md).  The per-address limit (one session
#: at a time) still holds.
BIG_PROVIDER_LIMIT = Limit(concurrency=32, rate=256.0, burst=32.0)
#: 4/1s for any other provider: most are one organisation's own MTAs (one or
#: two hosts); 4 at once still lets a multi-host provider be scanned in parallel.
DEFAULT_PROVIDER_LIMIT = Limit(concurrency=4, rate=4.0, burst=4.0)
#: One connection at a time per MX address: an MTA then never sees more than
#: one session from us, the usual expectation of a polite client.
PER_IP_LIMIT = Limit(concurrency=1)

#: Upper bounds that catch typos (``8000/1ms``) rather than express policy.
MAX_CONCURRENCY = 10_000
_VALUE = re.compile(r"(?P<conc>[0-9]+)(?:/(?P<num>[0-9]+(?:\.[0-9]+)?)?(?P<unit>ms|s))?")
_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.:-]*[a-z0-9_])?")


def limit_table(big_providers: Iterable[str]) -> dict[str, Limit]:
    """A built-in table: ``big_providers`` at ``BIG_PROVIDER_LIMIT`` plus both defaults."""
    table = dict.fromkeys(big_providers, BIG_PROVIDER_LIMIT)
    table[DEFAULT_PROVIDER_KEY] = DEFAULT_PROVIDER_LIMIT
    table[PER_IP_KEY] = PER_IP_LIMIT
    return table


def provider_limit(table: Mapping[str, Limit], provider: str | None) -> Limit:
    """The limit for ``provider`` (None: unattributed), else the table's or built-in default."""
    if provider is not None:
        found = table.get(provider.lower().rstrip("."))
        if found is not None:
            return found
    return table.get(DEFAULT_PROVIDER_KEY, DEFAULT_PROVIDER_LIMIT)


def parse_limit_value(text: str) -> Limit:
    """``"8"``, ``"8/2s"``, ``"8/500ms"``, ``"8/s"`` → Limit; ValueError saying what is wrong."""
    value = text.strip().replace(" ", "")
    match = _VALUE.fullmatch(value)
    if match is None:
        raise ValueError(
            f"limit {text!r}: expected CONCURRENCY or CONCURRENCY/WINDOW, e.g. '8' or '8/2s' or '8/500ms'"
        )
    concurrency = int(match["conc"])
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"limit {text!r}: concurrency must be between 1 and {MAX_CONCURRENCY}")
    if match["unit"] is None:
        return Limit(concurrency=concurrency)
    window = float(match["num"] or 1) / (1000.0 if match["unit"] == "ms" else 1.0)
    if window <= 0:
        raise ValueError(f"limit {text!r}: the window must be longer than zero")
    return Limit(concurrency=concurrency, rate=concurrency / window, burst=float(concurrency))


def parse_limit_spec(spec: str) -> tuple[str, Limit]:
    """``"google.com=8/2s"`` → ``("google.com", Limit(8, rate=4.0, burst=8.0))``; ValueError if malformed."""
    name, sep, value = spec.partition("=")
    key = name.strip().lower().rstrip(".")
    if not sep:
        raise ValueError(f"limit spec {spec!r}: expected NAME=LIMIT, e.g. 'google.com=8/2s'")
    if not _NAME.fullmatch(key):
        raise ValueError(f"limit spec {spec!r}: {name.strip()!r} is not a provider name")
    return key, parse_limit_value(value)


def load_limits_toml(path: str | os.PathLike[str]) -> dict[str, Limit]:
    """Limits from a TOML file (see the module docstring); ValueError naming the bad entry."""
    text = read_toml_text(path)
    data = parse_toml(text, os.fspath(path), ("limits", "default"), expected="[limits], [default]")
    table: dict[str, Limit] = {}
    for name, value in _table(data, "limits", path).items():
        key, limit = parse_limit_spec(f"{name}={_text(value, f'limits.{name}', path)}")
        table[key] = limit
    defaults = _table(data, "default", path)
    for name, key in (("provider", DEFAULT_PROVIDER_KEY), ("ip", PER_IP_KEY)):
        if name in defaults:
            table[key] = parse_limit_value(_text(defaults[name], f"default.{name}", path))
    extra = set(defaults) - {"provider", "ip"}
    if extra:
        raise ValueError(
            f"{os.fspath(path)}: unknown key(s) {sorted(extra)} in [default]; expected provider, ip"
        )
    return table


def _table(data: Mapping[str, object], name: str, path: str | os.PathLike[str]) -> Mapping[str, object]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ValueError(f"{os.fspath(path)}: [{name}] must be a table")
    return value


def _text(value: object, where: str, path: str | os.PathLike[str]) -> str:
    # Accept a bare integer (concurrency only) as a convenience: "example.net" = 2.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f'{os.fspath(path)}: {where} must be a string like "8/2s"')
    return str(value)
