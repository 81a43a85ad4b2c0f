"""Racing many writers at one rule: threads over HTTP, or separate processes each with its own Ledger."""

from __future__ import annotations

import multiprocessing
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from eventsourcing.persistence import PersistenceError

from pos_ledger.errors import ConcurrentWriteRetriesExhausted, EventRefused
from pos_ledger.ledger import Ledger
from pos_ledger.loyalty import Loyalty

WRITERS = 50
ATTEMPTS_MAX = 50

Action = Callable[[Loyalty, int], Any]


def race_threads(url: str, headers: dict[str, str], requests: list[tuple[str, dict[str, Any]]]) -> Counter[int]:
    """POST every request at once from its own thread and client; count the status codes."""
    clients = [httpx.Client(base_url=url, headers=headers, timeout=60) for _ in requests]
    start = multiprocessing.Event()  # a plain flag; threads spin on it so they start together

    def post(index: int) -> int:
        start.wait()
        path, body = requests[index]
        return clients[index].post(path, json=body).status_code

    try:
        with ThreadPoolExecutor(max_workers=len(requests)) as pool:
            futures = [pool.submit(post, i) for i in range(len(requests))]
            time.sleep(0.2)
            start.set()
            return Counter(f.result() for f in futures)
    finally:
        for client in clients:
            client.close()


def _small_pool(database: str) -> None:
    """Each of many processes needs one or two connections, not the server default pool."""
    import pos_ledger.ledger as ledger_module

    original = ledger_module.persistence_env

    def env(db: str) -> dict[str, str]:
        found = original(db)
        if "POSTGRES_POOL_SIZE" in found:
            found.update(POSTGRES_POOL_SIZE="1", POSTGRES_MAX_OVERFLOW="2")
        # The parent created the tables; fifty concurrent CREATE TABLEs race in PostgreSQL's catalog.
        found["CREATE_TABLE"] = "n"
        return found

    ledger_module.persistence_env = env  # type: ignore[assignment]


def _worker(database: str, seed: bytes, store_id: str, action: Action, index: int,
            barrier: Any, results: Any) -> None:
    _small_pool(database)
    ledger: Ledger | None = None
    outcome = "error"
    try:
        ledger = Ledger(database, seed)
        loyalty = Loyalty(ledger)
        ledger.store(store_id)
        barrier.wait(timeout=120)
        for _ in range(ATTEMPTS_MAX):
            try:
                action(loyalty, index)
                outcome = "ok"
                break
            except EventRefused as refused:
                outcome = refused.reason
                break
            except (ConcurrentWriteRetriesExhausted, PersistenceError):
                ledger.invalidate(store_id)
                time.sleep(random.uniform(0.001, 0.05))
    except Exception as error:  # reported to the parent, which fails the test with it
        outcome = f"error: {error!r}"
    finally:
        results.put(outcome)
        if ledger is not None:
            ledger.close()


def race_processes(database: str, seed: bytes, store_id: str, action: Action,
                   writers: int = WRITERS) -> Counter[str]:
    """Run `action` in `writers` forked processes, released together; count the outcomes."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(writers)
    results = context.Queue()
    processes = [context.Process(target=_worker, args=(database, seed, store_id, action, i, barrier, results))
                 for i in range(writers)]
    for process in processes:
        process.start()
    outcomes = Counter(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    return outcomes
