"""Group commit for an asyncio server: ingest requests wait on the event loop, not in threads.

Each request for a store joins that store's queue on the event loop. At most
`IN_FLIGHT_PER_STORE` worker-thread calls per store run at once; each takes every request
waiting (up to `GROUP_EVENTS_MAX` events) and hands them to `Ledger.ingest_group`: one Rust
call verifies all their signatures, one decide loop and one transaction write them. The
second call in flight verifies its group while the first commits. Requests are answered
in order, each with its own results, as if sent alone.

Why not a thread per request: fifty tills posting one sale each would park fifty threads
on the store's lock, and handing the GIL between them costs more than the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from pos_ledger.errors import ConcurrentWriteRetriesExhausted
from pos_ledger.ledger import GROUP_EVENTS_MAX, IngestResult, Ledger, SignedEvent

#: Worker calls per store at once: one committing while the next verifies.
IN_FLIGHT_PER_STORE: Final = 2
#: Requests waiting for one store before new ones are refused (503, retry).
QUEUE_REQUESTS_MAX: Final = 10_000
#: Worker threads for all stores together.
WORKER_THREADS: Final = 4


@dataclass(slots=True)
class _Request:
    terminal_id: str
    events: Sequence[SignedEvent]
    answer: asyncio.Future[tuple[list[IngestResult], bytes]]


#: Queues are per event loop and store: a future is only ever completed on its own loop.
_Key = tuple[asyncio.AbstractEventLoop, str]


class IngestQueue:
    """Per-store queues of ingest requests in front of one `Ledger`."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._waiting: dict[_Key, list[_Request]] = {}
        self._in_flight: dict[_Key, int] = {}
        self._executor = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="ingest")
        self._tasks: set[asyncio.Task[None]] = set()

    async def ingest(
        self, store_id: str, terminal_id: str, events: Sequence[SignedEvent]
    ) -> tuple[list[IngestResult], bytes]:
        """The same answer as `Ledger.ingest`, committed together with the requests around it."""
        loop = asyncio.get_running_loop()
        key = (loop, store_id)
        waiting = self._waiting.setdefault(key, [])
        if len(waiting) >= QUEUE_REQUESTS_MAX:
            raise ConcurrentWriteRetriesExhausted(
                f"{QUEUE_REQUESTS_MAX} requests are already waiting for store {store_id!r}; retry"
            )
        request = _Request(terminal_id, events, loop.create_future())
        waiting.append(request)
        if self._in_flight.get(key, 0) < IN_FLIGHT_PER_STORE:
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            task = asyncio.create_task(self._drain(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await request.answer

    def _take(self, key: _Key) -> list[_Request]:
        waiting = self._waiting.get(key, [])
        group: list[_Request] = []
        events = 0
        while waiting and (not group or events + len(waiting[0].events) <= GROUP_EVENTS_MAX):
            group.append(waiting.pop(0))
            events += len(group[-1].events)
        return group

    async def _drain(self, key: _Key) -> None:
        loop, store_id = key
        try:
            while group := self._take(key):
                requests = [(r.terminal_id, r.events) for r in group]
                try:
                    answers = await loop.run_in_executor(
                        self._executor, self._ledger.ingest_group, store_id, requests
                    )
                except BaseException as error:  # the database failed: every request of the group learns it
                    for request in group:
                        if not request.answer.done():
                            request.answer.set_exception(error)
                    if not isinstance(error, Exception):
                        raise
                    continue
                for request, answer in zip(group, answers, strict=True):
                    if request.answer.done():  # the client went away; its events are committed
                        continue
                    if isinstance(answer, BaseException):
                        request.answer.set_exception(answer)
                    else:
                        request.answer.set_result(answer)
        finally:
            self._in_flight[key] -= 1
            if not self._in_flight[key] and not self._waiting.get(key):
                # Forget the loop's queue once idle (a test client may use a loop per request).
                self._in_flight.pop(key, None)
                self._waiting.pop(key, None)

    def close(self) -> None:
        self._executor.shutdown(wait=False)
