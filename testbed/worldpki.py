"""The world's PKI, persisted in the state dir so every server process agrees.

Theory of operation
-------------------
The DNS process publishes TLSA records computed from certificates; the mail
processes present certificates.  Both must mean the same bytes, so ``up``
creates (or reuses) one PKI on disk and every process loads it:

    <state>/pki/ca.pem  intermediate.pem  untrusted-ca.pem  untrusted-intermediate.pem
    <state>/pki/keys/<role>.key.pem    the CA keys (0600): mail processes issue leaves too
    <state>/pki/pki.json               label, the validity reference time, the leaf-key seed
    <state>/pki/leaves/<host>.<kind>.chain.pem / .key.pem   leaves a TLSA record binds

Leaf keys are *derived* (P-256 scalar = SHA-256(seed | host | kind) mod n), so
the SPKI of a host's leaf is the same in every process and every restart; the
leaves a TLSA record binds are also written to ``leaves/`` at ``up`` so their
full DER (selector 0) agrees too.  Every other leaf is issued on first use
(~0.2 ms) by whichever process needs it.

A PKI older than ``MAX_AGE`` is replaced at the next ``up``: valid leaves last
60 days from the PKI's reference time and "not-yet-valid" ones start 30 days
after it (``pki.TestPki``).

This module imports nothing of mxscan's: it is part of the world.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import ssl
import tempfile
from collections import OrderedDict
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from testbed.pki import IssuedCert, TestPki
from testbed.world import CertKind, Host, Tlsa, TlsaBinds, World
from testbed.zones import placeholder_tlsa_data

__all__ = ["MAX_AGE", "ContextCache", "WorldPki", "tlsa_association"]

#: Replace a PKI older than this at ``up`` (leaf windows are relative to its creation).
MAX_AGE = dt.timedelta(days=20)
#: Order of the P-256 group: derived scalars are reduced into [1, n-1].
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
#: TLS server contexts kept per process (~30 KB each); older ones are rebuilt on demand.
CONTEXT_CACHE = 2048


def tlsa_association(cert: x509.Certificate, selector: int, mtype: int) -> str:
    """RFC 6698 §2.1: the association data (hex) of ``cert`` for a selector and matching type."""
    if selector == 0:
        data = cert.public_bytes(serialization.Encoding.DER)
    else:
        data = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if mtype == 1:
        data = hashlib.sha256(data).digest()
    elif mtype == 2:
        data = hashlib.sha512(data).digest()
    return data.hex()


class WorldPki:
    """A ``TestPki`` on disk plus the world's leaves (see the module docstring)."""

    def __init__(self, pki: TestPki, directory: Path, seed: bytes) -> None:
        self.pki = pki
        self.directory = directory
        self.seed = seed
        self._leaves: dict[tuple[str, str], IssuedCert] = {}

    # -- on disk -----------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path) -> WorldPki:
        if directory.exists():
            shutil.rmtree(directory)
        pki = TestPki()
        pki.save(directory, keys=True)
        seed = secrets.token_bytes(32)
        meta = json.loads((directory / "pki.json").read_text())
        (directory / "pki.json").write_text(json.dumps({**meta, "seed": seed.hex()}) + "\n")
        (directory / "leaves").mkdir()
        return cls(pki, directory, seed)

    @classmethod
    def load(cls, directory: Path) -> WorldPki:
        meta = json.loads((directory / "pki.json").read_text())
        return cls(TestPki.load(directory), directory, bytes.fromhex(meta["seed"]))

    @classmethod
    def load_or_create(cls, directory: Path) -> WorldPki:
        """The PKI in ``directory`` unless missing, unreadable or older than ``MAX_AGE``."""
        try:
            world_pki = cls.load(directory)
        except (OSError, ValueError, KeyError):
            return cls.create(directory)
        if dt.datetime.now(dt.UTC) - world_pki.pki.now > MAX_AGE:
            return cls.create(directory)
        return world_pki

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def intermediates_file(self) -> Path:
        return self.directory / "intermediate.pem"

    # -- leaves ------------------------------------------------------------------

    def _key(self, name: str, kind: str) -> ec.EllipticCurvePrivateKey:
        digest = hashlib.sha256(self.seed + f"|{name}|{kind}".encode()).digest()
        scalar = int.from_bytes(digest, "big") % (_P256_N - 1) + 1
        return ec.derive_private_key(scalar, ec.SECP256R1())

    def _stem(self, name: str, kind: str) -> Path:
        return self.directory / "leaves" / f"{name}.{kind}"

    def leaf(self, name: str, kind: str) -> IssuedCert:
        """The leaf of host ``name`` with defect ``kind``: from ``leaves/`` if persisted, else issued."""
        memo = self._leaves.get((name, kind))
        if memo is not None:
            return memo
        stem = self._stem(name, kind)
        chain_path, key_path = Path(f"{stem}.chain.pem"), Path(f"{stem}.key.pem")
        if chain_path.exists() and key_path.exists():
            chain = tuple(x509.load_pem_x509_certificates(chain_path.read_bytes()))
            issued = IssuedCert((name,), kind, "ec", chain[0], chain, key_path.read_bytes())
        else:
            issued = self.pki.issue((name,), kind=kind, private_key=self._key(name, kind))
        self._leaves[(name, kind)] = issued
        return issued

    def persist(self, name: str, kind: str) -> IssuedCert:
        """Write the leaf to ``leaves/`` (idempotent) so every process presents the same DER."""
        issued = self.leaf(name, kind)
        stem = self._stem(name, kind)
        if not Path(f"{stem}.chain.pem").exists():
            issued.save(stem.parent, stem.name)
        return issued

    def prepare(self, world: World) -> int:
        """Persist the leaf of every host a TLSA record binds; the number persisted."""
        count = 0
        for host in world.hosts:
            binds = any(t.binds is not TlsaBinds.MISMATCH for t in host.tlsa)
            if binds and host.cert is not None:
                self.persist(host.name, host.cert.value)
                count += 1
        self._leaves.clear()  # the DNS and mail processes load them; keep ``up`` small
        return count

    def issuer(self, kind: str, leaf: x509.Certificate) -> x509.Certificate:
        """The certificate that issued a leaf of ``kind`` (DANE-TA binds it)."""
        if kind == CertKind.SELF_SIGNED:
            return leaf
        if kind == CertKind.UNTRUSTED_CA:
            return self.pki.untrusted_intermediate.cert
        return self.pki.intermediate.cert

    def tlsa_data(self, host: Host, tlsa: Tlsa) -> str:
        """The association data of ``tlsa`` for ``host``, from the certificates it presents."""
        if tlsa.binds is TlsaBinds.MISMATCH or host.cert is None:
            return placeholder_tlsa_data(host, tlsa)
        leaf = self.leaf(host.name, host.cert.value).leaf
        cert = leaf if tlsa.binds is TlsaBinds.EE else self.issuer(host.cert.value, leaf)
        return tlsa_association(cert, tlsa.selector, tlsa.mtype)


