"""A small test PKI that issues certificates the way public CAs do.

The test world needs one certificate per "what is wrong with it" scenario, and
each must be accepted or rejected by OpenSSL (what real MTAs use) and by
cryptography's strict verifier (what mxscan uses) alike.  ``trustme`` does not
qualify: it marks subjectAltName critical next to a non-empty subject, which
cryptography's RFC 5280 profile refuses.  So this module follows the CA/Browser
Forum Baseline Requirements profile instead:

* roots: self-signed, basicConstraints critical CA:TRUE, keyUsage critical
  keyCertSign + cRLSign, subjectKeyIdentifier;
* intermediates: basicConstraints critical CA:TRUE pathlen 0, keyUsage critical
  digitalSignature + keyCertSign + cRLSign, EKU serverAuth + clientAuth, SKI, AKI;
* leaves: subject CN = first name, subjectAltName NON-critical with every name,
  basicConstraints critical CA:FALSE, keyUsage critical digitalSignature
  (+ keyEncipherment for RSA keys), EKU serverAuth, SKI, AKI.

Keys are the slow part, so each CA key is made once per ``TestPki`` and issued
certificates are memoised per (names, kind, key).  Every EC leaf gets its own
P-256 key; RSA leaves share one 2048-bit key per ``TestPki`` (RSA generation
costs ~50-100 ms), so two RSA leaves have the same SPKI.

This module imports nothing of mxscan's: it is part of the world, not of the
scanner.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from testbed.pkiprofile import (
    PrivateKey,
    ca_key_usage,
    general_names,
    key_pem_of,
    leaf_key_usage,
    pem_of,
    serial_of,
    subject_name,
)

__all__ = [
    "KINDS",
    "WRONG_NAME",
    "CertificateAuthority",
    "IssuedCert",
    "TestPki",
]

#: The certificate kinds ``TestPki.issue`` makes, each named for its defect.
#: "cn-only" (no subjectAltName, name only in the CN) is an extra beyond the
#: PKIX reasons: OpenSSL's `openssl verify -verify_hostname` falls back to the
#: CN, cryptography and Python's ssl module do not.
KINDS = (
    "valid",
    "expired",
    "not-yet-valid",
    "wrong-name",
    "self-signed",
    "untrusted-ca",
    "missing-intermediate",
    "cn-only",
)

#: The name a "wrong-name" certificate is issued for instead of the asked ones.
WRONG_NAME = "wrong-name.invalid"

_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA certificate and its key (a root, or an intermediate with its issuer)."""

    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def pem(self) -> bytes:
        return pem_of(self.cert)


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """A server certificate, what a server should present with it, and its key.

    ``chain_der``/``chain_pem`` are what the server presents: leaf + intermediate,
    or the leaf alone for "self-signed" and "missing-intermediate".
    """

    names: tuple[str, ...]
    kind: str
    key_type: str
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key_pem: bytes = field(repr=False)

    @property
    def leaf_der(self) -> bytes:
        return self.leaf.public_bytes(serialization.Encoding.DER)

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        return tuple(c.public_bytes(serialization.Encoding.DER) for c in self.chain)

    @property
    def leaf_pem(self) -> bytes:
        return pem_of(self.leaf)

    @property
    def chain_pem(self) -> bytes:
        return b"".join(pem_of(c) for c in self.chain)

    def save(self, directory: str | os.PathLike[str], stem: str) -> tuple[Path, Path]:
        """Write ``<stem>.chain.pem`` and ``<stem>.key.pem`` (0600); return both paths."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        chain_path, key_path = d / f"{stem}.chain.pem", d / f"{stem}.key.pem"
        chain_path.write_bytes(self.chain_pem)
        key_path.write_bytes(self.key_pem)
        key_path.chmod(0o600)
        return chain_path, key_path


class TestPki:
    """A trusted root with an intermediate, and an untrusted root with its own.

    ``now`` fixes the validity windows (default: the current time), so a test
    can verify at ``pki.now`` and get the same answers every run:

    * CAs: ``now - 2 years`` to ``now + 10 years``;
    * valid leaves: ``now - 30 days`` to ``now + 60 days`` (a 90-day certificate);
    * "expired": ``now - 120 days`` to ``now - 30 days``;
    * "not-yet-valid": ``now + 30 days`` to ``now + 120 days``.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, now: dt.datetime | None = None, *, label: str = "mxscan") -> None:
        now = now or dt.datetime.now(dt.UTC)
        self.now = now.replace(microsecond=0)
        self.label = label
        self.root = self._make_root(f"{label} Test Root CA")
        self.intermediate = self._make_intermediate(f"{label} Test Issuing CA 1", self.root)
        self.untrusted_root = self._make_root(f"{label} Untrusted Root CA")
        self.untrusted_intermediate = self._make_intermediate(
            f"{label} Untrusted Issuing CA", self.untrusted_root
        )
        self._rsa_leaf_key: rsa.RSAPrivateKey | None = None
        self._issued: dict[tuple[tuple[str, ...], str, str], IssuedCert] = {}

    # -- CAs -------------------------------------------------------------------

    def _ca_window(self) -> tuple[dt.datetime, dt.datetime]:
        return self.now - 730 * _DAY, self.now + 3650 * _DAY

    def _make_root(self, cn: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = self._ca_window()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject_name(cn))
            .issuer_name(subject_name(cn))
            .public_key(key.public_key())
            .serial_number(serial_of(self.label, cn, "root"))
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return CertificateAuthority(cn, cert, key)

    def _make_intermediate(self, cn: str, issuer: CertificateAuthority) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        start, end = self._ca_window()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject_name(cn))
            .issuer_name(issuer.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial_of(self.label, cn, "intermediate"))
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(ca_key_usage(digital_signature=True), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(_aki(issuer), critical=False)
            .sign(issuer.key, hashes.SHA256())
        )
        return CertificateAuthority(cn, cert, key)

    def root_pem(self) -> bytes:
        """The trusted root in PEM: what a scanner loads with ``--ca-file``."""
        return self.root.pem()

    def intermediate_pems(self) -> bytes:
        """Both intermediates in PEM: a "known intermediates" pool (like Firefox's preload)."""
        return self.intermediate.pem() + self.untrusted_intermediate.pem()

    def _cas(self) -> dict[str, CertificateAuthority]:
        return {
            "ca": self.root,
            "intermediate": self.intermediate,
            "untrusted-ca": self.untrusted_root,
            "untrusted-intermediate": self.untrusted_intermediate,
        }

    def save(self, directory: str | os.PathLike[str], *, keys: bool = False) -> dict[str, Path]:
        """Write the CA certificates; return ``{role: path}``.

        Files: ``ca.pem`` (trusted root), ``intermediate.pem``,
        ``untrusted-ca.pem``, ``untrusted-intermediate.pem``.  With ``keys``
        also ``keys/<role>.key.pem`` (0600) and ``pki.json`` (label, ``now``),
        so ``load`` can issue more leaves from the same CAs in another process.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        paths = {}
        for role, ca in self._cas().items():
            paths[role] = d / f"{role}.pem"
            paths[role].write_bytes(ca.pem())
        if keys:
            key_dir = d / "keys"
            key_dir.mkdir(mode=0o700, exist_ok=True)
            for role, ca in self._cas().items():
                path = key_dir / f"{role}.key.pem"
                path.write_bytes(key_pem_of(ca.key))
                path.chmod(0o600)
            meta = {"label": self.label, "now": self.now.isoformat()}
            (d / "pki.json").write_text(json.dumps(meta) + "\n")
        return paths

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TestPki:
        """The PKI ``save(directory, keys=True)`` wrote: same CAs, same validity windows."""
        d = Path(directory)
        meta = json.loads((d / "pki.json").read_text())
        pki = cls.__new__(cls)
        pki.now = dt.datetime.fromisoformat(meta["now"])
        pki.label = meta["label"]

        def ca(role: str) -> CertificateAuthority:
            cert = x509.load_pem_x509_certificate((d / f"{role}.pem").read_bytes())
            key = serialization.load_pem_private_key((d / "keys" / f"{role}.key.pem").read_bytes(), None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{role}: expected an EC key")
            cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            return CertificateAuthority(str(cn), cert, key)

        pki.root, pki.intermediate = ca("ca"), ca("intermediate")
        pki.untrusted_root, pki.untrusted_intermediate = ca("untrusted-ca"), ca("untrusted-intermediate")
        pki._rsa_leaf_key = None
        pki._issued = {}
        return pki

    # -- leaves ----------------------------------------------------------------

    def issue(
        self,
        names: Sequence[str],
        *,
        kind: str = "valid",
        key: str = "ec",
        private_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> IssuedCert:
        """A server certificate for ``names`` with the defect ``kind`` (one of ``KINDS``).

        "wrong-name" is issued for ``WRONG_NAME`` instead of ``names``;
        "untrusted-ca" chains to ``untrusted_root``; "self-signed" is its own
        issuer (CA:FALSE, like a self-made server certificate); "missing-intermediate"
        is issued by the trusted intermediate but served without it.

        ``private_key``: the leaf's key (e.g. derived deterministically by the
        caller); such certificates are not memoised (the caller keeps them).
        """
        names = tuple(names)
        if not names:
            raise ValueError("at least one name is needed")
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        if key not in ("ec", "rsa"):
            raise ValueError(f"unknown key type {key!r}; expected 'ec' or 'rsa'")
        if private_key is not None:
            return self._issue(names, kind, "ec", private_key)
        memo_key = (names, kind, key)
        if memo_key not in self._issued:
            self._issued[memo_key] = self._issue(names, kind, key)
        return self._issued[memo_key]

    def _leaf_key(self, key: str) -> PrivateKey:
        if key == "ec":
            return ec.generate_private_key(ec.SECP256R1())
        if self._rsa_leaf_key is None:
            self._rsa_leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._rsa_leaf_key

    def _issue(
        self, names: tuple[str, ...], kind: str, key_type: str, leaf_key: PrivateKey | None = None
    ) -> IssuedCert:
        leaf_key = leaf_key or self._leaf_key(key_type)
        cert_names = (WRONG_NAME,) if kind == "wrong-name" else names
        start, end = self.now - 30 * _DAY, self.now + 60 * _DAY
        if kind == "expired":
            start, end = self.now - 120 * _DAY, self.now - 30 * _DAY
        elif kind == "not-yet-valid":
            start, end = self.now + 30 * _DAY, self.now + 120 * _DAY
        issuer: CertificateAuthority | None = self.intermediate
        if kind == "untrusted-ca":
            issuer = self.untrusted_intermediate
        elif kind == "self-signed":
            issuer = None
        subject = subject_name(cert_names[0])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if issuer is None else issuer.cert.subject)
            .public_key(leaf_key.public_key())
            .serial_number(serial_of(self.label, kind, key_type, *names))
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(leaf_key_usage(key_type), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        )
        if kind != "cn-only":
            # Non-critical: the subject is not empty (RFC 5280 §4.2.1.6).
            builder = builder.add_extension(
                x509.SubjectAlternativeName(general_names(cert_names)), critical=False
            )
        if issuer is not None:
            builder = builder.add_extension(_aki(issuer), critical=False)
        else:  # as `openssl req -x509` does (authorityKeyIdentifier=keyid:always)
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(leaf_key.public_key()), critical=False
            )
        leaf = builder.sign(leaf_key if issuer is None else issuer.key, hashes.SHA256())
        if kind in ("self-signed", "missing-intermediate"):
            chain: tuple[x509.Certificate, ...] = (leaf,)
        else:
            assert issuer is not None
            chain = (leaf, issuer.cert)
        return IssuedCert(names, kind, key_type, leaf, chain, key_pem_of(leaf_key))


def _aki(issuer: CertificateAuthority) -> x509.AuthorityKeyIdentifier:
    ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
