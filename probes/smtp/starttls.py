"""The client side of the STARTTLS switch, without I/O: bytes in, bytes out (RFC 3207).

Theory of operation
-------------------
Once the server has answered ``STARTTLS`` with 220, the next bytes it sends
must be TLS records answering our ClientHello.  RFC 3207 §4.2: whatever the
server sent before them is discarded, never read as SMTP (the CVE-2011-0411
class: replies or commands injected into the clear stream would otherwise be
taken as protected), and its presence is a finding.

Timing cannot tell those bytes apart from TLS: they may share a segment with
the 220, follow in the next one, or arrive after our ClientHello left.  Their
content can.  A server's first TLS record is a handshake (22) or an alert (21)
record whose version starts with major 3, so it opens with ``16 03`` or
``15 03``; both are control characters no SMTP text carries.  ``Preamble``
discards everything before the first such header (holding back only a last
byte that may begin one) and counts what it discarded.  From the header on,
every byte goes to OpenSSL, which decides.  Garbage instead of TLS is thus
discarded until the handshake deadline, or, if it happens to contain a record
header, refused by OpenSSL: a handshake error either way.

``TlsClient`` drives an ``ssl.SSLObject`` over memory BIOs so that the
preamble sits between the socket and OpenSSL (``loop.start_tls`` would hand
every byte to OpenSSL); the shell writes what ``outgoing`` returns and feeds
what arrives to ``receive``.
"""

from __future__ import annotations

import re
import ssl

__all__ = ["Preamble", "TlsClient"]

#: A TLS record header a server may open with (RFC 8446 §5.1, RFC 5246 §6.2.1):
#: handshake (22) or alert (21), then major version 3.
_RECORD = re.compile(rb"[\x15\x16]\x03")
#: Decrypted bytes taken per read; the reply parser caps what it keeps.
_READ = 65536


class Preamble:
    """Separates what the server sent before its first TLS record from the TLS stream."""

    __slots__ = ("_held", "discarded", "tls")

    def __init__(self) -> None:
        #: Bytes discarded before the first record header (0: no injection).
        self.discarded = 0
        #: True once a record header was seen: everything is TLS from then on.
        self.tls = False
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """The TLS bytes in ``data`` (empty while the preamble lasts)."""
        if self.tls:
            return data
        data = self._held + data
        found = _RECORD.search(data)
        if found is not None:
            self.tls, self._held = True, b""
            self.discarded += found.start()
            return data[found.start() :]
        # a trailing 0x15/0x16 may be the first byte of a header split across reads
        keep = 1 if data[-1:] in (b"\x15", b"\x16") else 0
        self._held = data[len(data) - keep :] if keep else b""
        self.discarded += len(data) - keep
        return b""

    @property
    def injected(self) -> bool:
        """Bytes arrived after the 220 and before TLS (held bytes included)."""
        return self.discarded > 0 or bool(self._held)


class TlsClient:
    """A TLS client over memory BIOs: no I/O, the caller moves the bytes.

    ``receive`` raises ``ssl.SSLError`` when the handshake fails and
    ``ssl.SSLZeroReturnError`` when the server ends the session.
    """

    __slots__ = ("_incoming", "_outgoing", "established", "preamble", "ssl", "started")

    def __init__(self, ctx: ssl.SSLContext, server_hostname: str) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl = ctx.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self.preamble = Preamble()
        self.started = False
        self.established = False

    def start(self) -> bytes:
        """Begin the handshake: the ClientHello to send (bytes received so far are used)."""
        self.started = True
        self._handshake()
        return self._outgoing.read()

    def receive(self, data: bytes) -> bytes:
        """Feed bytes from the server; the application data they completed."""
        data = self.preamble.feed(data)
        if not data:
            return b""
        self._incoming.write(data)
        if not self.started or (not self.established and not self._handshake()):
            return b""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self.ssl.read(_READ)
            except ssl.SSLWantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def encrypt(self, data: bytes) -> bytes:
        """The records that carry ``data``."""
        self.ssl.write(data)
        return self._outgoing.read()

    def outgoing(self) -> bytes:
        """Bytes OpenSSL wants sent (handshake messages, key updates); empty when none."""
        return self._outgoing.read() if self._outgoing.pending else b""

    def _handshake(self) -> bool:
        try:
            self.ssl.do_handshake()
        except ssl.SSLWantReadError:
            return False
        self.established = True
        return True
