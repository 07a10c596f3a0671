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
    <state>/pki/leaves/<first name>+<digest>.<kind>.chain.pem / ...  the same, shared ones

A certificate is named by a ``CertSpec`` (the names it is issued for, its
defect): a host's own name, or the wildcard / SAN list a provider's hosts
share (``Host.cert_names``), so one certificate, one key and one server
context serve all of them, as on the real provider's machines.

Leaf keys are *derived* (P-256 scalar = SHA-256(seed | names | kind) mod n),
so the SPKI of a leaf is the same in every process and every restart; the
leaves a TLSA record binds are also written to ``leaves/`` at ``up`` so their
full DER (selector 0) agrees too.  Every other leaf is issued on first use
(~0.2 ms) by whichever process needs it; none is kept across runs.

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
from collections.abc import Collection
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from testbed.pki import IssuedCert, TestPki
from testbed.world import CertKind, Host, Tlsa, TlsaBinds, World
from testbed.zones import placeholder_tlsa_data

__all__ = [
    "EAGER_CONTEXTS",
    "MAX_AGE",
    "CertSpec",
    "ContextCache",
    "WorldPki",
    "cert_spec",
    "tlsa_association",
]

#: Replace a PKI older than this at ``up`` (leaf windows are relative to its creation).
MAX_AGE = dt.timedelta(days=20)
#: Order of the P-256 group: derived scalars are reduced into [1, n-1].
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
#: TLS server contexts kept per process (28 KB each, measured); older ones are rebuilt on
#: demand (~1-3 ms).  A scan probes each (host, address) once, so what is used again is a
#: provider's shared certificate (a few dozen) and a host retried soon after: 512 holds
#: those.  2,048 cost each of a 1M-domain world's 34 mail processes 57 MB once full.
CONTEXT_CACHE = 512
#: Up to this many contexts in the whole world (~26 KB each: ~1 GB), every mail process builds
#: all of its own before it reports ready (``ContextCache.prebuild``): a 100k-domain world has
#: ~17k (4 processes of ~4.2k), a 1M one ~170k, which stay on demand.
EAGER_CONTEXTS = 40_000


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


class CertSpec(NamedTuple):
    """Which certificate a server presents: the names its leaf is issued for, and its defect.

    Hosts with equal specs present the very same certificate (a provider's
    wildcard or SAN list), so everything below is keyed by the spec, not the host.
    """

    names: tuple[str, ...]
    kind: str


def cert_spec(host: Host) -> CertSpec | None:
    """The certificate ``host`` presents (None: no TLS): its shared names, else its own name."""
    if host.cert is None:
        return None
    return CertSpec(host.cert_names or (host.name,), host.cert.value)


