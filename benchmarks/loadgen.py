"""A small load generator: asyncio (uvloop when installed) over raw HTTP/1.1 keep-alive connections.

Each connection sends its pre-built requests one after another (one in flight per connection,
as a till does) and times each answer. No HTTP client library: the client must not be the
bottleneck, so the benchmark prints the generator's own ceiling against `/healthz` in the
same run (`ceiling`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

#: Largest response head or body the generator accepts (a batch answer of 1,000 results is ~80 KiB).
RESPONSE_BYTES_MAX = 8 << 20
#: Seconds a connection may wait for one answer before the run is declared failed.
ANSWER_TIMEOUT_S = 120.0


@dataclass
class Run:
    """What one run measured; `answers` holds each response body when a checker asked for it."""

    requests: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    accepted: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def post_request(host: str, path: str, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """The exact bytes of one keep-alive POST with a JSON body."""
    lines = [f"POST {path} HTTP/1.1", f"host: {host}", "content-type: application/json",
             f"content-length: {len(body)}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def get_request(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode()


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length > RESPONSE_BYTES_MAX:
        raise ValueError(f"answer of {length} bytes is over the generator's limit")
    return status, await reader.readexactly(length) if length else b""


async def _connection(
    host: str, port: int, requests: Sequence[bytes], run: Run, count_accepted: Callable[[bytes], int] | None
) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=RESPONSE_BYTES_MAX)
    try:
        for request in requests:
            started = time.perf_counter()
            writer.write(request)
            status, body = await asyncio.wait_for(_answer(reader), ANSWER_TIMEOUT_S)
            run.latencies_ms.append((time.perf_counter() - started) * 1000)
            run.requests += 1
            if status != 200:
                run.failures.append(f"HTTP {status}: {body[:200]!r}")
            elif count_accepted is not None:
                run.accepted += count_accepted(body)
    finally:
        writer.close()


async def _run(host: str, port: int, connections: Sequence[Sequence[bytes]],
               count_accepted: Callable[[bytes], int] | None) -> Run:
    run = Run()
    started = time.perf_counter()
    await asyncio.gather(*(_connection(host, port, c, run, count_accepted) for c in connections))
    run.elapsed_s = time.perf_counter() - started
    return run


def drive(host: str, port: int, connections: Sequence[Sequence[bytes]],
          count_accepted: Callable[[bytes], int] | None = None) -> Run:
    """Send every connection's requests (one in flight per connection); uvloop when installed."""
    try:
        import uvloop
    except ImportError:  # plain asyncio still works, a little slower
        return asyncio.run(_run(host, port, connections, count_accepted))
    return uvloop.run(_run(host, port, connections, count_accepted))


def ceiling(host: str, port: int, connections: int, requests_per_connection: int) -> Run:
    """The generator's own ceiling: the same connections asking `/healthz` (no work behind it)."""
    request = get_request(f"{host}:{port}", "/healthz")
    return drive(host, port, [[request] * requests_per_connection for _ in range(connections)])
