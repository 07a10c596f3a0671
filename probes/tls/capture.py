"""Capturing what a TLS server presents, for SMTP STARTTLS and HTTPS alike.

Both handshakes run with verification OFF, so that the presented chain is
always captured (a failed verification must not lose the certificates it
judged); the pure core (``probes/tls/verify.py``) verifies the chain afterwards.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["capture_context", "presented_chain"]

C = TypeVar("C", bound=ssl.SSLContext)


def capture_context(kind: type[C], alpn: Sequence[str] = ()) -> C:
    """A client context of class ``kind`` that completes handshakes with anything.

    Any protocol version and cipher (SECLEVEL=0, down to what OpenSSL still builds), so that
    legacy servers are measured instead of failing as "handshake error" on our side; no
    verification, no host name check (both happen afterwards, on the captured chain).
    """
    ctx = kind(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # before verify_mode: CERT_NONE is refused while it is on
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def presented_chain(ssl_object: object) -> list[bytes]:
    """The peer's chain as DER, leaf first, as presented (not verified); [] before a handshake
    completed.  ``ssl_object``: an ``ssl.SSLObject`` or ``ssl.SSLSocket``."""
    if sys.version_info >= (3, 13):  # public API from 3.13
        chain = ssl_object.get_unverified_chain()  # type: ignore[attr-defined]
        return [bytes(c) for c in chain or ()]
    import _ssl

    # Python 3.11/3.12: the same call on the C object behind the wrapper.
    inner = getattr(ssl_object, "_sslobj", None)
    chain = inner.get_unverified_chain() if inner is not None else None
    return [c.public_bytes(_ssl.ENCODING_DER) for c in chain or ()]
