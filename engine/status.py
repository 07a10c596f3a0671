"""The closed status vocabulary every probe result and domain record uses.

Modelled on zgrab2: the status says how far an exchange got and, when it
failed, why.  The security verdict (pass / warn / fail) is computed later from
the observations and is deliberately not part of this vocabulary.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Status"]


class Status(StrEnum):
    #: The measurement completed; the result holds what was observed, which may
    #: be a definite negative (NXDOMAIN, no STARTTLS, no policy).
    SUCCESS = "success"
    #: The input line is not a usable domain name; the reason is recorded.
    INVALID_INPUT = "invalid-input"
    #: Deliberately not measured (opt-out list, scan stopped); reason recorded.
    SKIPPED = "skipped"
    #: The TCP connection was actively refused (RST).
    CONNECTION_REFUSED = "connection-refused"
    #: The TCP connection could not be established within the connect timeout.
    CONNECTION_TIMEOUT = "connection-timeout"
    #: Connected, but a read or write did not complete within its deadline.
    IO_TIMEOUT = "io-timeout"
    #: The peer closed the connection before the exchange finished.
    CONNECTION_CLOSED = "connection-closed"
    #: The peer spoke, but not the protocol (garbage, caps exceeded).
    PROTOCOL_ERROR = "protocol-error"
    #: The peer answered with a protocol-level refusal (4xx/5xx) before TLS.
    APPLICATION_ERROR = "application-error"
    #: The TLS handshake failed (alert, reset, version mismatch).
    TLS_HANDSHAKE_ERROR = "tls-handshake-error"
    #: A refusal or failure after the TLS session was established.
    POST_TLS_APPLICATION_ERROR = "post-tls-application-error"
    #: A bug or an unclassified failure inside a probe; detail says what.
    UNKNOWN_ERROR = "unknown-error"