class WorldPki:
    """A ``TestPki`` on disk plus the world's leaves (see the module docstring)."""

    def __init__(self, pki: TestPki, directory: Path, seed: bytes) -> None:
        self.pki = pki
        self.directory = directory
        self.seed = seed
        self._leaves: dict[CertSpec, IssuedCert] = {}
        #: File names in ``leaves/``, listed once (``up`` persists before any server starts).
        self._on_disk: set[str] | None = None

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

    def _key(self, spec: CertSpec) -> ec.EllipticCurvePrivateKey:
        # One name: "|<name>|<kind>", as before shared certificates (a PKI on disk stays usable).
        material = f"|{','.join(spec.names)}|{spec.kind}".encode()
        scalar = int.from_bytes(hashlib.sha256(self.seed + material).digest(), "big") % (_P256_N - 1) + 1
        return ec.derive_private_key(scalar, ec.SECP256R1())

    @staticmethod
    def _stem(spec: CertSpec) -> str:
        first = spec.names[0]
        if len(spec.names) == 1 and "*" not in first:
            return f"{first}.{spec.kind}"
        digest = hashlib.sha256(",".join(spec.names).encode()).hexdigest()[:12]
        return f"{first.replace('*', '_')}+{digest}.{spec.kind}"

    def files(self, spec: CertSpec) -> tuple[Path, Path]:
        """Where ``persist_cert(spec)`` writes the chain and the key (PEM)."""
        stem = self._stem(spec)
        leaves = self.directory / "leaves"
        return leaves / f"{stem}.chain.pem", leaves / f"{stem}.key.pem"

    def _persisted(self, spec: CertSpec) -> bool:
        if self._on_disk is None:
            try:
                self._on_disk = set(os.listdir(self.directory / "leaves"))
            except FileNotFoundError:
                self._on_disk = set()
        stem = self._stem(spec)
        return f"{stem}.chain.pem" in self._on_disk and f"{stem}.key.pem" in self._on_disk

    def issued(self, spec: CertSpec) -> IssuedCert:
        """The certificate of ``spec``: from ``leaves/`` if persisted, else issued (derived key)."""
        memo = self._leaves.get(spec)
        if memo is not None:
            return memo
        if self._persisted(spec):
            chain_path, key_path = self.files(spec)
            chain = tuple(x509.load_pem_x509_certificates(chain_path.read_bytes()))
            issued = IssuedCert(spec.names, spec.kind, "ec", chain[0], chain, key_path.read_bytes())
        else:
            issued = self.pki.issue(spec.names, kind=spec.kind, private_key=self._key(spec))
        self._leaves[spec] = issued
        return issued

    def forget(self, spec: CertSpec) -> None:
        """Drop the memoised certificate of ``spec`` (a server context holds what it needs)."""
        self._leaves.pop(spec, None)

    def leaf(self, name: str, kind: str) -> IssuedCert:
        """The certificate of a host that presents its own (issued for ``name`` alone)."""
        return self.issued(CertSpec((name,), kind))

    def persist_cert(self, spec: CertSpec) -> IssuedCert:
        """Write the certificate to ``leaves/`` (idempotent) so every process presents the same DER."""
        issued = self.issued(spec)
        chain_path, key_path = self.files(spec)
        if not chain_path.exists() or not key_path.exists():
            issued.save(chain_path.parent, self._stem(spec))
        if self._on_disk is not None:
            self._on_disk.update((chain_path.name, key_path.name))
        return issued

    def persist(self, name: str, kind: str) -> IssuedCert:
        """``persist_cert`` for a host's own certificate: ``leaves/<name>.<kind>.chain.pem``/``.key.pem``."""
        return self.persist_cert(CertSpec((name,), kind))

    def prepare(self, world: World) -> int:
        """Persist every certificate a TLSA record binds (once per certificate); the number persisted."""
        specs: set[CertSpec] = set()
        for host in world.hosts:
            spec = cert_spec(host)
            if spec is not None and any(t.binds is not TlsaBinds.MISMATCH for t in host.tlsa):
                specs.add(spec)
        for spec in specs:
            self.persist_cert(spec)
        self._leaves.clear()  # the DNS and mail processes load them; keep ``up`` small
        return len(specs)

    def issuer(self, kind: str, leaf: x509.Certificate) -> x509.Certificate:
        """The certificate that issued a leaf of ``kind`` (DANE-TA binds it)."""
        if kind == CertKind.SELF_SIGNED:
            return leaf
        if kind == CertKind.UNTRUSTED_CA:
            return self.pki.untrusted_intermediate.cert
        return self.pki.intermediate.cert

    def root(self, kind: str, leaf: x509.Certificate) -> x509.Certificate:
        """The root above the issuer of a leaf of ``kind`` (a DANE-TA anchor the host does not send)."""
        if kind == CertKind.SELF_SIGNED:
            return leaf
        if kind == CertKind.UNTRUSTED_CA:
            return self.pki.untrusted_root.cert
        return self.pki.root.cert

    def tlsa_data(self, host: Host, tlsa: Tlsa) -> str:
        """The association data of ``tlsa`` for ``host``, from the certificate it presents."""
        spec = cert_spec(host)
        if tlsa.binds is TlsaBinds.MISMATCH or spec is None:
            return placeholder_tlsa_data(host, tlsa)
        leaf = self.issued(spec).leaf
        if tlsa.binds is TlsaBinds.EE:
            cert = leaf
        elif tlsa.binds is TlsaBinds.ROOT:
            cert = self.root(spec.kind, leaf)
        else:
            cert = self.issuer(spec.kind, leaf)
        return tlsa_association(cert, tlsa.selector, tlsa.mtype)


