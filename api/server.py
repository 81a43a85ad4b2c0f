"""How `pos-ledger serve` runs the app under uvicorn: every connection is bounded in time and number.

* `timeout_keep_alive_s`: an idle keep-alive connection is closed after it (uvicorn's own).
* `timeout_headers_s`: a request's headers must arrive complete within this long of the
  connection opening or the previous response ending, else the connection is closed.
  uvicorn alone had no such limit: a connection that never sent a byte, or sent one
  byte now and then (which also reset the keep-alive timer), stayed open for ever, so
  idle sockets piled up to the file descriptor limit and `/healthz` failed.
* `limit_concurrency`: past this many connections or requests in flight, new requests
  are answered 503 at once.
* `h11_max_incomplete_event_size`: the most bytes of request line and headers buffered.
* `backlog`: connections the kernel queues before the server accepts them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

TIMEOUT_KEEP_ALIVE_S: Final = 5
TIMEOUT_HEADERS_S: Final = 10.0
LIMIT_CONCURRENCY: Final = 1_000
H11_MAX_INCOMPLETE_EVENT_SIZE: Final = 16 * 1024
BACKLOG: Final = 2_048


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    timeout_keep_alive_s: int = TIMEOUT_KEEP_ALIVE_S
    timeout_headers_s: float = TIMEOUT_HEADERS_S
    limit_concurrency: int = LIMIT_CONCURRENCY
    h11_max_incomplete_event_size: int = H11_MAX_INCOMPLETE_EVENT_SIZE
    backlog: int = BACKLOG

    def __post_init__(self) -> None:
        if (self.timeout_keep_alive_s < 1 or self.timeout_headers_s <= 0 or self.limit_concurrency < 1
                or self.h11_max_incomplete_event_size < 1024 or self.backlog < 1):
            raise ValueError("timeouts and limits must be positive (max incomplete event size at least 1024)")


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers do not arrive in time."""

    timeout_headers_s: float = TIMEOUT_HEADERS_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_timer: asyncio.TimerHandle | None = None

    def _arm_headers_timer(self) -> None:
        self._disarm_headers_timer()
        self._headers_timer = self.loop.call_later(self.timeout_headers_s, self._headers_timed_out)

    def _disarm_headers_timer(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _headers_timed_out(self) -> None:
        self._headers_timer = None
        # Still waiting for a request's headers (IDLE): nothing is in flight, close. A request being
        # answered is left alone; the timer is armed again when its response ends.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_headers_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_headers_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_headers_timer()


def uvicorn_config(app: Any, host: str, port: int, limits: ConnectionLimits | None = None,
                   **options: Any) -> uvicorn.Config:
    limits = limits or ConnectionLimits()
    protocol = type("HeaderTimeoutH11Protocol", (HeaderTimeoutH11Protocol,),
                    {"timeout_headers_s": limits.timeout_headers_s})
    return uvicorn.Config(app, host=host, port=port, http=protocol, timeout_keep_alive=limits.timeout_keep_alive_s,
                          limit_concurrency=limits.limit_concurrency,
                          h11_max_incomplete_event_size=limits.h11_max_incomplete_event_size,
                          backlog=limits.backlog, **options)
