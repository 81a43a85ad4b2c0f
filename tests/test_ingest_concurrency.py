"""Concurrent writers of one store (threads, and two Ledger instances as two server processes
would be) keep one linear chain with every event exactly once, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid

from pos_ledger import _core
from pos_ledger.ledger import Ledger, SignedEvent
from tests.conftest import SERVER_SEED

TERMINALS = 4
BATCHES = 6
BATCH = 20


def seed_for(index: int) -> bytes:
    return bytes([index + 1]) * 32


def batch_for(terminal: int, number: int) -> list[SignedEvent]:
    events = []
    for offset in range(BATCH):
        seq = number * BATCH + offset + 1
        body = json.dumps({"id": str(uuid.uuid4()), "seq": seq, "type": "sale.completed",
                           "at": "2026-11-23T09:00:00Z",
                           "data": {"order_id": str(uuid.uuid4()), "currency": "CNY",
                                    "lines": [{"sku": "A", "name": "A", "qty": 1, "unit_price_minor": 100}],
                                    "discount_minor": 0, "total_minor": 100,
                                    "tenders": [{"method": "cash", "amount_minor": 100}]}}).encode()
        events.append(SignedEvent(body, _core.ed25519_sign(seed_for(terminal), body)))
    return events


def test_concurrent_writers_keep_one_linear_chain(database: str) -> None:
    first = Ledger(database, SERVER_SEED)
    second = Ledger(database, SERVER_SEED)
    try:
        first.open_store("s", "S", "CNY", "UTC")
        for index in range(TERMINALS):
            first.register_terminal("s", f"t{index}", _core.ed25519_public_key(seed_for(index)), "")
        batches = {index: [batch_for(index, n) for n in range(BATCHES)] for index in range(TERMINALS)}
        failures: list[BaseException] = []

        def post(index: int) -> None:
            try:
                for number, batch in enumerate(batches[index]):
                    # alternate between the two "servers"; send every batch twice (a retry)
                    for ledger in (first, second) if number % 2 else (second, first):
                        results, _ = ledger.ingest("s", f"t{index}", batch)
                        assert {r.status for r in results} <= {"accepted", "duplicate"}
            except BaseException as error:  # surfaced in the main thread
                failures.append(error)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(TERMINALS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        entries = list(Ledger(database, SERVER_SEED).iter_entries("s"))
        sales = [e for e in entries if e.terminal_id != "server"]
        assert len(sales) == TERMINALS * BATCHES * BATCH
        assert len({json.loads(e.body)["id"] for e in sales}) == len(sales)
        head = bytes(32)
        for position, entry in enumerate(entries, start=1):
            assert entry.position == position
            head = hashlib.sha256(head + entry.body.encode() + entry.sig).digest()
            assert entry.hash == head
        assert first.chain("s") == second.chain("s") == (head, len(entries))
        cash = {(a, d - c) for a, _, d, c in first.balances("s") if a.startswith("asset:cash")}
        assert cash == {(f"asset:cash:t{i}", BATCHES * BATCH * 100) for i in range(TERMINALS)}
    finally:
        first.close()
        second.close()
