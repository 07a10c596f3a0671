"""Provider attribution: which operator runs a host (an MX, a policy host).

Rule (one, applied in order; the first that matches decides):

1. **Overrides**: the longest listed suffix that is a label-suffix of the host
   (``google.com`` matches ``mx1.l.google.com``, never ``notgoogle.com``) gives
   its provider.  The shipped table (``probes/data/providers.toml``) pins the
   study's top-10 and merges names the PSL's *private* section would split
   (``*.amazonaws.com`` → amazonaws.com, ``*.cloudflare.net`` →
   cloudflare.net, ``*.mail.protection.outlook.com`` → outlook.com).
2. **Extra public suffixes** (``[[public_suffix]]`` in the TOML): the name one
   label below the longest listed suffix (the test world's ``prov.test``).
3. **Public Suffix List**: the registrable domain (``privatesuffix``), private
   section included, so a customer of a dynamic-DNS service running their own
   MTA (``mx.alice.duckdns.org``) stays apart from other customers.  Unknown
   TLDs follow the PSL default rule ``*`` (``mx.shop-1.test`` → ``shop-1.test``).

Hosts are normalised first (``engine.names``: lowercase A-labels, trailing dot
dropped); invalid names, single labels and IP literals have no provider
(None).  RFC 8552 attribute-leaf labels (``_mta-sts.``) on the left are dropped.

The PSL is the one bundled with the ``publicsuffixlist`` package (offline)
unless a user installed a newer copy with ``update_psl`` (``mxscan providers
update --from FILE``; the list itself is published at ``PSL_URL``), which is
then used in preference.  User overrides: ``load_provider_map(extra_toml)``::

    [[override]]
    suffix = "example.net"      # also "*.example.net"
    provider = "example"

    [[public_suffix]]
    suffix = "hosting.example"
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from publicsuffixlist import PublicSuffixList

from engine.limits import Limit
from engine.limitspec import limit_table
from engine.names import normalise_domain
from engine.textfile import decode_utf8, read_at_most
from engine.tomldoc import parse_toml, read_toml_text

__all__ = [
    "BUILTIN_OVERRIDES",
    "BUILTIN_PUBLIC_SUFFIXES",
    "PSL_URL",
    "STUDY_TOP_PROVIDERS",
    "Override",
    "ProviderMap",
    "ProviderMapError",
    "default_limits",
    "default_psl_path",
    "load_provider_map",
    "parse_provider_toml",
    "read_provider_toml",
    "update_psl",
]

#: The study's top-10 mail providers (two thirds of its domains with MX), as this module
#: attributes them (the shipped table pins each): the scan's big providers, whose built-in
#: limit is ``engine.limitspec.BIG_PROVIDER_LIMIT``.
STUDY_TOP_PROVIDERS = (
    "google.com",
    "outlook.com",
    "googlemail.com",
    "pphosted.com",
    "mimecast.com",
    "registrar-servers.com",
    "amazonaws.com",
    "qq.com",
    "cloudflare.net",
    "yandex.net",
)
#: Where users with Internet access download a fresh list (then ``update_psl``).
PSL_URL = "https://publicsuffix.org/list/public_suffix_list.dat"
#: Distinct hosts remembered by ``provider_of``; MX hosts repeat heavily (the
#: study's top-10 serve two thirds of domains), the long tail does not.
PROVIDER_CACHE_SIZE = 65_536
#: A PSL file larger than this is refused (the real list is ~300 kB).
MAX_PSL_BYTES = 16 * 1024 * 1024
#: ``update_psl`` refuses a file that does not give these registrable domains.
_PSL_SANITY = {"mx.example.com": "example.com", "mx.example.co.uk": "example.co.uk"}
_ICANN_MARKER = "===BEGIN ICANN DOMAINS==="


class ProviderMapError(ValueError):
    """A provider TOML or PSL file is malformed."""


@dataclass(frozen=True, slots=True)
class Override:
    """Hosts at or below ``suffix`` (normalised, no ``*.``) belong to ``provider``."""

    suffix: str
    provider: str


def _clean_suffix(raw: object, where: str) -> str:
    if not isinstance(raw, str):
        raise ProviderMapError(f"{where}: suffix must be a string")
    text = raw.strip()
    text = text[2:] if text.startswith("*.") else text
    name, reason = normalise_domain(text)
    if name is None:
        raise ProviderMapError(f"{where}: invalid suffix {raw!r}: {reason}")
    return name


def read_provider_toml(path: str | os.PathLike[str]) -> str:
    """The text of a provider TOML file (``--providers``), checked by ``parse_provider_toml``;
    ProviderMapError naming the file when it is too large, not UTF-8 or malformed, OSError
    as ``open`` raises it."""
    text = read_toml_text(path, error=ProviderMapError)
    parse_provider_toml(text, os.fspath(path))
    return text


def parse_provider_toml(
    text: str, where: str = "provider TOML"
) -> tuple[tuple[Override, ...], tuple[str, ...]]:
    """(overrides, extra public suffixes) from TOML text; ProviderMapError if malformed."""
    data = parse_toml(text, where, ("override", "public_suffix"), error=ProviderMapError)
    overrides = []
    for i, entry in enumerate(_tables(data, "override")):
        where = f"override #{i + 1}"
        provider = entry.get("provider")
        if not isinstance(provider, str) or not provider.strip():
            raise ProviderMapError(f"{where}: provider must be a non-empty string")
        overrides.append(Override(_clean_suffix(entry.get("suffix"), where), provider.strip().lower()))
    suffixes = tuple(
        _clean_suffix(entry.get("suffix"), f"public_suffix #{i + 1}")
        for i, entry in enumerate(_tables(data, "public_suffix"))
    )
    return tuple(overrides), suffixes


def _tables(data: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ProviderMapError(f"provider TOML: {name} must be an array of tables ([[{name}]])")
    return value


def _builtin() -> tuple[tuple[Override, ...], tuple[str, ...]]:
    text = resources.files("probes.data").joinpath("providers.toml").read_text(encoding="utf-8")
    return parse_provider_toml(text)


#: The shipped table (probes/data/providers.toml).
BUILTIN_OVERRIDES, BUILTIN_PUBLIC_SUFFIXES = _builtin()


def default_limits() -> dict[str, Limit]:
    """The built-in limit table (``engine.limitspec``): the study's top-10 at the big
    providers' limit, any other provider and every address at theirs."""
    return limit_table(STUDY_TOP_PROVIDERS)


