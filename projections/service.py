"""The runner inside the server: catches up at start, then is woken after each commit.

Wake-ups come from the ledger's listeners (commits in this process) and, when
Redis is configured, from the fan-out channel (commits of other processes that
serve the same PostgreSQL database). A lost wake-up only delays a projection:
the loop also looks at every store every `POLL_S`, and a report request folds
what is left (up to `CATCH_UP_EVENTS_MAX` entries) before it answers.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

from projections.db import ReadDatabase
from projections.runner import BATCH_EVENTS_MAX, CATCH_UP_EVENTS_MAX, LedgerLog, ProjectionRunner

POLL_S: Final = 5.0
#: Entries one store folds per turn of the loop, so a store with a long log does not hold the others.
TURN_EVENTS_MAX: Final = 10 * BATCH_EVENTS_MAX
log = logging.getLogger(__name__)


class ProjectionService:
    def __init__(self, ledger: Any, database: str, redis_url: str | None = None) -> None:
        self.db = ReadDatabase(database)
        self.runner = ProjectionRunner(self.db, LedgerLog(ledger))
        self.redis_url = redis_url
        self._dirty: set[str] = set()
        self._everything = True
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        ledger.listeners.append(self.wake)

    def wake(self, store_id: str, position: int = 0, head: bytes = b"") -> None:
        with self._guard:
            self._dirty.add(store_id)
        self._wake.set()

    def start(self) -> None:
        self._threads.append(threading.Thread(target=self._loop, name="projections", daemon=True))
        if self.redis_url:
            from projections.fanout import follow

            self._threads.append(threading.Thread(
                target=follow, args=(self.redis_url, self.wake, self._stop), name="projections-redis",
                daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        self.db.close()

    def catch_up(self, store_id: str) -> None:
        """Fold what the log holds beyond the read models before answering a report."""
        self.runner.run_store(store_id, max_events=CATCH_UP_EVENTS_MAX)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before draining: a wake-up after this is seen by the next wait
            with self._guard:
                if self._everything:
                    stores = None
                    self._everything = False
                else:
                    stores = set(self._dirty)
                self._dirty.clear()
            try:
                for store_id in stores if stores is not None else self.runner.source.store_ids():
                    if self._stop.is_set():
                        return
                    read = self.runner.run_store(store_id, max_events=TURN_EVENTS_MAX)
                    if read >= TURN_EVENTS_MAX:
                        self.wake(store_id)  # more to do: come back after the other stores
            except Exception:  # the database is away: try again on the next wake-up or poll
                log.exception("projections: catching up failed")
            if not self._wake.wait(POLL_S):
                with self._guard:
                    self._everything = True
