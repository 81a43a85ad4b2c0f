"""Server-Sent Events that follow a store's log: woken in process by the ledger's listeners
and, when Redis is configured, by its pub/sub fan-out (another server process committed).

A follower registers its wake-up before it reads the log, so a commit landing between
the read and the wait still wakes it; a lost wake-up only delays it to the next
heartbeat (`HEARTBEAT_S`), because each wake-up just says "read the log again".
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import msgspec
from starlette.concurrency import run_in_threadpool

from pos_ledger.errors import PosLedgerError
from pos_ledger.ledger import Ledger, StoredEntry

log = logging.getLogger("pos_ledger.api.streams")

HEARTBEAT_S: Final = 15.0
#: Entries read from the log per page while a stream catches up.
PAGE_EVENTS_MAX: Final = 500
#: Open streams per server process; more are refused (503) rather than exhaust memory.
STREAMS_MAX: Final = 1_000
_ENCODER: Final = msgspec.json.Encoder()


class StreamsFull(PosLedgerError):
    slug = "too-many-streams"
    status = 503


class Wakeups:
    """Per-store wake-ups for the streams of one event loop."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._guard = threading.Lock()
        self._count = 0
        self._redis_stop = threading.Event()

    def notify(self, store_id: str, position: int = 0, head: bytes = b"") -> None:
        """A ledger listener (called from the committing thread)."""
        loop = self._loop
        # Only stores someone follows cost a wake-up (a subscriber reads the log after registering,
        # so skipping here cannot lose its message).
        if loop is not None and store_id in self._waiters and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, store_id)

    def _wake(self, store_id: str) -> None:
        for event in self._waiters.get(store_id, ()):
            event.set()

    def check_room(self) -> None:
        """Called before a stream's response starts, so a full server answers 503."""
        if self._count >= STREAMS_MAX:
            raise StreamsFull(f"at most {STREAMS_MAX} streams per server; retry later")

    def subscribe(self, store_id: str) -> asyncio.Event:
        self._loop = asyncio.get_running_loop()
        with self._guard:
            self._count += 1
        event = asyncio.Event()
        self._waiters.setdefault(store_id, set()).add(event)
        return event

    def unsubscribe(self, store_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(store_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(store_id, None)
        with self._guard:
            self._count -= 1

    def follow_redis(self, url: str) -> None:
        """Wake streams when any server process sharing the database announces a commit."""
        threading.Thread(target=self._redis_loop, args=(url,), name="sse-redis", daemon=True).start()

    def _redis_loop(self, url: str) -> None:
        import redis

        while not self._redis_stop.is_set():
            try:
                client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=1.0)
                pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.psubscribe("pos-ledger:*:appended")
                while not self._redis_stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        channel = message["channel"].decode()
                        self.notify(channel.split(":", 2)[1])
                pubsub.close()
                client.close()
            except Exception as error:  # Redis down: the streams still follow in process and by heartbeat
                log.warning("redis fan-out unavailable (%s); retrying", error)
                self._redis_stop.wait(2.0)

    def close(self) -> None:
        self._redis_stop.set()


def sse_message(position: int, data: dict[str, Any]) -> bytes:
    return b"id: " + str(position).encode() + b"\ndata: " + _ENCODER.encode(data) + b"\n\n"


async def follow(ledger: Ledger, wakeups: Wakeups, store_id: str, after: int,
                 render: Callable[[list[StoredEntry]], list[bytes]],
                 heartbeat_s: float = HEARTBEAT_S) -> AsyncIterator[bytes]:
    """The messages `render` makes of each page of entries after `after`, forever, with heartbeats."""
    event = wakeups.subscribe(store_id)
    try:
        yield b": stream opened at position " + str(after).encode() + b"\n\n"
        while True:
            event.clear()
            entries = await run_in_threadpool(ledger.read_entries, store_id, after, PAGE_EVENTS_MAX)
            if entries:
                after = entries[-1].position
                messages = await run_in_threadpool(render, entries)
                if messages:
                    yield b"".join(messages)
                continue
            try:
                await asyncio.wait_for(event.wait(), heartbeat_s)
            except TimeoutError:
                yield b": heartbeat\n\n"
    finally:
        wakeups.unsubscribe(store_id, event)