def default_psl_path() -> Path:
    """Where ``update_psl`` stores a user-supplied list: ``$XDG_CACHE_HOME/mxscan``
    (``~/.cache/mxscan`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mxscan" / "public_suffix_list.dat"


def _psl_bytes(path: str) -> bytes:
    """A stored or downloaded list's bytes, read up to the cap (``/dev/zero`` has no size)."""
    data = read_at_most(path, MAX_PSL_BYTES)
    if data is None:
        raise ProviderMapError(f"{path}: larger than {MAX_PSL_BYTES} bytes")
    return data


def _read_psl(data: bytes, where: str) -> PublicSuffixList:
    text = decode_utf8(data, where, expected="a public suffix list", error=ProviderMapError)
    if _ICANN_MARKER not in text:
        raise ProviderMapError(f"{where}: no '{_ICANN_MARKER}' line; not a public suffix list")
    psl = PublicSuffixList(text.splitlines())
    for host, expected in _PSL_SANITY.items():
        if psl.privatesuffix(host) != expected:
            raise ProviderMapError(f"{where}: gives {psl.privatesuffix(host)!r} for {host}, not {expected}")
    return psl


def update_psl(source_file: str, dest: str | None = None) -> None:
    """Validate ``source_file`` as a public suffix list and store it at ``dest``
    (default ``default_psl_path()``), atomically; later maps use it instead of
    the bundled list.  ProviderMapError if it is not a usable list.

    No network access: download ``PSL_URL`` yourself (at most daily, as the PSL
    maintainers ask), then run ``mxscan providers update --from FILE``.
    """
    data = _psl_bytes(source_file)
    _read_psl(data, source_file)
    target = Path(dest) if dest is not None else default_psl_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)  # readers see the old or the new list, never half of one


@functools.cache
def _load_psl(path: str | None) -> PublicSuffixList:
    if path is None:
        return PublicSuffixList()  # the bundled copy
    return _read_psl(_psl_bytes(path), path)


def _psl_source() -> str | None:
    """The user's stored list if there is one, else None (bundled)."""
    path = default_psl_path()
    return str(path) if path.is_file() else None


class ProviderMap:
    """Host → provider (see the module docstring for the rule); memoised."""

    def __init__(
        self,
        overrides: Sequence[Override] = BUILTIN_OVERRIDES,
        psl: PublicSuffixList | None = None,
        public_suffixes: Iterable[str] = BUILTIN_PUBLIC_SUFFIXES,
        *,
        cache_size: int = PROVIDER_CACHE_SIZE,
    ) -> None:
        # A dict lookup per label-suffix gives "longest match wins" by walking
        # from the full name towards the TLD; for duplicate suffixes the first
        # listed entry wins (user entries are listed before the shipped ones).
        self._overrides: dict[str, str] = {}
        for override in overrides:
            self._overrides.setdefault(override.suffix, override.provider)
        self._public_suffixes = frozenset(public_suffixes)
        self._psl = psl if psl is not None else _load_psl(None)
        self._cached = functools.lru_cache(maxsize=cache_size)(self._attribute)

    def provider_of(self, host: str) -> str | None:
        """The provider of ``host``, or None for an empty/invalid name or an IP literal."""
        if not isinstance(host, str):
            return None
        return self._cached(host)

    def _attribute(self, host: str) -> str | None:
        text = host.strip()
        while text.startswith("_") and "." in text:
            text = text.partition(".")[2]  # RFC 8552 attribute leaves name a service, not an operator
        name, _ = normalise_domain(text)
        if name is None:
            return None
        labels = name.split(".")
        suffixes = [".".join(labels[i:]) for i in range(len(labels))]
        for suffix in suffixes:
            provider = self._overrides.get(suffix)
            if provider is not None:
                return provider
        for i in range(1, len(suffixes)):
            if suffixes[i] in self._public_suffixes:
                return suffixes[i - 1]
        if name in self._public_suffixes:
            return None
        registrable = self._psl.privatesuffix(name)
        return registrable if isinstance(registrable, str) else None

    def cache_info(self) -> str:
        return str(self._cached.cache_info())


def load_provider_map(extra_toml: str | None = None, *, psl_file: str | None = None) -> ProviderMap:
    """The shipped overrides plus the user's (``extra_toml`` is TOML *text*; its
    entries win over shipped ones for the same suffix), over the user's stored
    PSL (``update_psl``) or the bundled one.  ``psl_file`` names a list explicitly.
    ProviderMapError if the TOML or the list is malformed.
    """
    overrides: tuple[Override, ...] = ()
    suffixes: tuple[str, ...] = ()
    if extra_toml is not None:
        overrides, suffixes = parse_provider_toml(extra_toml)
    psl = _load_psl(psl_file if psl_file is not None else _psl_source())
    return ProviderMap(
        overrides + BUILTIN_OVERRIDES,
        psl,
        suffixes + BUILTIN_PUBLIC_SUFFIXES,
    )
