"""The certificate profile pieces the test PKI issues with (CA/B Forum Baseline
Requirements: see testbed/pki.py): names, key usages, deterministic serials, PEM.

Part of the world, not of the scanner: imports nothing of mxscan's.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "PrivateKey",
    "ca_key_usage",
    "general_names",
    "key_pem_of",
    "leaf_key_usage",
    "pem_of",
    "serial_of",
    "subject_name",
]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def pem_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem_of(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def serial_of(*parts: str) -> int:
    # Deterministic for the same inputs, positive, at most 20 octets (RFC 5280 §4.1.2.2).
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()[:16]
    return int.from_bytes(digest, "big") >> 1 or 1


def subject_name(common_name: str) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "ZZ"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mxscan test world"),
    ]
    # RFC 5280 ub-common-name is 64; public CAs leave a longer name out of the
    # subject (the subjectAltName carries it), as CA/B BR §7.1.4.3 allows.
    if len(common_name) <= 64:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def ca_key_usage(*, digital_signature: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def leaf_key_usage(key_type: str) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        # RSA key transport (TLS 1.2 RSA kx) needs keyEncipherment; EC keys never do.
        key_encipherment=key_type == "rsa",
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
