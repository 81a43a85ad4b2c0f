"""A fake ESC/POS network printer and an independent decoder of ESC/POS bytes (not python-escpos).

The printer listens on TCP like a receipt printer on raw port 9100 and records each job (what
arrives before the client closes its side), then closes its own side; it can refuse connections
(switched off), take a while before closing (printing), and reset the connection after some
bytes of a job (power cut mid-job), leaving the rest unread.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field


class FakePrinter:
    def __init__(self) -> None:
        self.jobs: list[bytes] = []
        self.partial: list[bytes] = []
        self.connections = 0
        self.confirm_delay_s = 0.0
        #: Drop the connection after this many bytes of the next job (then reset to None).
        self.drop_after_bytes: int | None = None
        self.job_arrived = threading.Condition()
        self._listener: socket.socket | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self.arrival_times: list[float] = []
        self.switch_on()

    @property
    def uri(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def switch_on(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def switch_off(self) -> None:
        """Connections are refused until switch_on()."""
        if self._listener is not None:
            try:  # wakes the thread blocked in accept() and stops listening (close alone does neither)
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        """A job is what arrives before the client closes its side (raw port 9100)."""
        buffer = b""
        drop = self.drop_after_bytes
        with connection:
            while True:
                wanted = 65536 if drop is None else drop - len(buffer)
                try:
                    chunk = connection.recv(wanted)
                except OSError:
                    chunk = b""
                if drop is not None and len(buffer + chunk) >= drop:
                    # Power cut mid-job: part of the job is on paper, the rest unread, the connection reset.
                    self.drop_after_bytes = None
                    self.partial.append(buffer + chunk)
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if not chunk:
                    break
                buffer += chunk
            if self.confirm_delay_s:
                time.sleep(self.confirm_delay_s)  # printing: the connection closes when it is on paper
            with self.job_arrived:
                self.jobs.append(buffer)
                self.arrival_times.append(time.perf_counter())
                self.job_arrived.notify_all()

    def wait_for_jobs(self, count: int, timeout_s: float = 20.0) -> list[bytes]:
        deadline = time.monotonic() + timeout_s
        with self.job_arrived:
            while len(self.jobs) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"expected {count} jobs, the printer has {len(self.jobs)}"
                self.job_arrived.wait(remaining)
            return list(self.jobs)

    def close(self) -> None:
        self.switch_off()


# ---- decoder ----


@dataclass
class Decoded:
    text: str = ""
    cuts: int = 0
    #: (pin, on_ms, off_ms) per drawer pulse `ESC p m t1 t2`.
    drawer_pulses: list[tuple[int, int, int]] = field(default_factory=list)
    qr_codes: list[str] = field(default_factory=list)
    status_requests: int = 0
    bold_text: list[str] = field(default_factory=list)


_ESC_ONE_PARAMETER = set(b"!E-adtMGV{3JRr")
_GS_ONE_PARAMETER = set(b"!BhwHfb")


def decode(data: bytes) -> Decoded:
    """Walk the bytes command by command; text runs are GB18030. Unknown commands are an error."""
    out = Decoded()
    text = bytearray()
    bold = False
    line = bytearray()
    i = 0

    def flush_line() -> None:
        if bold and line.strip():
            out.bold_text.append(line.decode("gb18030"))
        line.clear()

    while i < len(data):
        byte = data[i]
        if byte == 0x1B:  # ESC
            command = data[i + 1]
            if command == ord("@"):
                i += 2
            elif command == ord("p"):
                out.drawer_pulses.append((data[i + 2], data[i + 3] * 2, data[i + 4] * 2))
                i += 5
            elif command == ord("2"):
                i += 2
            elif command in _ESC_ONE_PARAMETER:
                if command == ord("E"):
                    flush_line()
                    bold = data[i + 2] & 1 == 1
                i += 3
            else:
                raise ValueError(f"unknown command ESC {command:#x} at {i}")
        elif byte == 0x1D:  # GS
            command = data[i + 1]
            if command == ord("V"):
                out.cuts += 1
                i += 4 if data[i + 2] in (65, 66) else 3
            elif command == ord("(") and data[i + 2] == ord("k"):
                length = data[i + 3] | data[i + 4] << 8
                cn, fn = data[i + 5], data[i + 6]
                parameters = data[i + 7:i + 5 + length]
                if cn == 49 and fn == 80:  # store the QR symbol's data: m=48 then the data
                    out.qr_codes.append(parameters[1:].decode("utf-8"))
                i += 5 + length
            elif command == ord("L"):
                i += 4
            elif command in _GS_ONE_PARAMETER:
                i += 3
            else:
                raise ValueError(f"unknown command GS {command:#x} at {i}")
        elif byte == 0x1C:  # FS
            command = data[i + 1]
            if command in (ord("&"), ord(".")):
                i += 2
            else:
                raise ValueError(f"unknown command FS {command:#x} at {i}")
        elif byte == 0x10 and data[i + 1] == 0x04:  # DLE EOT n
            out.status_requests += 1
            i += 3
        elif byte == 0x0A:
            text.extend(b"\n")
            flush_line()
            i += 1
        elif byte < 0x20:
            raise ValueError(f"unexpected control byte {byte:#x} at {i}")
        else:
            text.append(byte)
            line.append(byte)
            i += 1
    out.text = text.decode("gb18030")
    return out