class _Scratch:
    """One file the ssl module loads a chain and its key from (it reads them only from paths).

    An anonymous memory file (``memfd_create``, opened again by OpenSSL through
    ``/proc/self/fd``) when the system has one, else a file on tmpfs
    (``/dev/shm``) or in the temp directory: no directory entry is made or
    replaced per context, and nothing touches a disk.
    """

    def __init__(self) -> None:
        self._directory: str | None = None
        memfd = getattr(os, "memfd_create", None)
        if memfd is not None and os.path.isdir("/proc/self/fd"):
            self._fd = memfd("mxscan-tls", os.MFD_CLOEXEC)
            self.path = f"/proc/self/fd/{self._fd}"
            return
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self._directory = tempfile.mkdtemp(prefix="mxscan-tls-", dir=shm)
        self.path = os.path.join(self._directory, "server.pem")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)

    def write(self, data: bytes) -> str:
        """Make ``data`` the file's whole content; its path."""
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))
        return self.path

    def close(self) -> None:
        os.close(self._fd)
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)


class ContextCache:
    """Server TLS contexts per certificate (``CertSpec``), built on first use, least recently used dropped.

    Hosts that share a certificate share its context.  Building one costs
    ~0.9 ms, nearly all of it OpenSSL 3.0 (``SSLContext()`` ~0.12 ms,
    ``load_cert_chain`` ~0.5 ms + ~0.2 ms per chain certificate) and issuing
    the leaf (~0.17 ms); so load it once, not per connection.  The
    chain and key go to one scratch file (``load_cert_chain(certfile)`` reads
    the key from the same file) in memory; the CA certificates' PEM is made once.
    """

    def __init__(self, world_pki: WorldPki, size: int = CONTEXT_CACHE) -> None:
        self.world_pki = world_pki
        self.size = size
        self._contexts: OrderedDict[CertSpec, ssl.SSLContext] = OrderedDict()
        self._scratch = _Scratch()
        self._ca_pems: dict[x509.Certificate, bytes] = {}
        self.built = 0

    def for_cert(self, spec: CertSpec) -> ssl.SSLContext:
        """The server context presenting the certificate ``spec``."""
        ctx = self._contexts.get(spec)
        if ctx is not None:
            self._contexts.move_to_end(spec)
            return ctx
        ctx = self._build(self.world_pki.issued(spec))
        self.world_pki.forget(spec)  # the context holds what it needs
        self._contexts[spec] = ctx
        if len(self._contexts) > self.size:
            self._contexts.popitem(last=False)
        self.built += 1
        return ctx

    def prebuild(self, specs: Collection[CertSpec], processes: int) -> int:
        """Build the contexts of ``specs`` now (how many; 0 when the ``processes`` mail processes
        of the world would hold more than ``EAGER_CONTEXTS`` together).

        Why: a real mail server has its certificate loaded before the first client comes.
        Built on first use, each context costs its process ~2.3 ms of CPU (issuing the leaf,
        then OpenSSL 3.0 loading it) inside the scan being measured, on the cores the scanner
        shares with the world: at 100k domains ~0.4 ms per domain, a third of the world's CPU.
        """
        if len(specs) * processes > EAGER_CONTEXTS:
            return 0
        self.size = max(self.size, len(specs))
        for spec in specs:
            self.for_cert(spec)
        return len(specs)

    def get(self, name: str, kind: str) -> ssl.SSLContext:
        """The context of a host presenting its own certificate (issued for ``name`` alone)."""
        return self.for_cert(CertSpec((name,), kind))

    def _pem(self, cert: x509.Certificate) -> bytes:
        pem = self._ca_pems.get(cert)
        if pem is None:
            pem = self._ca_pems[cert] = cert.public_bytes(serialization.Encoding.PEM)
        return pem

    def _build(self, issued: IssuedCert) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        cas = b"".join(self._pem(c) for c in issued.chain[1:])
        ctx.load_cert_chain(self._scratch.write(issued.leaf_pem + cas + issued.key_pem))
        return ctx

    def close(self) -> None:
        self._scratch.close()
