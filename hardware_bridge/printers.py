"""Printer transports, by URI: `tcp://host:port`, `usb:VID:PID`, `serial:/dev/...`, `file:PATH`, `dummy`.

A send ends one of three ways, which the journal needs to tell apart:
* it returns: the printer has the job (over TCP, raw port 9100: we close our sending side after
  the job and the printer closes its side cleanly once it has taken every byte);
* `PrinterOffline`: no byte left (connection refused, device absent): safe to retry;
* `OutcomeUnknown`: bytes left but no confirmation came (the connection broke mid-job):
  never retried by itself.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

CONNECT_TIMEOUT_S: Final = 3.0
#: The dummy printer keeps the last jobs only (a dry run may last days).
DUMMY_JOBS_KEPT: Final = 100
#: How long a network printer may take to take a job and close its side of the connection.
CONFIRM_TIMEOUT_S: Final = 15.0
_TCP: Final = re.compile(r"^tcp://(?P<host>[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")
_USB: Final = re.compile(r"^usb:(?P<vendor>(0x)?[0-9A-Fa-f]{1,4}):(?P<product>(0x)?[0-9A-Fa-f]{1,4})$")


class PrinterError(Exception):
    pass


class PrinterOffline(PrinterError):
    """Nothing was sent: the job may be retried."""


class OutcomeUnknown(PrinterError):
    """Bytes left and the printer did not confirm: the job may or may not have printed."""


class BadPrinterUri(ValueError):
    pass


#: Called once the printer is reached, just before the first byte leaves (the journal marks the job sent).
BeforeBytes = Callable[[], None]


def _nothing() -> None:
    return None


class Printer(Protocol):
    uri: str

    def send(self, payload: bytes, before_bytes: BeforeBytes = _nothing) -> None: ...


@dataclass
class TcpPrinter:
    uri: str
    host: str
    port: int
    confirm_timeout_s: float = CONFIRM_TIMEOUT_S

    def send(self, payload: bytes, before_bytes: BeforeBytes = _nothing) -> None:
        try:
            connection = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_S)
        except OSError as error:
            raise PrinterOffline(f"cannot connect to {self.host}:{self.port}: {error}") from None
        with connection:
            before_bytes()
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                connection.settimeout(self.confirm_timeout_s)
                connection.sendall(payload)
                # The job ends when we close our side (raw port 9100); the printer closes its side
                # once it has taken every byte. A reset or silence instead leaves the outcome unknown.
                connection.shutdown(socket.SHUT_WR)
                while connection.recv(256):  # status bytes a printer may volunteer (ASB)
                    pass
            except OSError as error:
                raise OutcomeUnknown(f"the connection broke after the job was sent: {error}") from None


@dataclass
class FilePrinter:
    """Appends each job to a file (a character device such as /dev/usb/lp0, or a plain file)."""

    uri: str
    path: Path

    def send(self, payload: bytes, before_bytes: BeforeBytes = _nothing) -> None:
        try:
            file = self.path.open("ab")
        except OSError as error:
            raise PrinterOffline(f"cannot open {self.path}: {error}") from None
        with file:
            before_bytes()
            try:
                file.write(payload)
                file.flush()
            except OSError as error:
                raise OutcomeUnknown(f"writing {self.path} failed: {error}") from None


@dataclass
class DummyPrinter:
    """Keeps the jobs in memory (a dry run)."""

    uri: str = "dummy"

    def __post_init__(self) -> None:
        self.jobs: list[bytes] = []
        self._lock = threading.Lock()

    def send(self, payload: bytes, before_bytes: BeforeBytes = _nothing) -> None:
        before_bytes()
        with self._lock:
            self.jobs.append(payload)
            del self.jobs[:-DUMMY_JOBS_KEPT]


@dataclass
class EscposDevicePrinter:
    """USB or serial through python-escpos's device classes (opened per job, so a replug recovers)."""

    uri: str
    kind: str
    arguments: dict[str, Any]

    def send(self, payload: bytes, before_bytes: BeforeBytes = _nothing) -> None:
        from escpos import printer as devices  # type: ignore[import-untyped]

        try:
            device = (devices.Usb(**self.arguments) if self.kind == "usb" else devices.Serial(**self.arguments))
            device.open()
        except Exception as error:  # the device is absent or busy: nothing was sent
            raise PrinterOffline(f"cannot open {self.uri}: {error}") from None
        before_bytes()
        try:
            device._raw(payload)
        except Exception as error:
            raise OutcomeUnknown(f"writing to {self.uri} failed: {error}") from None
        finally:
            try:
                device.close()
            except Exception:
                pass


def open_printer(uri: str) -> Printer:
    """The transport for a printer URI; BadPrinterUri says what is wrong with it."""
    if uri == "dummy":
        return DummyPrinter()
    found = _TCP.match(uri)
    if found is not None:
        port = int(found["port"])
        if not 0 < port < 65536:
            raise BadPrinterUri(f"bad TCP port in {uri!r}")
        return TcpPrinter(uri, found["host"].strip("[]"), port)
    found = _USB.match(uri)
    if found is not None:
        return EscposDevicePrinter(uri, "usb", {"idVendor": int(found["vendor"], 16),
                                                "idProduct": int(found["product"], 16)})
    if uri.startswith("serial:/dev/") and len(uri) > len("serial:/dev/"):
        return EscposDevicePrinter(uri, "serial", {"devfile": uri.removeprefix("serial:")})
    if uri.startswith("file:") and len(uri) > len("file:"):
        return FilePrinter(uri, Path(uri.removeprefix("file:")))
    raise BadPrinterUri(f"unknown printer URI {uri!r}: use tcp://HOST:PORT, usb:VID:PID, serial:/dev/..., "
                        "file:PATH or dummy")
