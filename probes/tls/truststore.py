"""The set of root certificates PKIX verification trusts.

Parsed once per scan and shared: the cryptography ``Store`` for the verifier,
the roots themselves (for issuer look-ups when classifying failures), and
their SHA-256 fingerprints (to tell whether a presented certificate *is* a
trust anchor).

Kinds:
  mozilla: Mozilla's roots as shipped by certifi (the default; what MTA-STS
    senders and browsers broadly agree on).
  system:  the OS bundle, ``/etc/ssl/certs/ca-certificates.crt`` (Debian's
    ca-certificates: what the study used).
  none:    no built-in roots; only ``extra_ca_files`` (test worlds).

A bundle certificate cryptography cannot parse (there are a few odd ones in
the wild) is skipped and counted in ``skipped``; an extra CA file that is
unreadable, holds no certificate or holds a malformed one is an error, since
the user named it on purpose.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import Store

from engine.textfile import read_at_most
from probes.tls.certs import is_issued_by

__all__ = [
    "SYSTEM_BUNDLE",
    "TRUST_STORE_KINDS",
    "TrustStore",
    "TrustStoreError",
    "load_trust_store",
    "read_certificates",
]

#: Debian's bundle made by update-ca-certificates.
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

TRUST_STORE_KINDS = ("mozilla", "system", "none")

#: A CA bundle larger than this is not a CA bundle (certifi's is ~290 KB).
MAX_BUNDLE_BYTES = 16 * 1024 * 1024

_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL)


class TrustStoreError(ValueError):
    """A trust store source could not be read or parsed; the message names it."""


@dataclass(frozen=True, slots=True)
class TrustStore:
    """Trusted roots, ready for ``cryptography.x509.verification``.

    Fields:
      kind: mozilla / system / none.
      sources: the files the roots came from, in load order.
      roots: the parsed root certificates, duplicates removed.
      store: the cryptography verification Store over ``roots``.
      fingerprints: SHA-256 (hex) of each root's DER.
      skipped: bundle certificates that could not be parsed and were left out.
    """

    kind: str
    sources: tuple[str, ...]
    roots: tuple[x509.Certificate, ...]
    store: Store
    fingerprints: frozenset[str]
    skipped: int
    #: Roots by subject name; None when a root's subject could not be read (then nothing
    #: that must know every root with a given name can be proven: see pathcache.py).
    by_subject: Mapping[x509.Name, tuple[x509.Certificate, ...]] | None = None

    def contains(self, der: bytes) -> bool:
        """Whether this exact certificate is a trust anchor."""
        return hashlib.sha256(der).hexdigest() in self.fingerprints

    def issuers_of(self, cert: x509.Certificate) -> tuple[x509.Certificate, ...]:
        """Roots whose subject is ``cert``'s issuer and whose key verifies its signature."""
        found = []
        for root in self.roots:
            if is_issued_by(cert, root):
                found.append(root)
        return tuple(found)


def _read(path: str) -> bytes:
    try:
        data = read_at_most(path, MAX_BUNDLE_BYTES)  # not by stat(): /dev/zero has no size
    except OSError as exc:
        raise TrustStoreError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data is None:
        raise TrustStoreError(f"{path}: larger than {MAX_BUNDLE_BYTES} bytes")
    return data


def _parse_bundle(data: bytes, path: str, *, strict: bool) -> tuple[list[x509.Certificate], int]:
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        raise TrustStoreError(f"{path}: no PEM certificate found")
    certs, skipped = [], 0
    for i, block in enumerate(blocks):
        try:
            with warnings.catch_warnings():
                # A few long-lived roots have non-positive serials; they are still roots.
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                certs.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            if strict:
                raise TrustStoreError(f"{path}: certificate {i + 1} is malformed: {exc}") from None
            skipped += 1
    return certs, skipped


def read_certificates(path: str) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM file the user named (an extra CA, known intermediates);
    ``TrustStoreError`` naming the file if it is unreadable, holds none or a malformed one."""
    certs, _ = _parse_bundle(_read(path), path, strict=True)
    return tuple(certs)


def load_trust_store(kind: str = "mozilla", extra_ca_files: Sequence[str] = ()) -> TrustStore:
    """Load ``kind``'s roots plus every PEM file in ``extra_ca_files``.

    Raises ``TrustStoreError`` for an unknown kind, an unreadable file, a
    file with no certificate, or a malformed certificate in an extra file.
    """
    if kind not in TRUST_STORE_KINDS:
        raise TrustStoreError(f"unknown trust store {kind!r}; expected one of {', '.join(TRUST_STORE_KINDS)}")
    sources: list[tuple[str, bool]] = []
    if kind == "mozilla":
        sources.append((certifi.where(), False))
    elif kind == "system":
        sources.append((SYSTEM_BUNDLE, False))
    sources.extend((str(path), True) for path in extra_ca_files)
    if not sources:
        raise TrustStoreError("trust store 'none' needs at least one CA file")
    roots: list[x509.Certificate] = []
    seen: set[str] = set()
    skipped = 0
    for path, strict in sources:
        certs, bad = _parse_bundle(_read(path), path, strict=strict)
        skipped += bad
        for cert in certs:
            fp = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
            if fp not in seen:
                seen.add(fp)
                roots.append(cert)
    return TrustStore(
        kind=kind,
        sources=tuple(path for path, _ in sources),
        roots=tuple(roots),
        store=Store(roots),
        fingerprints=frozenset(seen),
        skipped=skipped,
        by_subject=_index_by_subject(roots),
    )


def _index_by_subject(
    roots: Sequence[x509.Certificate],
) -> dict[x509.Name, tuple[x509.Certificate, ...]] | None:
    index: dict[x509.Name, list[x509.Certificate]] = {}
    try:
        for root in roots:
            index.setdefault(root.subject, []).append(root)
    except (ValueError, TypeError):
        return None
    return {name: tuple(certs) for name, certs in index.items()}