class ContextCache:
    """Server TLS contexts per (host, kind), built on first use, least recently used dropped.

    Building one costs ~1.3 ms (NOTES.md: load it once, not per connection);
    the PEM files are written to one private scratch directory per process,
    since the ssl module loads chains only from files.
    """

    def __init__(self, world_pki: WorldPki, size: int = CONTEXT_CACHE) -> None:
        self.world_pki = world_pki
        self.size = size
        self._contexts: OrderedDict[tuple[str, str], ssl.SSLContext] = OrderedDict()
        self._scratch = tempfile.mkdtemp(prefix="mxscan-tls-")
        self.built = 0

    def get(self, name: str, kind: str) -> ssl.SSLContext:
        key = (name, kind)
        ctx = self._contexts.get(key)
        if ctx is not None:
            self._contexts.move_to_end(key)
            return ctx
        ctx = self._build(self.world_pki.leaf(name, kind))
        self.world_pki._leaves.pop(key, None)  # the context holds what it needs
        self._contexts[key] = ctx
        if len(self._contexts) > self.size:
            self._contexts.popitem(last=False)
        self.built += 1
        return ctx

    def _build(self, issued: IssuedCert) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        chain, key = os.path.join(self._scratch, "chain.pem"), os.path.join(self._scratch, "key.pem")
        with open(chain, "wb") as f:
            f.write(issued.chain_pem)
        with open(key, "wb") as f:
            f.write(issued.key_pem)
        ctx.load_cert_chain(chain, key)
        return ctx

    def close(self) -> None:
        shutil.rmtree(self._scratch, ignore_errors=True)
