"""What a private real-MTA instance shares, whichever server it runs: its address,
host name and certificate, the TLS files it writes, the wait for its greeting, and
use as a context manager."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Self

from testbed.realmta.install import wait_for_greeting

__all__ = ["MtaInstance"]


class MtaInstance:
    """Base of PostfixInstance and EximInstance; subclasses implement start/stop/_alive/log_tail.

    ``cert_chain_pem`` is what the server presents (leaf first); without it (or without
    ``key_pem``) STARTTLS is not offered.
    """

    #: The server's name in error messages.
    server = "mta"

    def __init__(
        self,
        address: str,
        port: int,
        hostname: str,
        cert_chain_pem: bytes | None,
        key_pem: bytes | None,
        state_dir: str | os.PathLike[str],
    ) -> None:
        self.address = address
        self.port = port
        self.hostname = hostname
        self.state_dir = Path(state_dir)
        self.tls = cert_chain_pem is not None and key_pem is not None
        self._chain_pem = cert_chain_pem
        self._key_pem = key_pem
        self.greeting = ""

    def _write_tls(self) -> tuple[Path | None, Path | None]:
        """The chain and key under ``<state>/tls`` (key 0600), or (None, None) without TLS."""
        if self._chain_pem is None or self._key_pem is None:
            return None, None
        cert_file, key_file = self.state_dir / "tls" / "chain.pem", self.state_dir / "tls" / "key.pem"
        cert_file.write_bytes(self._chain_pem)
        key_file.write_bytes(self._key_pem)
        key_file.chmod(0o600)
        return cert_file, key_file

    def _await_greeting(self, timeout: float) -> None:
        """Wait for the 220 naming this instance; on failure stop it and say why, with its log."""
        try:
            self.greeting = wait_for_greeting(
                self.address, self.port, timeout=timeout, expect=self.hostname, alive=self._alive
            )
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise RuntimeError(
                f"{self.server} on {self.address}:{self.port}: {exc}; log: {self.log_tail()}"
            ) from None

    def _alive(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def log_tail(self, lines: int = 20) -> str:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
